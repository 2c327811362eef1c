import { hash } from 'node:crypto';
import type { JsonObject, JsonValue } from './json.ts';
import type { StoredEntry } from './entry.ts';

/** The `prev` of the first entry. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace, JSON.stringify's number and string
 * encoding (both deterministic in ECMAScript). The same value always gives the same bytes, whichever process
 * or backend stored it.
 */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value).sort();
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (i > 0) out += ',';
    out += `${JSON.stringify(k)}:${canonicalJson(value[k])}`;
  }
  return `${out}}`;
}

const str = (v: string | null): string => (v === null ? 'null' : JSON.stringify(v));

// An append serialises the same details object up to three times (size check, hash, storage). Entry
// details are built by the ledger and never mutated afterwards, so the text can be remembered per object.
const detailsText = new WeakMap<JsonObject, string>();

/** canonicalJson of an entry's details, remembered per (immutable) details object. */
export function canonicalDetails(details: JsonObject): string {
  let text = detailsText.get(details);
  if (text === undefined) {
    text = canonicalJson(details);
    detailsText.set(details, text);
  }
  return text;
}

/**
 * canonicalJson of the entry without `hash`, written out by hand because verify runs it a million times.
 * The keys are in sorted order; a unit test pins this to canonicalJson so the two cannot drift.
 */
export function canonicalEntry(e: Omit<StoredEntry, 'hash'>, storedDetails?: string): string {
  return (
    `{"actor":${str(e.actor)},"actorIndex":${str(e.actorIndex)},"client":${str(e.client)},"consent":${str(e.consent)}` +
    `,"details":${storedDetails ?? canonicalDetails(e.details)},"outcome":${JSON.stringify(e.outcome)},"personal":${str(e.personal)}` +
    `,"prev":${JSON.stringify(e.prev)},"requestId":${str(e.requestId)},"seq":${e.seq},"subject":${str(e.subject)}` +
    `,"subjectIndex":${str(e.subjectIndex)},"time":${JSON.stringify(e.time)},"type":${JSON.stringify(e.type)}}`
  );
}

/**
 * hash = sha256(prevHash || canonical(entry without hash)), hex. `prev` is inside the canonical form too.
 * `storedDetails` is the details text exactly as a backend stored it (backends store the canonical form):
 * hashing those bytes skips a re-serialisation, and bytes edited into a different but equal JSON count as changed.
 */
export function entryHash(prevHash: string, e: Omit<StoredEntry, 'hash'>, storedDetails?: string): string {
  // One-shot crypto.hash: no Hash object per entry, which matters at a million entries per verify.
  return hash('sha256', prevHash + canonicalEntry(e, storedDetails), 'hex');
}
