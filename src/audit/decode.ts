import { storedEntrySchema, type StoredEntry } from './entry.ts';
import type { ScannedEntry } from './backend.ts';
import { LedgerCorruptError } from './errors.ts';

/** Validates what a backend read back. Edited storage yields an error for that seq instead of a crash. */
export function decodeEntry(seq: number, record: unknown, detailsText?: string): ScannedEntry {
  const parsed = storedEntrySchema.safeParse(record);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { seq, error: `malformed entry (${issue ? `${issue.path.join('.') || 'entry'}: ${issue.message}` : 'invalid'})` };
  }
  if (parsed.data.seq !== seq) return { seq, error: `stored seq ${parsed.data.seq} differs from its position` };
  return detailsText === undefined ? { seq, entry: parsed.data } : { seq, entry: parsed.data, detailsText };
}

export function parseJsonText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** For reads that serve callers (not verify): a malformed entry is an error, not something to skip quietly. */
export function entriesOrThrow(scanned: ScannedEntry[]): StoredEntry[] {
  return scanned.map((s) => {
    if (s.entry) return s.entry;
    throw new LedgerCorruptError(s.seq, s.error);
  });
}
