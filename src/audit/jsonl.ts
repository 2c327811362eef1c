import type { Sealer } from '../crypto/seal.ts';
import type { OpenedEntry, StoredEntry } from './entry.ts';
import { openEntry } from './prepare.ts';

export interface ExportOptions {
  /** Decrypt actor, subject and personal data. Needs `sealer`; off by default so exports leak nothing. */
  reveal?: boolean;
  sealer?: Sealer;
}

/** The opened form when the caller asked for it (and can open it), otherwise undefined. */
export function revealed(entry: StoredEntry, options: ExportOptions): OpenedEntry | undefined {
  if (!options.reveal) return undefined;
  if (!options.sealer) throw new Error('audit export: reveal needs the sealer');
  return openEntry(entry, options.sealer);
}

/** Stored form (sealed, verifiable line by line) or opened form, as the caller asked. */
export function exportable(entry: StoredEntry, options: ExportOptions): StoredEntry | OpenedEntry {
  return revealed(entry, options) ?? entry;
}

/**
 * JSON lines, one entry per line, in the order given. Without `reveal` each line is exactly the stored form,
 * so an exported file can be re-verified offline (sha256(prev || canonical(line without hash)) = hash).
 */
export async function* toJsonLines(entries: Iterable<StoredEntry> | AsyncIterable<StoredEntry>, options: ExportOptions = {}): AsyncGenerator<string> {
  for await (const e of entries) yield `${JSON.stringify(exportable(e, options))}\n`;
}
