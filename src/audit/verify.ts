import type { LedgerBackend, StoredCheckpoint } from './backend.ts';
import { entryHash, GENESIS_HASH } from './chain.ts';
import { checkpointKeyResolver, verifyCheckpoint, type CheckpointCheck, type CheckpointKeys } from './checkpoint.ts';
import type { StoredEntry } from './entry.ts';

export type VerifyResult =
  | {
      ok: true;
      /** Entries walked (retained entries; pruned ones are vouched for by the anchor checkpoint). */
      count: number;
      firstSeq: number | null;
      head: { seq: number; hash: string };
      checkpoints: number;
      /** Highest signed checkpoint: entries after it are chained but not yet signed. */
      lastCheckpointSeq: number | null;
    }
  | { ok: false; firstBadSeq: number; reason: string };

export interface VerifyOptions {
  /** Entries read per round trip. */
  batchSize?: number;
}

class Bad extends Error {
  readonly seq: number;
  constructor(seq: number, reason: string) {
    super(reason);
    this.seq = seq;
  }
}

/**
 * Walks the whole chain from the oldest retained entry and every checkpoint, and names the first sequence
 * number at which anything was changed, removed, inserted or reordered, or where a checkpoint's signature or
 * head disagrees. Checkpoint signatures are checked up front (there are few); entries are streamed in batches.
 */
export async function verifyLedger(backend: LedgerBackend, publicKeys: CheckpointKeys, options: VerifyOptions = {}): Promise<VerifyResult> {
  const batchSize = options.batchSize ?? 10_000;
  const resolver = checkpointKeyResolver(publicKeys);

  // Checkpoints first, then the head: a checkpoint is written only after its entry committed, so any
  // checkpoint above the head read afterwards refers to entries that were removed.
  const stored: StoredCheckpoint[] = await backend.checkpoints();
  const head = await backend.head();
  const first = await backend.firstSeq();

  const checks = new Map<number, CheckpointCheck[]>();
  for (const cp of stored) {
    const list = checks.get(cp.seq) ?? [];
    list.push(await verifyCheckpoint(cp, resolver));
    checks.set(cp.seq, list);
  }
  const validAt = (seq: number): string | undefined => {
    const list = checks.get(seq);
    if (!list || list.length === 0) return undefined;
    for (const c of list) if (!c.ok) return undefined;
    const c0 = list[0];
    return c0.ok ? c0.payload.head : undefined;
  };
  const newestValidBelow = (seq: number): number | undefined => {
    let best: number | undefined;
    for (const s of checks.keys()) if (s < seq && (best === undefined || s > best) && validAt(s) !== undefined) best = s;
    return best;
  };

  try {
    if (first === null && head.seq > 0) {
      // Everything was pruned: legitimate only if a signed checkpoint vouches for the head itself.
      if (validAt(head.seq) === head.hash) {
        return { ok: true, count: 0, firstSeq: null, head: { seq: head.seq, hash: head.hash }, checkpoints: stored.length, lastCheckpointSeq: head.seq };
      }
      const from = (newestValidBelow(head.seq) ?? 0) + 1;
      throw new Bad(from, `entries ${from}..${head.seq} are missing and no signed checkpoint vouches for them`);
    }

    // Where the walk starts: genesis, or the checkpoint that anchors the oldest retained entry after a prune.
    let expected: number;
    let prev: string;
    if (first === null || first === 1) {
      expected = 1;
      prev = GENESIS_HASH;
    } else {
      const anchor = first - 1;
      const list = checks.get(anchor);
      if (list && list.some((c) => !c.ok)) {
        const failed = list.find((c): c is Extract<CheckpointCheck, { ok: false }> => !c.ok);
        throw new Bad(anchor, `anchor checkpoint at seq ${anchor}: ${failed?.reason ?? 'invalid'}`);
      }
      const anchorHead = validAt(anchor);
      if (anchorHead === undefined) {
        const below = newestValidBelow(anchor);
        const missingFrom = below === undefined ? 1 : below + 1;
        throw new Bad(missingFrom, `entries ${missingFrom}..${anchor} are missing and no signed checkpoint anchors entry ${first}`);
      }
      expected = first;
      prev = anchorHead;
    }

    let count = 0;
    let prevTime: string | null = null;
    let prevPrev: string | null = null;
    let lastGoodCheckpoint: number | null = first !== null && first > 1 ? first - 1 : null;

    const failEntry = (e: StoredEntry, what: string): never => {
      // An entry spliced in with a correct link leaves the one after it failing; if that one would be valid
      // one position earlier, the splice is what happened, and its seq is the one to report.
      if (prevPrev !== null && e.prev === prevPrev && entryHash(prevPrev, { ...e, seq: e.seq - 1 }) === e.hash) {
        throw new Bad(e.seq - 1, `entry ${e.seq - 1} was inserted (entry ${e.seq} is the original entry ${e.seq - 1})`);
      }
      throw new Bad(e.seq, what);
    };

    while (expected <= head.seq) {
      const batch = await backend.range(expected, head.seq, batchSize);
      if (batch.length === 0) break;
      for (const s of batch) {
        if (s.seq > expected) throw new Bad(expected, `entry ${expected} is missing (next stored entry is ${s.seq})`);
        if (s.seq < expected) throw new Bad(s.seq, `entry ${s.seq} is duplicated or out of order`);
        if (!s.entry) throw new Bad(s.seq, s.error);
        const e = s.entry;
        if (e.prev !== prev) failEntry(e, `entry ${e.seq} does not link to entry ${e.seq - 1} (removed, inserted or reordered)`);
        if (entryHash(prev, e, s.detailsText) !== e.hash) failEntry(e, `entry ${e.seq} was changed (content does not match its hash)`);
        if (prevTime !== null && e.time < prevTime) throw new Bad(e.seq, `entry ${e.seq} is earlier than entry ${e.seq - 1} (reordered)`);
        const cps = checks.get(e.seq);
        if (cps) {
          for (const c of cps) {
            if (!c.ok) throw new Bad(e.seq, `checkpoint at seq ${e.seq}: ${c.reason}`);
            if (c.payload.head !== e.hash) {
              throw new Bad(
                e.seq,
                `entry ${e.seq} is not the one its checkpoint signed: entries after ${lastGoodCheckpoint ?? 0} were changed, inserted or rewritten`,
              );
            }
          }
          lastGoodCheckpoint = e.seq;
        }
        prevPrev = prev;
        prev = e.hash;
        prevTime = e.time;
        expected++;
        count++;
      }
    }

    const last = expected - 1;
    if (last < head.seq) throw new Bad(last + 1, `entries ${last + 1}..${head.seq} are missing (the head record says ${head.seq})`);
    if (head.seq > 0 && head.hash !== prev) throw new Bad(head.seq, `the head record's hash differs from entry ${head.seq}`);
    const bogus = stored.find((cp) => cp.seq > head.seq);
    if (bogus) throw new Bad(head.seq + 1, `checkpoint at seq ${bogus.seq} is beyond the chain head ${head.seq}: entries were removed from the end`);
    // Entries appended while we walked are fine; entries stored above a head that did not move are not.
    const after = await backend.range(head.seq + 1, Number.POSITIVE_INFINITY, 1);
    if (after.length > 0) {
      const now = await backend.head();
      if (now.seq < after[0].seq) throw new Bad(after[0].seq, `entry ${after[0].seq} is beyond the chain head ${now.seq} (inserted)`);
    }
    return {
      ok: true,
      count,
      firstSeq: first,
      head: { seq: head.seq, hash: head.seq > 0 ? prev : GENESIS_HASH },
      checkpoints: stored.length,
      lastCheckpointSeq: lastGoodCheckpoint,
    };
  } catch (err) {
    if (err instanceof Bad) return { ok: false, firstBadSeq: err.seq, reason: err.message };
    throw err;
  }
}
