import { GENESIS_HASH } from './chain.ts';
import type { AuditEventType, StoredEntry } from './entry.ts';

export interface ChainHead {
  /** 0 before the first append. */
  seq: number;
  hash: string;
  /** Time of the head entry; the next entry's time is never earlier. */
  time: string | null;
}

export const GENESIS_HEAD: ChainHead = Object.freeze({ seq: 0, hash: GENESIS_HASH, time: null });

/** A signed checkpoint as stored. `head`/`iat` are convenience copies; verification trusts only the JWS. */
export interface StoredCheckpoint {
  seq: number;
  jws: string;
  head: string | null;
  iat: number | null;
}

/** One position of a range read: the entry, or why the stored bytes no longer parse as one. */
export type ScannedEntry =
  | { seq: number; entry: StoredEntry; error?: undefined; /** details exactly as stored, when stored as text */ detailsText?: string }
  | { seq: number; entry?: undefined; error: string; detailsText?: undefined };

/** A query after the ledger has turned plaintext filters into blind indexes; backends never see plaintext. */
export interface BackendQuery {
  /** Inclusive lower bound, ISO. */
  fromTime?: string;
  /** Exclusive upper bound, ISO. */
  toTime?: string;
  subjectIndex?: string;
  actorIndex?: string;
  client?: string;
  consent?: string;
  types?: readonly AuditEventType[];
  /** Exclusive seq bounds: cursors for paging. */
  afterSeq?: number;
  beforeSeq?: number;
  order: 'asc' | 'desc';
  limit: number;
}

/**
 * Where the ledger keeps its chain. `append` is the one place concurrency is handled: it must read the head
 * and write the entry built from it atomically with respect to every other writer, in any process.
 */
export interface LedgerBackend {
  readonly kind: 'sqlite' | 'redis';
  /** The stored chain head record (written in the same atomic step as each entry). */
  head(): Promise<ChainHead>;
  /**
   * Appends the entry `build` makes from the current head. `build` is pure and may be called more than once
   * (optimistic backends retry when another writer moved the head). `attempts` counts those calls.
   */
  append(build: (head: ChainHead) => StoredEntry): Promise<{ entry: StoredEntry; attempts: number }>;
  /** Entries with fromSeq <= seq <= toSeq, ascending, at most `limit`. */
  range(fromSeq: number, toSeq: number, limit: number): Promise<ScannedEntry[]>;
  query(q: BackendQuery): Promise<StoredEntry[]>;
  /** Lowest retained seq, or null when no entry is stored. */
  firstSeq(): Promise<number | null>;
  /** Stores a checkpoint unless one exists at that seq already (several processes may sign the same seq). */
  putCheckpoint(cp: StoredCheckpoint): Promise<void>;
  /** All checkpoints, ascending by seq. */
  checkpoints(): Promise<StoredCheckpoint[]>;
  latestCheckpoint(): Promise<StoredCheckpoint | null>;
  /**
   * Retention: removes entries with seq <= anchorSeq and checkpoints with seq < anchorSeq, in one atomic step,
   * so the checkpoint at anchorSeq is left to anchor the next entry. Returns how many entries went.
   */
  truncateThrough(anchorSeq: number): Promise<number>;
}
