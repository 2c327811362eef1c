import { z } from 'zod';
import type { Sealer } from '../crypto/seal.ts';
import type { BackendQuery, ChainHead, LedgerBackend, StoredCheckpoint } from './backend.ts';
import { signCheckpoint, type CheckpointKeys, type CheckpointSigner } from './checkpoint.ts';
import { entriesOrThrow } from './decode.ts';
import { AUDIT_EVENT_TYPES, AUDIT_INDEX_PURPOSE, type AuditEvent, type OpenedEntry, type StoredEntry } from './entry.ts';
import { AuditInputError } from './errors.ts';
import type { AuditMetrics } from './metrics.ts';
import { buildEntry, identitySealer, openEntry, prepareEntryBody } from './prepare.ts';
import { pruneLedger, type PruneResult } from './prune.ts';

export interface LedgerOptions {
  /** Sign a checkpoint whenever seq is a multiple of this (0 = never by count). Default 1000. */
  checkpointEvery?: number;
  /** Also sign the head every this many seconds if it moved (0 = no timer). Default 300. */
  checkpointIntervalSeconds?: number;
  metrics?: AuditMetrics;
  /** Public keys for checking checkpoints before pruning (recommended in production). */
  verifyKeys?: CheckpointKeys;
  clock?: () => Date;
  /** Failures that happen after an entry is committed (checkpoint signing): reported, never thrown at the caller. */
  onError?: (err: unknown) => void;
}

export interface ReadRange {
  fromSeq?: number;
  toSeq?: number;
  limit?: number;
}

const seqSchema = z.number().int().nonnegative();
const timeBound = z.union([z.date(), z.iso.datetime({ offset: true })]).transform((v) => (v instanceof Date ? v : new Date(v)).toISOString());
const eventType = z.enum(AUDIT_EVENT_TYPES);

export const readRangeSchema = z
  .object({
    fromSeq: seqSchema.optional(),
    toSeq: seqSchema.optional(),
    limit: z.number().int().positive().max(10_000).default(1000),
  })
  .strict();

export const ledgerQuerySchema = z
  .object({
    /** Inclusive. */
    from: timeBound.optional(),
    /** Exclusive. */
    to: timeBound.optional(),
    subject: z.string().min(1).optional(),
    actor: z.string().min(1).optional(),
    client: z.string().min(1).optional(),
    consent: z.string().min(1).optional(),
    type: z.union([eventType, z.array(eventType)]).optional(),
    limit: z.number().int().positive().max(10_000).default(100),
    order: z.enum(['asc', 'desc']).default('asc'),
    /** Cursors (exclusive): pass the last seq of a page to get the next. */
    afterSeq: seqSchema.optional(),
    beforeSeq: seqSchema.optional(),
  })
  .strict();

export type LedgerQuery = z.input<typeof ledgerQuerySchema>;

export interface Ledger {
  readonly backend: LedgerBackend;
  /** Records one event. Resolves once it is committed in the chain (and its checkpoint, if one was due). */
  append(event: AuditEvent): Promise<StoredEntry>;
  /** Entries by sequence number, ascending. */
  read(range?: ReadRange): Promise<StoredEntry[]>;
  /** Entries matching every given filter; subject and actor are matched through their blind indexes. */
  query(filter?: LedgerQuery): Promise<StoredEntry[]>;
  /** Every match, page by page (the filter's limit is the page size). */
  scan(filter?: LedgerQuery): AsyncGenerator<StoredEntry>;
  head(): Promise<ChainHead>;
  /** Signs the current head unless it is signed already; null on an empty ledger. */
  checkpoint(): Promise<StoredCheckpoint | null>;
  /** Removes whole segments older than `before` (see prune.ts) and records that it did. */
  prune(before: Date): Promise<PruneResult>;
  /** Decrypts actor, subject and personal data of one entry. */
  open(entry: StoredEntry): OpenedEntry;
  /** Stops the checkpoint timer and waits for checkpoints in flight. Does not close the backend's handle. */
  close(): Promise<void>;
}

function invalid(err: z.ZodError): AuditInputError {
  return new AuditInputError(`invalid ledger query: ${err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
}

export function createLedger(backend: LedgerBackend, sealer: Sealer, signer: CheckpointSigner, options: LedgerOptions = {}): Ledger {
  const every = options.checkpointEvery ?? 1000;
  const intervalSeconds = options.checkpointIntervalSeconds ?? 300;
  const clock = options.clock ?? (() => new Date());
  const onError = options.onError ?? (() => undefined);
  const inFlight = new Set<Promise<unknown>>();
  const identity = identitySealer(sealer);

  function track<T>(p: Promise<T>): Promise<T> {
    inFlight.add(p);
    const done = (): void => {
      inFlight.delete(p);
    };
    p.then(done, done);
    return p;
  }

  async function signAndStore(seq: number, hash: string): Promise<StoredCheckpoint> {
    const cp = await signCheckpoint(signer, seq, hash, clock());
    await backend.putCheckpoint(cp);
    return cp;
  }

  async function checkpoint(): Promise<StoredCheckpoint | null> {
    const head = await backend.head();
    if (head.seq === 0) return null;
    const latest = await backend.latestCheckpoint();
    if (latest && latest.seq >= head.seq) return latest;
    return signAndStore(head.seq, head.hash);
  }

  const timer =
    intervalSeconds > 0
      ? setInterval(() => {
          track(checkpoint()).catch(onError);
        }, intervalSeconds * 1000)
      : undefined;
  // A ledger must not keep a CLI or test process alive on its own.
  timer?.unref();

  function toBackendQuery(filter: LedgerQuery): BackendQuery {
    const parsed = ledgerQuerySchema.safeParse(filter);
    if (!parsed.success) throw invalid(parsed.error);
    const q = parsed.data;
    return {
      fromTime: q.from,
      toTime: q.to,
      subjectIndex: q.subject === undefined ? undefined : sealer.blindIndex(q.subject, AUDIT_INDEX_PURPOSE),
      actorIndex: q.actor === undefined ? undefined : sealer.blindIndex(q.actor, AUDIT_INDEX_PURPOSE),
      client: q.client,
      consent: q.consent,
      types: q.type === undefined ? undefined : Array.isArray(q.type) ? q.type : [q.type],
      afterSeq: q.afterSeq,
      beforeSeq: q.beforeSeq,
      order: q.order,
      limit: q.limit,
    };
  }

  const ledger: Ledger = {
    backend,

    async append(event) {
      const started = performance.now();
      const body = prepareEntryBody(event, sealer, identity);
      const { entry, attempts } = await backend.append((head) => buildEntry(body, head, clock()));
      options.metrics?.observeAppend(backend.kind, (performance.now() - started) / 1000, attempts);
      options.metrics?.countEntry(entry.type, entry.outcome);
      // Exactly one writer appends each multiple of `every`, so exactly one process signs it: no coordination.
      if (every > 0 && entry.seq % every === 0) {
        await track(signAndStore(entry.seq, entry.hash)).catch(onError);
      }
      return entry;
    },

    async read(range = {}) {
      const parsed = readRangeSchema.safeParse(range);
      if (!parsed.success) throw invalid(parsed.error);
      const r = parsed.data;
      return entriesOrThrow(await backend.range(r.fromSeq ?? 1, r.toSeq ?? Number.POSITIVE_INFINITY, r.limit));
    },

    async query(filter = {}) {
      return backend.query(toBackendQuery(filter));
    },

    async *scan(filter = {}) {
      const q = toBackendQuery(filter);
      for (;;) {
        const page = await backend.query(q);
        yield* page;
        if (page.length < q.limit) return;
        const last = page[page.length - 1].seq;
        if (q.order === 'desc') q.beforeSeq = last;
        else q.afterSeq = last;
      }
    },

    head: () => backend.head(),

    checkpoint: () => track(checkpoint()),

    async prune(before) {
      const result = await pruneLedger(backend, before, { verifyKeys: options.verifyKeys });
      if (result.removed > 0) {
        await ledger.append({
          type: 'audit.pruned',
          outcome: 'success',
          details: { anchorSeq: result.anchorSeq, removed: result.removed, before: before.toISOString() },
        });
      }
      return result;
    },

    open: (entry) => openEntry(entry, sealer),

    async close() {
      if (timer) clearInterval(timer);
      await Promise.allSettled([...inFlight]);
    },
  };
  return ledger;
}
