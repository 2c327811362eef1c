import { z } from 'zod';

// The consent (delegation) record: who may act for whom, on what legal basis, with which access, for
// how long, verified by whom. Every version is signed by the broker and linked to the previous one by
// hash; the state machine follows the Validated Relationships Service (nhs-interfaces.md 4.3).

export const CONSENT_STATUSES = ['proposed', 'active', 'inactive', 'rejected', 'entered-in-error'] as const;
export type ConsentStatus = (typeof CONSENT_STATUSES)[number];

export const LEGAL_BASES = ['consent', 'parental-responsibility', 'lpa-health-welfare', 'court-deputy', 'best-interest'] as const;
export type LegalBasis = (typeof LEGAL_BASES)[number];

/** SMART v2 scopes in the patient compartment, e.g. patient/Observation.rs. */
export const smartScope = z.string().regex(/^patient\/(\*|[A-Z][A-Za-z]+)\.(c?r?u?d?s?)$/, 'must be a SMART v2 patient scope such as patient/Observation.rs');

export const accessSchema = z
  .strictObject({
    scopes: z.array(smartScope).max(50).default([]),
    level: z.union([z.literal(1), z.literal(2), z.literal(3)]).optional(),
  })
  .refine((a) => a.scopes.length > 0 || a.level !== undefined, 'give scopes, an access level, or both');
export type Access = z.infer<typeof accessSchema>;
/** Access as a caller gives it (scopes may be omitted when a level is given). */
export type AccessInput = z.input<typeof accessSchema>;

export const periodSchema = z.strictObject({
  start: z.iso.datetime(),
  end: z.iso.datetime().optional(),
});

export const consentRecordSchema = z.strictObject({
  id: z.string().min(1),
  version: z.number().int().min(1),
  status: z.enum(CONSENT_STATUSES),
  statusReason: z.string(),
  statusText: z.string().max(500).optional(),
  grantor: z.string().min(1),
  grantee: z.string().min(1).optional(),
  /** Pending invitation: hash of the single-use code and its expiry. */
  invitation: z.strictObject({ codeHash: z.string(), expiresAt: z.iso.datetime() }).optional(),
  legalBasis: z.enum(LEGAL_BASES),
  access: accessSchema,
  period: periodSchema,
  verifier: z.strictObject({ accountId: z.string(), roleId: z.string().optional(), orgCode: z.string().optional() }).optional(),
  evidence: z.string().max(2000).optional(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  /** Account that made this version. */
  changedBy: z.string(),
  /** sha256 (base64url) of the previous version's signed form; null for version 1. */
  prev: z.string().nullable(),
});
export type ConsentRecord = z.infer<typeof consentRecordSchema>;

/** Scopes a level of access (RCGP levels, nhs-interfaces.md 4.5) stands for, when no scopes are given. */
export const LEVEL_SCOPES: Record<1 | 2 | 3, string[]> = {
  1: ['patient/Appointment.cruds', 'patient/MedicationRequest.crs'],
  2: ['patient/Appointment.cruds', 'patient/MedicationRequest.crs', 'patient/Condition.rs', 'patient/Observation.rs', 'patient/AllergyIntolerance.rs', 'patient/Immunization.rs'],
  3: ['patient/*.rs', 'patient/Appointment.cruds', 'patient/MedicationRequest.crs'],
};

export function grantedScopes(access: Access): string[] {
  return [...new Set([...access.scopes, ...(access.level ? LEVEL_SCOPES[access.level] : [])])];
}

/** A requested SMART scope is covered by a granted one if resource and every permission letter match. */
export function scopeCovered(requested: string, granted: string[]): boolean {
  const r = /^patient\/([^.]+)\.([a-z]+)$/.exec(requested);
  if (!r) return false;
  return granted.some((g) => {
    const m = /^patient\/([^.]+)\.([a-z]+)$/.exec(g);
    if (!m || (m[1] !== '*' && m[1] !== r[1])) return false;
    return [...r[2]].every((p) => m[2].includes(p));
  });
}
