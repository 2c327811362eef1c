import type { LedgerBackend, StoredCheckpoint } from './backend.ts';
import { entryHash, GENESIS_HASH } from './chain.ts';
import { checkpointKeyResolver, decodeCheckpointPayload, verifyCheckpoint, type CheckpointKeys } from './checkpoint.ts';
import type { StoredEntry } from './entry.ts';
import { LedgerCorruptError } from './errors.ts';

export interface PruneOptions {
  /** When given, the anchor and every checkpoint in the removed range must carry a valid signature. */
  verifyKeys?: CheckpointKeys;
  /** Entries removed per atomic step (rounded up to whole segments). */
  maxStep?: number;
}

export interface PruneResult {
  removed: number;
  /** The checkpoint that now anchors the oldest retained entry (null if nothing was pruned). */
  anchorSeq: number | null;
}

async function entryAt(backend: LedgerBackend, seq: number): Promise<StoredEntry> {
  const [s] = await backend.range(seq, seq, 1);
  if (!s || s.seq !== seq) throw new LedgerCorruptError(seq, 'entry missing');
  if (!s.entry) throw new LedgerCorruptError(seq, s.error);
  return s.entry;
}

/**
 * Retention: removes whole segments of entries older than `before`, ending at a signed checkpoint, which stays
 * as the anchor the next entry's `prev` links to. Before destroying anything the removed range is checked
 * (links, hashes, checkpoint heads): evidence that was tampered with is not quietly disposed of. Each step
 * ends at a checkpoint, so the ledger stays verifiable even if pruning is interrupted.
 */
export async function pruneLedger(backend: LedgerBackend, before: Date, options: PruneOptions = {}): Promise<PruneResult> {
  const maxStep = options.maxStep ?? 10_000;
  const beforeIso = before.toISOString();
  const first = await backend.firstSeq();
  if (first === null) return { removed: 0, anchorSeq: null };
  const all = await backend.checkpoints();
  const candidates: StoredCheckpoint[] = all.filter((c) => c.seq >= first);

  // Entry time never decreases along the chain, so "entry at checkpoint is older than `before`" holds for
  // a prefix of the candidates: binary search for its last element.
  let lo = 0;
  let hi = candidates.length - 1;
  let pick = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if ((await entryAt(backend, candidates[mid].seq)).time < beforeIso) {
      pick = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (pick < 0) return { removed: 0, anchorSeq: null };
  const anchor = candidates[pick];

  const resolver = options.verifyKeys ? checkpointKeyResolver(options.verifyKeys) : undefined;
  const heads = new Map<number, string>();
  for (const c of candidates.slice(0, pick + 1)) {
    const payload = decodeCheckpointPayload(c.jws);
    if (!payload || payload.seq !== c.seq) throw new LedgerCorruptError(c.seq, 'checkpoint payload malformed; not pruning');
    if (resolver) {
      const check = await verifyCheckpoint(c, resolver);
      if (!check.ok) throw new LedgerCorruptError(c.seq, `checkpoint ${check.reason}; not pruning`);
    }
    heads.set(c.seq, payload.head);
  }

  let prev = GENESIS_HASH;
  if (first > 1) {
    const current = all.find((c) => c.seq === first - 1);
    const payload = current ? decodeCheckpointPayload(current.jws) : null;
    if (!payload) throw new LedgerCorruptError(first, 'no checkpoint anchors the oldest entry; not pruning');
    prev = payload.head;
  }
  let expected = first;
  while (expected <= anchor.seq) {
    const batch = await backend.range(expected, anchor.seq, 5_000);
    if (batch.length === 0) break;
    for (const s of batch) {
      if (s.seq !== expected) throw new LedgerCorruptError(expected, 'gap in the range to prune; not pruning');
      if (!s.entry) throw new LedgerCorruptError(s.seq, `${s.error}; not pruning`);
      if (s.entry.prev !== prev || entryHash(prev, s.entry) !== s.entry.hash) throw new LedgerCorruptError(s.seq, 'chain broken in the range to prune; not pruning');
      const signed = heads.get(s.seq);
      if (signed !== undefined && signed !== s.entry.hash) throw new LedgerCorruptError(s.seq, 'checkpoint head disagrees; not pruning');
      prev = s.entry.hash;
      expected++;
    }
  }
  if (expected !== anchor.seq + 1) throw new LedgerCorruptError(expected, 'entries missing in the range to prune; not pruning');

  // Cut at checkpoints, roughly maxStep entries apart, so each atomic step is short and leaves an anchor.
  let removed = 0;
  let lastCut = first - 1;
  for (const c of candidates.slice(0, pick + 1)) {
    if (c.seq === anchor.seq || c.seq - lastCut >= maxStep) {
      removed += await backend.truncateThrough(c.seq);
      lastCut = c.seq;
    }
  }
  return { removed, anchorSeq: anchor.seq };
}
