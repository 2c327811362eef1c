import { z } from 'zod';
import { accessSchema, CONSENT_STATUSES, LEGAL_BASES } from '../../delegation/model.ts';
import { isValidNhsNumber } from '../../delegation/fhir.ts';

// Request and response bodies of the delegation API. Requests are parsed with these at the edge; the
// OpenAPI document is generated from the same schemas, so the two cannot drift apart.

// Any RFC 3339 offset is accepted and normalised to UTC, the form consent records are signed in.
const instant = z.iso
  .datetime({ offset: true })
  .transform((v) => new Date(v).toISOString())
  .describe('RFC 3339 date-time');
const period = z.strictObject({ start: instant, end: instant.optional() });

export const consentIdSchema = z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'not a delegation id');

export const invitationCodeSchema = z.string().min(10).max(100).regex(/^[A-Za-z0-9_-]+$/, 'not an invitation code');

export const inviteBody = z
  .strictObject({
    legalBasis: z.enum(LEGAL_BASES).optional().describe('default consent; other bases need staff verification'),
    access: accessSchema,
    period: z.strictObject({ start: instant.optional(), end: instant }).optional(),
  })
  .describe('A patient invites someone to act for them');

export const respondBody = z.strictObject({ code: invitationCodeSchema }).describe('The single-use invitation code');

export const changeBody = z
  .strictObject({
    access: accessSchema.optional(),
    period: period.optional(),
  })
  .refine((b) => b.access !== undefined || b.period !== undefined, 'give access, period, or both')
  .describe('New access and/or period (patient only)');

export const endBody = z
  .strictObject({
    reason: z.string().regex(/^[A-Z][A-Z_]{2,79}$/, 'must be a status reason code such as ROLE_DEACTIVATED_PATIENT_REQUEST'),
    text: z.string().trim().min(1).max(500).optional().describe('required with reason OTHER'),
  })
  .describe('Ends a delegation (or withdraws a pending invitation) with a VRS status reason');

export const partyRef = z
  .union([
    z.strictObject({ accountId: z.string().min(1).max(100) }),
    z.strictObject({ nhsNumber: z.string().refine(isValidNhsNumber, 'not a valid NHS number') }),
  ])
  .describe('A person, by broker account id or NHS number');

export const staffRecordBody = z
  .strictObject({
    patient: partyRef,
    grantee: partyRef,
    legalBasis: z.enum(LEGAL_BASES),
    access: accessSchema,
    period: z.strictObject({ start: instant.optional(), end: instant }),
    evidence: z.string().trim().max(2000).optional(),
  })
  .describe('Staff record a relationship they have verified');

// Responses ------------------------------------------------------------------------------------------

const person = z.strictObject({ accountId: z.string(), name: z.string().optional() });

export const delegationView = z.strictObject({
  id: z.string(),
  version: z.number().int(),
  status: z.enum(CONSENT_STATUSES),
  statusReason: z.string(),
  statusText: z.string().optional(),
  patient: person,
  grantee: person.optional(),
  legalBasis: z.enum(LEGAL_BASES),
  access: z.strictObject({ scopes: z.array(z.string()), level: z.union([z.literal(1), z.literal(2), z.literal(3)]).optional() }),
  grantedScopes: z.array(z.string()).describe('SMART scopes the access stands for (levels expanded)'),
  period: z.strictObject({ start: z.string(), end: z.string().optional() }),
  invitationExpiresAt: z.string().optional(),
  verifiedBy: z.strictObject({ accountId: z.string(), orgCode: z.string().optional() }).optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
  changedBy: z.string(),
});
export type DelegationView = z.infer<typeof delegationView>;

export const delegationList = z.strictObject({
  asPatient: z.array(delegationView).describe('people who can act for the caller (and pending invitations)'),
  asGrantee: z.array(delegationView).describe('people the caller can act for'),
});

export const invitationCreated = z.strictObject({
  delegation: delegationView,
  code: z.string().describe('single-use; shown once'),
  acceptUrl: z.string(),
  expiresAt: z.string(),
});

export const historyView = z.strictObject({ id: z.string(), versions: z.array(delegationView.extend({ prev: z.string().nullable() })) });

export const actedForMeView = z.strictObject({
  entries: z.array(
    z.strictObject({
      time: z.string(),
      type: z.enum(['token.issued', 'token.exchanged']),
      actors: z.array(person).describe('current actor first'),
      client: z.string().nullable(),
      consent: z.string().nullable(),
      scope: z.string().nullable(),
      audience: z.string().nullable(),
      outcome: z.enum(['success', 'failure']),
    }),
  ),
});

export const errorBody = z.strictObject({ error: z.string(), error_description: z.string() });
