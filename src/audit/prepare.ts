import type { Sealer } from '../crypto/seal.ts';
import type { ChainHead } from './backend.ts';
import { canonicalDetails, canonicalJson, entryHash } from './chain.ts';
import {
  AUDIT_INDEX_PURPOSE,
  AUDIT_SEAL_PURPOSE,
  MAX_DETAILS_CHARS,
  auditEventSchema,
  type EntryBody,
  type OpenedEntry,
  type StoredEntry,
} from './entry.ts';
import { AuditInputError } from './errors.ts';
import { jsonObjectSchema, type JsonObject } from './json.ts';
import { dropSecrets, looksLikeSecretValue, redactDetails } from './redact.ts';

/** Where the dotted paths of dropped secrets are noted, so a reader sees that something was withheld. */
export const REDACTED_KEY = '_redacted';

/**
 * Turns a caller's event into the stored body: validated, secrets dropped, personal data sealed, blind
 * indexes computed. Done once per append, outside the backend's critical section.
 */
export interface SealedIdentity {
  sealed: string;
  index: string;
}

/**
 * Seals and blind-indexes actor/subject values, remembering the last few thousand. Sealing is the dominant
 * cost of an append, and the same accounts recur constantly. Reusing one ciphertext per value reveals only
 * that two entries share an actor or subject, which the blind index stored next to it already reveals; the
 * GCM nonce is never reused for a different plaintext.
 */
export function identitySealer(sealer: Sealer, maxEntries = 10_000): (value: string) => SealedIdentity {
  const cache = new Map<string, SealedIdentity>();
  return (value) => {
    const hit = cache.get(value);
    if (hit) return hit;
    const made = { sealed: sealer.seal(value, AUDIT_SEAL_PURPOSE), index: sealer.blindIndex(value, AUDIT_INDEX_PURPOSE) };
    if (maxEntries <= 0) return made;
    if (cache.size >= maxEntries) {
      const oldest = cache.keys().next();
      if (!oldest.done) cache.delete(oldest.value);
    }
    cache.set(value, made);
    return made;
  };
}

export function prepareEntryBody(input: unknown, sealer: Sealer, identity: (value: string) => SealedIdentity = identitySealer(sealer, 0)): EntryBody {
  const parsed = auditEventSchema.safeParse(input);
  if (!parsed.success) throw new AuditInputError(`invalid audit event: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const ev = parsed.data;

  const red = redactDetails(ev.details ?? {});
  const callerPersonal = dropSecrets(ev.personal ?? {});
  const dropped = [...red.dropped, ...callerPersonal.dropped.map((p) => `personal.${p}`)];
  const details: JsonObject = dropped.length > 0 ? { ...red.details, [REDACTED_KEY]: dropped } : red.details;
  const personal: JsonObject = { ...red.personal, ...callerPersonal.values };

  const detailsText = canonicalDetails(details);
  const personalText = canonicalJson(personal);
  if (detailsText.length > MAX_DETAILS_CHARS) throw new AuditInputError(`audit details exceed ${MAX_DETAILS_CHARS} characters`);
  if (personalText.length > MAX_DETAILS_CHARS) throw new AuditInputError(`audit personal data exceeds ${MAX_DETAILS_CHARS} characters`);

  const actor = ev.actor === undefined ? undefined : identity(ev.actor);
  const subject = ev.subject === undefined ? undefined : identity(ev.subject);
  return {
    type: ev.type,
    outcome: ev.outcome,
    actor: actor?.sealed ?? null,
    actorIndex: actor?.index ?? null,
    subject: subject?.sealed ?? null,
    subjectIndex: subject?.index ?? null,
    client: ev.client ?? null,
    consent: ev.consent ?? null,
    // Request ids come from a client-supplied header; one carrying a credential is not worth keeping.
    requestId: ev.requestId !== undefined && !looksLikeSecretValue(ev.requestId) ? ev.requestId : null,
    details,
    personal: Object.keys(personal).length > 0 ? sealer.seal(personalText, AUDIT_SEAL_PURPOSE) : null,
  };
}

/** Places a body at the chain position after `head`. Time never goes backwards along the chain. */
export function buildEntry(body: EntryBody, head: ChainHead, now: Date): StoredEntry {
  let time = now.toISOString();
  if (head.time !== null && head.time > time) time = head.time;
  const unhashed = { ...body, seq: head.seq + 1, time, prev: head.hash };
  return { ...unhashed, hash: entryHash(head.hash, unhashed) };
}

/** Opens the sealed fields. Throws SealError if a value was tampered with or sealed under an unknown key. */
export function openEntry(entry: StoredEntry, sealer: Sealer): OpenedEntry {
  const open = (v: string | null): string | null => (v === null ? null : sealer.open(v, AUDIT_SEAL_PURPOSE));
  const personalText = open(entry.personal);
  let personal: JsonObject | null = null;
  if (personalText !== null) {
    const parsed = jsonObjectSchema.safeParse(JSON.parse(personalText));
    personal = parsed.success ? parsed.data : null;
  }
  return { ...entry, actor: open(entry.actor), subject: open(entry.subject), personal };
}
