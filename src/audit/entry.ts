import { z } from 'zod';
import { isJsonObject, jsonObjectSchema, type JsonObject } from './json.ts';

/** Every security-relevant event the broker records. Dotted so exports and metrics can group by prefix. */
export const AUDIT_EVENT_TYPES = [
  'upstream.login.success',
  'upstream.login.failure',
  'upstream.circuit.changed',
  'account.created',
  'account.linked',
  'account.unlinked',
  'consent.proposed',
  'consent.accepted',
  'consent.changed',
  'consent.revoked',
  'consent.expired',
  'token.issued',
  'token.refreshed',
  'token.exchanged',
  'token.revoked',
  'replay.detected',
  'signature.invalid',
  'assertion.invalid',
  'admin.action',
  'config.changed',
  'key.rotated',
  'audit.pruned',
] as const;

export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];
export type AuditOutcome = 'success' | 'failure';

/** Sealed fields use this AEAD purpose, so a sealed audit value cannot be replayed into another store. */
export const AUDIT_SEAL_PURPOSE = 'audit';
/**
 * Actor and subject share one blind-index purpose on purpose: the same account gets the same index in both
 * columns, so "everything that involved account X" is one lookup value.
 */
export const AUDIT_INDEX_PURPOSE = 'audit-subject';

/** Limits keep one entry small enough that a runaway caller cannot bloat the chain or the verify walk. */
export const MAX_DETAILS_CHARS = 16_384;

const id = z.string().min(1).max(512);

/** What a caller hands to `append`. Strict: an unexpected top-level key (say `token`) is a bug, not data. */
export const auditEventSchema = z
  .object({
    type: z.enum(AUDIT_EVENT_TYPES),
    outcome: z.enum(['success', 'failure']),
    /** Who acted (account id, client id, admin). Sealed at rest, searchable through a blind index. */
    actor: id.optional(),
    /** Whom it concerned (patient or staff account id). Sealed at rest, searchable through a blind index. */
    subject: id.optional(),
    client: id.optional(),
    consent: id.optional(),
    requestId: z.string().min(1).max(200).optional(),
    /** Non-personal context (grant type, audience, provider, act chain of account ids...). */
    details: jsonObjectSchema.optional(),
    /** Personal data (names, NHS numbers): sealed as one value, never stored in plaintext. */
    personal: jsonObjectSchema.optional(),
  })
  .strict();

export type AuditEvent = z.input<typeof auditEventSchema>;

/** An entry as stored and hashed: sealed fields are ciphertext, blind indexes are keyed hashes. */
export interface StoredEntry {
  seq: number;
  /** ISO 8601 UTC with milliseconds, stamped by the ledger; never decreases along the chain. */
  time: string;
  type: AuditEventType;
  outcome: AuditOutcome;
  actor: string | null;
  actorIndex: string | null;
  subject: string | null;
  subjectIndex: string | null;
  client: string | null;
  consent: string | null;
  requestId: string | null;
  details: JsonObject;
  personal: string | null;
  /** Hash of the previous entry (64 zeros for the first), so an export line carries its own link. */
  prev: string;
  hash: string;
}

/** The parts fixed before the chain position is known (sealed once, even if a Redis append retries). */
export type EntryBody = Omit<StoredEntry, 'seq' | 'time' | 'prev' | 'hash'>;

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const nullableText = z.string().nullable();
/** Exactly Date#toISOString(), the only form the ledger writes: stricter and much cheaper than a general ISO parser. */
export const ledgerTimeSchema = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
// Stored details always come out of JSON.parse, so they are JSON by construction; checking the top-level
// shape is enough, and skipping the deep walk keeps verify of a million entries fast.
const storedDetails = z.custom<JsonObject>(isJsonObject, 'details must be a JSON object');

/** Parses an entry read back from storage: storage is outside our trust boundary once someone edits it. */
export const storedEntrySchema = z.object({
  seq: z.number().int().positive(),
  time: ledgerTimeSchema,
  type: z.enum(AUDIT_EVENT_TYPES),
  outcome: z.enum(['success', 'failure']),
  actor: nullableText,
  actorIndex: nullableText,
  subject: nullableText,
  subjectIndex: nullableText,
  client: nullableText,
  consent: nullableText,
  requestId: nullableText,
  details: storedDetails,
  personal: nullableText,
  prev: hex64,
  hash: hex64,
});

/** An entry with its sealed fields opened, for exports and the "who acted for me" page. */
export interface OpenedEntry extends Omit<StoredEntry, 'actor' | 'subject' | 'personal'> {
  actor: string | null;
  subject: string | null;
  personal: JsonObject | null;
}
