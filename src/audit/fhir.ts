import type { AuditEventType, OpenedEntry, StoredEntry } from './entry.ts';
import { canonicalJson } from './chain.ts';
import { revealed, type ExportOptions } from './jsonl.ts';

// FHIR R4 AuditEvent export. Codes come from the value sets R4 binds: audit-event-type (extensible; DICOM
// DCM and the HL7 audit-event-type code system), audit-event-action, audit-event-outcome, and the
// security-source-type / audit-entity-type / object-role code systems.

export const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
export const HL7_AUDIT_EVENT_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-event-type';
export const RESTFUL_INTERACTION = 'http://hl7.org/fhir/restful-interaction';
const SOURCE_TYPE = 'http://terminology.hl7.org/CodeSystem/security-source-type';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';

export interface Coding {
  system: string;
  code: string;
  display?: string;
}
export interface Identifier {
  system?: string;
  value: string;
}
export interface Reference {
  reference?: string;
  identifier?: Identifier;
  display?: string;
}

export interface FhirAuditEvent {
  resourceType: 'AuditEvent';
  id: string;
  type: Coding;
  subtype: Coding[];
  action: 'C' | 'R' | 'U' | 'D' | 'E';
  recorded: string;
  outcome: '0' | '4' | '8' | '12';
  outcomeDesc?: string;
  agent: { type?: { coding: Coding[] }; who: Reference; requestor: boolean }[];
  source: { observer: Reference; type: Coding[] };
  entity: { what: Reference; type?: Coding; role?: Coding; description?: string; detail?: { type: string; valueString: string }[] }[];
}

export interface FhirBundle {
  resourceType: 'Bundle';
  type: 'collection' | 'searchset';
  timestamp: string;
  total?: number;
  entry: { fullUrl?: string; resource: FhirAuditEvent; search?: { mode: 'match' } }[];
}

export interface FhirExportOptions extends ExportOptions {
  /** source.observer: which broker recorded the events. */
  observer?: string;
  /** Base for fullUrl (e.g. https://broker.example/fhir); omitted when not given. */
  baseUrl?: string;
  /** System URI for the broker's own event codes (used in `subtype`) and record identifiers. */
  codeSystem?: string;
}

const DEFAULT_SYSTEM = 'https://nhs-delegation-broker.example/fhir/CodeSystem/audit-event';

interface Mapping {
  type: Coding;
  subtype?: Coding;
  action: FhirAuditEvent['action'];
}

const USER_AUTH: Coding = { system: DCM, code: '110114', display: 'User Authentication' };
const SECURITY_ATTRS: Coding = { system: DCM, code: '110137', display: 'User Security Attributes Changed' };
const SECURITY_ALERT: Coding = { system: DCM, code: '110113', display: 'Security Alert' };
const APP_ACTIVITY: Coding = { system: DCM, code: '110100', display: 'Application Activity' };
const REST: Coding = { system: HL7_AUDIT_EVENT_TYPE, code: 'rest', display: 'RESTful Operation' };
const LOGIN: Coding = { system: DCM, code: '110122', display: 'Login' };
const rest = (code: string, display: string): Coding => ({ system: RESTFUL_INTERACTION, code, display });

const MAPPINGS: Record<AuditEventType, Mapping> = {
  'upstream.login.success': { type: USER_AUTH, subtype: LOGIN, action: 'E' },
  'upstream.login.failure': { type: USER_AUTH, subtype: LOGIN, action: 'E' },
  'upstream.circuit.changed': { type: APP_ACTIVITY, action: 'E' },
  'account.created': { type: SECURITY_ATTRS, action: 'C' },
  'account.linked': { type: SECURITY_ATTRS, action: 'U' },
  'account.unlinked': { type: SECURITY_ATTRS, action: 'D' },
  'consent.proposed': { type: REST, subtype: rest('create', 'create'), action: 'C' },
  'consent.accepted': { type: REST, subtype: rest('update', 'update'), action: 'U' },
  'consent.changed': { type: REST, subtype: rest('update', 'update'), action: 'U' },
  'consent.revoked': { type: REST, subtype: rest('update', 'update'), action: 'U' },
  'consent.expired': { type: REST, subtype: rest('update', 'update'), action: 'U' },
  'token.issued': { type: USER_AUTH, action: 'C' },
  'token.refreshed': { type: USER_AUTH, action: 'C' },
  'token.exchanged': { type: USER_AUTH, action: 'C' },
  'token.revoked': { type: USER_AUTH, action: 'D' },
  'replay.detected': { type: SECURITY_ALERT, action: 'E' },
  'signature.invalid': { type: SECURITY_ALERT, action: 'E' },
  'assertion.invalid': { type: SECURITY_ALERT, action: 'E' },
  'admin.action': { type: APP_ACTIVITY, action: 'E' },
  'config.changed': { type: APP_ACTIVITY, action: 'U' },
  'key.rotated': { type: APP_ACTIVITY, action: 'U' },
  'audit.pruned': { type: { system: DCM, code: '110101', display: 'Audit Log Used' }, action: 'D' },
};

// Security events that failed are serious (8): someone tried something. Other failures are minor (4).
const SERIOUS = new Set<AuditEventType>(['replay.detected', 'signature.invalid', 'assertion.invalid']);

function person(sealed: string | null, index: string | null, opened: string | null | undefined, system: string): Reference | undefined {
  if (sealed === null) return undefined;
  if (opened) return { identifier: { system: `${system}/account`, value: opened } };
  // Still sealed: the blind index identifies the same person across entries without disclosing who it is.
  return { identifier: { system: `${system}/blind-index`, value: index ?? 'sealed' } };
}

export function toFhirAuditEvent(stored: StoredEntry, options: FhirExportOptions = {}): FhirAuditEvent {
  const system = options.codeSystem ?? DEFAULT_SYSTEM;
  const e = stored;
  const opened: OpenedEntry | undefined = revealed(stored, options);
  const m = MAPPINGS[e.type];

  const agent: FhirAuditEvent['agent'] = [];
  const actor = person(e.actor, e.actorIndex, opened?.actor, system);
  if (actor) agent.push({ who: actor, requestor: true });
  if (e.client !== null) {
    agent.push({ who: { identifier: { system: 'urn:ietf:params:oauth:client-id', value: e.client } }, requestor: actor === undefined });
  }
  if (agent.length === 0) agent.push({ who: { display: options.observer ?? 'broker' }, requestor: false });

  const entity: FhirAuditEvent['entity'] = [];
  const subject = person(e.subject, e.subjectIndex, opened?.subject, system);
  if (subject) entity.push({ what: subject, type: { system: ENTITY_TYPE, code: '1', display: 'Person' }, role: { system: OBJECT_ROLE, code: '1', display: 'Patient' } });
  if (e.consent !== null) entity.push({ what: { reference: `Consent/${e.consent}` }, type: { system: ENTITY_TYPE, code: '2', display: 'System Object' } });
  if (e.client !== null) entity.push({ what: { identifier: { system: 'urn:ietf:params:oauth:client-id', value: e.client } }, type: { system: ENTITY_TYPE, code: '2', display: 'System Object' } });

  // The ledger record itself, so an AuditEvent can be traced back to its chain position and checked.
  const detail: { type: string; valueString: string }[] = [
    { type: 'seq', valueString: String(e.seq) },
    { type: 'hash', valueString: e.hash },
    { type: 'prev', valueString: e.prev },
  ];
  if (e.requestId !== null) detail.push({ type: 'requestId', valueString: e.requestId });
  if (Object.keys(e.details).length > 0) detail.push({ type: 'details', valueString: canonicalJson(e.details) });
  if (opened?.personal) detail.push({ type: 'personal', valueString: canonicalJson(opened.personal) });
  entity.push({ what: { identifier: { system: `${system}/ledger`, value: String(e.seq) } }, type: { system: ENTITY_TYPE, code: '4', display: 'Other' }, description: 'audit ledger entry', detail });

  const reason = typeof e.details.reason === 'string' ? e.details.reason : typeof e.details.error === 'string' ? e.details.error : undefined;
  return {
    resourceType: 'AuditEvent',
    id: `audit-${e.seq}`,
    type: m.type,
    subtype: [...(m.subtype ? [m.subtype] : []), { system, code: e.type, display: e.type }],
    action: m.action,
    recorded: e.time,
    outcome: e.outcome === 'success' ? '0' : SERIOUS.has(e.type) ? '8' : '4',
    ...(reason !== undefined && e.outcome === 'failure' ? { outcomeDesc: reason } : {}),
    agent,
    source: { observer: { display: options.observer ?? 'broker' }, type: [{ system: SOURCE_TYPE, code: '4', display: 'Application Server' }] },
    entity,
  };
}

/** A Bundle of AuditEvents: 'searchset' for query answers (with total), 'collection' for bulk export. */
export function toFhirBundle(entries: StoredEntry[], type: 'collection' | 'searchset', options: FhirExportOptions = {}): FhirBundle {
  return {
    resourceType: 'Bundle',
    type,
    timestamp: new Date().toISOString(),
    ...(type === 'searchset' ? { total: entries.length } : {}),
    entry: entries.map((e) => {
      const resource = toFhirAuditEvent(e, options);
      return {
        ...(options.baseUrl ? { fullUrl: `${options.baseUrl.replace(/\/$/, '')}/AuditEvent/${resource.id}` } : {}),
        resource,
        ...(type === 'searchset' ? { search: { mode: 'match' as const } } : {}),
      };
    }),
  };
}
