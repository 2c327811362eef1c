import { z } from 'zod';
import { accessSchema, CONSENT_STATUSES, grantedScopes, type Access, type ConsentRecord, type ConsentStatus, type LegalBasis } from './model.ts';

// FHIR R4 Consent, shaped like NHS England's Validated Relationships Service (nhs-interfaces.md 4.2):
// `patient` is the person whose record it is, `performer` and `provision.actor` both name the proxy,
// `policyRule` carries the legal basis (England-NHSProxyLegalBasis) and an extension the status reason.
// Export is conformant R4 (provision.actor.role is filled in); import tolerates VRS's missing role.

export const NHS_NUMBER_SYSTEM = 'https://fhir.nhs.uk/Id/nhs-number';
export const ODS_SYSTEM = 'https://fhir.nhs.uk/Id/ods-organization-code';
export const LEGAL_BASIS_SYSTEM = 'https://fhir.nhs.uk/England/CodeSystem/England-NHSProxyLegalBasis';
export const STATUS_REASON_EXTENSION = 'https://fhir.nhs.uk/England/StructureDefinition/Extension-England-Consent-Status-Reason';
export const STATUS_REASON_SYSTEM = 'https://fhir.nhs.uk/England/CodeSystem/England-ConsentStatusReason';
export const GRANTOR_EXTENSION = 'https://hl7.org/fhir/5.0/StructureDefinition/extension-Consent.grantor';
export const VRS_ERROR_SYSTEM = 'https://fhir.nhs.uk/R4/CodeSystem/ValidatedRelationships-ErrorOrWarningCode';
/** consentscope: base R4 says http; the VRS examples say https. Export uses the R4 canonical, import takes both. */
export const CONSENT_SCOPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/consentscope';
export const ACT_CODE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
/** R4's own performer/actor role codes: `delegatee` is "a party to whom some right or authority is granted". */
export const ACTOR_ROLE_SYSTEM = 'http://hl7.org/fhir/consentperformer';
/** The broker's own extension: the access (SMART scopes and RCGP level) a proxy was given. VRS has no element for it. */
export const ACCESS_EXTENSION = 'https://nhs-delegation-broker.github.io/fhir/StructureDefinition/delegation-access';

/** Broker legal bases and their England-NHSProxyLegalBasis codes. */
const TO_VRS_BASIS: Record<LegalBasis, string> = {
  consent: 'consent',
  'parental-responsibility': 'parental-responsibility',
  'lpa-health-welfare': 'health-and-welfare-lasting-power-of-attorney',
  'court-deputy': 'court-appointed-personal-welfare-deputy',
  'best-interest': 'best-interest',
};
const FROM_VRS_BASIS = new Map<string, LegalBasis>(Object.entries(TO_VRS_BASIS).map(([ours, vrs]) => [vrs, ours as LegalBasis]));

/** NHS numbers: ten digits, the last a modulus-11 check digit. */
export function isValidNhsNumber(value: string): boolean {
  if (!/^\d{10}$/.test(value)) return false;
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += Number(value[i]) * (10 - i);
  const check = 11 - (sum % 11);
  if (check === 10) return false;
  return (check === 11 ? 0 : check) === Number(value[9]);
}

// ---------------------------------------------------------------------------------------------------
// Export

export interface FhirIdentifier {
  system: string;
  value: string;
}
export interface FhirCoding {
  system: string;
  code: string;
  display?: string;
}
export interface FhirCodeableConcept {
  coding: FhirCoding[];
  text?: string;
}
export interface FhirReference {
  type?: string;
  identifier?: FhirIdentifier;
  display?: string;
}
export interface FhirExtension {
  url: string;
  valueCodeableConcept?: FhirCodeableConcept;
  valueReference?: FhirReference;
  valueString?: string;
  valueInteger?: number;
  extension?: FhirExtension[];
}
export interface FhirConsent {
  resourceType: 'Consent';
  id: string;
  meta: { versionId: string; lastUpdated: string };
  extension: FhirExtension[];
  status: ConsentStatus;
  scope: FhirCodeableConcept;
  category: FhirCodeableConcept[];
  patient: FhirReference;
  dateTime: string;
  performer?: FhirReference[];
  policyRule: FhirCodeableConcept;
  verification?: Array<{ verified: boolean; verifiedWith?: FhirReference; verificationDate?: string }>;
  provision: {
    type: 'permit';
    period: { start: string; end?: string };
    actor?: Array<{ role: FhirCodeableConcept; reference: FhirReference }>;
  };
}

/** What the exporter knows about a person named in a record. */
export interface Person {
  nhsNumber?: string;
  name?: string;
}

export interface FhirOptions {
  /** Identifier system for broker account ids (people without an NHS number on file). */
  accountSystem: string;
}

export function accountSystemFor(issuer: string): string {
  return new URL('/fhir/Id/account', issuer).href;
}

function identifierOf(accountId: string, person: Person | undefined, options: FhirOptions): FhirIdentifier {
  if (person?.nhsNumber && isValidNhsNumber(person.nhsNumber)) return { system: NHS_NUMBER_SYSTEM, value: person.nhsNumber };
  return { system: options.accountSystem, value: accountId };
}

function referenceTo(type: string, accountId: string, person: Person | undefined, options: FhirOptions): FhirReference {
  const ref: FhirReference = { type, identifier: identifierOf(accountId, person, options) };
  if (person?.name) ref.display = person.name;
  return ref;
}

export function toFhirConsent(record: ConsentRecord, people: Record<string, Person | undefined>, options: FhirOptions): FhirConsent {
  const reason: FhirCodeableConcept = { coding: [{ system: STATUS_REASON_SYSTEM, code: record.statusReason }] };
  if (record.statusText) reason.text = record.statusText;
  const extension: FhirExtension[] = [{ url: STATUS_REASON_EXTENSION, valueCodeableConcept: reason }];
  if (record.verifier?.orgCode) extension.push({ url: GRANTOR_EXTENSION, valueReference: { identifier: { system: ODS_SYSTEM, value: record.verifier.orgCode } } });
  const access: FhirExtension[] = record.access.scopes.map((s) => ({ url: 'scope', valueString: s }));
  if (record.access.level !== undefined) access.push({ url: 'level', valueInteger: record.access.level });
  extension.push({ url: ACCESS_EXTENSION, extension: access });

  const consent: FhirConsent = {
    resourceType: 'Consent',
    id: record.id,
    meta: { versionId: String(record.version), lastUpdated: record.updatedAt },
    extension,
    status: record.status,
    scope: { coding: [{ system: CONSENT_SCOPE_SYSTEM, code: 'patient-privacy', display: 'Privacy Consent' }] },
    category: [{ coding: [{ system: ACT_CODE_SYSTEM, code: 'INFA', display: 'information access' }] }],
    patient: referenceTo('Patient', record.grantor, people[record.grantor], options),
    dateTime: record.createdAt,
    policyRule: { coding: [{ system: LEGAL_BASIS_SYSTEM, code: TO_VRS_BASIS[record.legalBasis] }] },
    provision: { type: 'permit', period: record.period.end ? { start: record.period.start, end: record.period.end } : { start: record.period.start } },
  };
  if (record.grantee) {
    const proxy = referenceTo('RelatedPerson', record.grantee, people[record.grantee], options);
    consent.performer = [proxy];
    consent.provision.actor = [{ role: { coding: [{ system: ACTOR_ROLE_SYSTEM, code: 'delegatee', display: 'Delegatee' }] }, reference: proxy }];
  }
  if (record.verifier) {
    consent.verification = [{ verified: true, verificationDate: record.createdAt, verifiedWith: { type: 'Patient', identifier: identifierOf(record.grantor, people[record.grantor], options) } }];
  }
  return consent;
}

/** The SMART scopes a record grants (level expanded), for readers that only understand scopes. */
export function consentScopes(record: ConsentRecord): string[] {
  return grantedScopes(record.access);
}

// ---------------------------------------------------------------------------------------------------
// Import

/** An import that cannot be mapped: the VRS error code and HTTP status to answer with. */
export class FhirMappingError extends Error {
  readonly vrsCode: string;
  readonly status: number;
  constructor(status: number, vrsCode: string, message: string) {
    super(message);
    this.name = 'FhirMappingError';
    this.status = status;
    this.vrsCode = vrsCode;
  }
}

const str = (max = 256) => z.string().max(max);
const coding = z.looseObject({ system: str().optional(), code: str(100).optional(), display: str().optional() });
const concept = z.looseObject({ coding: z.array(coding).max(10).optional(), text: str(500).optional() });
const identifier = z.looseObject({ system: str().optional(), value: str(100).optional() });
const reference = z.looseObject({ reference: str().optional(), type: str(50).optional(), identifier: identifier.optional(), display: str().optional() });
interface Extension {
  url: string;
  valueCodeableConcept?: z.infer<typeof concept>;
  valueReference?: z.infer<typeof reference>;
  valueString?: string;
  valueInteger?: number;
  extension?: Extension[];
}
const extension: z.ZodType<Extension> = z.lazy(() =>
  z.looseObject({
    url: str(),
    valueCodeableConcept: concept.optional(),
    valueReference: reference.optional(),
    valueString: str(500).optional(),
    valueInteger: z.number().int().optional(),
    extension: z.array(extension).max(60).optional(),
  }),
);
/** FHIR dateTime: a year, year-month, date, or a date-time with a time zone. */
const fhirDateTime = z.string().regex(/^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?)?)?$/, 'must be a FHIR dateTime');

/** A VRS-style Consent as it arrives: unknown elements are kept out of the way, not refused. */
export const vrsConsentSchema = z.looseObject({
  resourceType: z.literal('Consent'),
  id: str(64).optional(),
  status: z.enum(['draft', ...CONSENT_STATUSES]),
  scope: concept.optional(),
  category: z.array(concept).max(10).optional(),
  patient: reference.optional(),
  dateTime: fhirDateTime.optional(),
  performer: z.array(reference).max(10).optional(),
  policyRule: concept.optional(),
  provision: z
    .looseObject({
      type: z.enum(['deny', 'permit']).optional(),
      period: z.looseObject({ start: fhirDateTime.optional(), end: fhirDateTime.optional() }).optional(),
      // VRS deprecated and omits `role` (base R4 has it 1..1): tolerated.
      actor: z.array(z.looseObject({ role: concept.optional(), reference })).max(10).optional(),
    })
    .optional(),
  extension: z.array(extension).max(20).optional(),
});
export type VrsConsent = z.infer<typeof vrsConsentSchema>;

export type PartyIdentifier = { kind: 'nhs-number'; value: string } | { kind: 'account'; value: string };

export interface ImportedConsent {
  sourceId?: string;
  status: 'active';
  patient: PartyIdentifier;
  proxy: PartyIdentifier;
  legalBasis: LegalBasis;
  period: { start?: string; end?: string };
  statusReason: string;
  /** ODS code of the granting GP practice (VRS grantor extension). */
  grantorOrg?: string;
  /** From the broker's access extension; absent in genuine VRS payloads. */
  access?: Access;
}

function toInstant(value: string | undefined, field: string): string | undefined {
  if (value === undefined) return undefined;
  // A bare date means the start of that day (UTC); partial dates are too vague for a legal period.
  const full = /^\d{4}-\d{2}-\d{2}$/.test(value) ? `${value}T00:00:00Z` : value;
  if (!full.includes('T')) throw new FhirMappingError(422, 'INVALID_PARAMETER', `${field} must be a full date`);
  const ms = Date.parse(full);
  if (Number.isNaN(ms)) throw new FhirMappingError(422, 'INVALID_PARAMETER', `${field} is not a valid date`);
  return new Date(ms).toISOString();
}

function party(ref: z.infer<typeof reference> | undefined, field: string, options: FhirOptions): PartyIdentifier {
  const id = ref?.identifier;
  if (!id?.value) throw new FhirMappingError(400, 'MISSING_IDENTIFIER_VALUE', `${field}.identifier.value is required`);
  if (id.system === NHS_NUMBER_SYSTEM) {
    if (!isValidNhsNumber(id.value)) throw new FhirMappingError(422, 'INVALID_IDENTIFIER_VALUE', `${field}.identifier.value is not a valid NHS number`);
    return { kind: 'nhs-number', value: id.value };
  }
  if (id.system === options.accountSystem) return { kind: 'account', value: id.value };
  throw new FhirMappingError(422, 'INVALID_IDENTIFIER_SYSTEM', `${field}.identifier.system must be ${NHS_NUMBER_SYSTEM}`);
}

function sameParty(a: PartyIdentifier, b: PartyIdentifier): boolean {
  return a.kind === b.kind && a.value === b.value;
}

function accessFrom(ext: Extension | undefined): Access | undefined {
  if (!ext) return undefined;
  const inner = ext.extension ?? [];
  const level = inner.find((e) => e.url === 'level')?.valueInteger;
  const parsed = accessSchema.safeParse({ scopes: inner.filter((e) => e.url === 'scope').map((e) => e.valueString), ...(level === undefined ? {} : { level }) });
  if (!parsed.success) throw new FhirMappingError(422, 'INVALID_PARAMETER', `access extension: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

/** Parses and maps a VRS-style Consent. Throws FhirMappingError (with the VRS error code) when it cannot. */
export function fromVrsConsent(resource: unknown, options: FhirOptions): ImportedConsent {
  const parsed = vrsConsentSchema.safeParse(resource);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join('.') || 'resource';
    throw new FhirMappingError(422, 'INVALID_PARAMETER', `${path}: ${issue?.message ?? 'invalid'}`);
  }
  const c = parsed.data;
  if (c.status !== 'active') throw new FhirMappingError(422, 'INVALID_PARAMETER', `only active relationships can be imported, not ${c.status}`);
  if (c.provision?.type === 'deny') throw new FhirMappingError(422, 'INVALID_PARAMETER', 'provision.type deny is not a proxy role');
  const scopeCodes = c.scope?.coding ?? [];
  if (scopeCodes.length && !scopeCodes.some((s) => s.code === 'patient-privacy' && /^https?:\/\/terminology\.hl7\.org\/CodeSystem\/consentscope$/.test(s.system ?? ''))) {
    throw new FhirMappingError(422, 'INVALID_PARAMETER', 'scope must be patient-privacy');
  }
  const patient = party(c.patient, 'patient', options);
  const performer = c.performer?.[0] ? party(c.performer[0], 'performer[0]', options) : undefined;
  const actorRef = c.provision?.actor?.[0]?.reference;
  const actor = actorRef?.identifier ? party(actorRef, 'provision.actor[0].reference', options) : undefined;
  const proxy = actor ?? performer;
  if (!proxy) throw new FhirMappingError(400, 'MISSING_IDENTIFIER_VALUE', 'performer or provision.actor must identify the proxy');
  if (actor && performer && !sameParty(actor, performer)) throw new FhirMappingError(422, 'INVALID_PARAMETER', 'performer and provision.actor name different people');
  if (sameParty(patient, proxy)) throw new FhirMappingError(422, 'INVALID_PARAMETER', 'a person cannot be their own proxy');

  const basisCoding = c.policyRule?.coding?.find((x) => x.system === LEGAL_BASIS_SYSTEM) ?? c.policyRule?.coding?.[0];
  const legalBasis = basisCoding?.code ? FROM_VRS_BASIS.get(basisCoding.code) : undefined;
  if (!legalBasis) throw new FhirMappingError(422, 'INVALID_LEGAL_BASIS_CODE', `policyRule must carry a known ${LEGAL_BASIS_SYSTEM} code${basisCoding?.code ? `, not ${basisCoding.code}` : ''}`);

  const reasonCode = c.extension?.find((e) => e.url === STATUS_REASON_EXTENSION)?.valueCodeableConcept?.coding?.find((x) => x.system === STATUS_REASON_SYSTEM)?.code;
  // VRS's reasons for an active role, and the broker's own ROLE_CHANGED (an active role whose access changed).
  if (reasonCode !== undefined && !['ROLE_CREATED', 'ROLE_ACTIVATED', 'ROLE_REACTIVATED', 'ROLE_CHANGED'].includes(reasonCode)) {
    throw new FhirMappingError(422, 'INVALID_PARAMETER', `status reason ${reasonCode} does not describe an active role`);
  }
  const grantor = c.extension?.find((e) => e.url === GRANTOR_EXTENSION)?.valueReference?.identifier;
  if (grantor?.value !== undefined && grantor.system !== ODS_SYSTEM) throw new FhirMappingError(422, 'INVALID_IDENTIFIER_SYSTEM', `the grantor must be identified by ${ODS_SYSTEM}`);

  const start = toInstant(c.provision?.period?.start, 'provision.period.start');
  const end = toInstant(c.provision?.period?.end, 'provision.period.end');
  const out: ImportedConsent = {
    status: 'active',
    patient,
    proxy,
    legalBasis,
    period: { ...(start ? { start } : {}), ...(end ? { end } : {}) },
    statusReason: 'ROLE_CREATED',
  };
  if (c.id) out.sourceId = c.id;
  if (grantor?.value) out.grantorOrg = grantor.value;
  const access = accessFrom(c.extension?.find((e) => e.url === ACCESS_EXTENSION));
  if (access) out.access = access;
  return out;
}
