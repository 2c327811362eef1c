import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { StoreUnavailableError } from '../../store/errors.ts';
import type { BackendQuery, ChainHead, LedgerBackend, ScannedEntry, StoredCheckpoint } from '../backend.ts';
import { GENESIS_HEAD } from '../backend.ts';
import { canonicalJson } from '../chain.ts';
import { decodeEntry, entriesOrThrow, parseJsonText } from '../decode.ts';
import type { StoredEntry } from '../entry.ts';

export interface SqliteLedgerOptions {
  /**
   * Set WAL, synchronous=NORMAL and a busy timeout on the handle (default true). The broker's own opener sets
   * the same; this keeps a ledger-only handle (CLI, bench) on the settings the throughput figures assume.
   */
  configure?: boolean;
  busyTimeoutMs?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS audit_entries (
  seq         INTEGER PRIMARY KEY,
  time        TEXT NOT NULL,
  type        TEXT NOT NULL,
  outcome     TEXT NOT NULL,
  actor       TEXT,
  actor_idx   TEXT,
  subject     TEXT,
  subject_idx TEXT,
  client      TEXT,
  consent     TEXT,
  request_id  TEXT,
  details     TEXT NOT NULL,
  personal    TEXT,
  prev        TEXT NOT NULL,
  hash        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entries_time ON audit_entries (time);
CREATE INDEX IF NOT EXISTS audit_entries_subject ON audit_entries (subject_idx) WHERE subject_idx IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_entries_actor ON audit_entries (actor_idx) WHERE actor_idx IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_entries_client ON audit_entries (client) WHERE client IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_entries_consent ON audit_entries (consent) WHERE consent IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  seq  INTEGER PRIMARY KEY,
  head TEXT,
  iat  INTEGER,
  jws  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  seq  INTEGER NOT NULL,
  hash TEXT NOT NULL,
  time TEXT
);
`;

// Result codes meaning "cannot serve now" rather than "our SQL is wrong": BUSY, LOCKED, IOERR, CORRUPT,
// FULL, CANTOPEN, PROTOCOL, NOTADB.
const UNAVAILABLE = new Set([5, 6, 10, 11, 13, 14, 15, 26]);

function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const { code, errcode } = err as Error & { code?: unknown; errcode?: unknown };
  if (code === 'ERR_INVALID_STATE') return true; // the handle was closed
  return typeof errcode === 'number' && UNAVAILABLE.has(errcode & 0xff);
}

function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (isUnavailable(err)) throw new StoreUnavailableError('audit ledger database unavailable', { cause: err });
    throw err;
  }
}

type Row = Record<string, SQLInputValue>;

function text(v: SQLInputValue | undefined): string | null {
  return typeof v === 'string' ? v : null;
}

function rowToScanned(row: Row): ScannedEntry {
  const seq = Number(row.seq);
  const details = typeof row.details === 'string' ? parseJsonText(row.details) : undefined;
  return decodeEntry(seq, {
    seq,
    time: row.time,
    type: row.type,
    outcome: row.outcome,
    actor: text(row.actor),
    actorIndex: text(row.actor_idx),
    subject: text(row.subject),
    subjectIndex: text(row.subject_idx),
    client: text(row.client),
    consent: text(row.consent),
    requestId: text(row.request_id),
    details,
    personal: text(row.personal),
    prev: row.prev,
    hash: row.hash,
  });
}

function rowToCheckpoint(row: Row): StoredCheckpoint {
  return { seq: Number(row.seq), jws: String(row.jws), head: text(row.head), iat: typeof row.iat === 'number' ? row.iat : null };
}

/**
 * The ledger on the broker's SQLite file. Appends run in one BEGIN IMMEDIATE transaction: the write lock is
 * taken before the head is read, so writers in other processes queue on busy_timeout instead of forking
 * the chain. node:sqlite is synchronous, so no other append of this process can interleave either.
 */
export function sqliteLedgerBackend(db: DatabaseSync, options: SqliteLedgerOptions = {}): LedgerBackend {
  guard(() => {
    if (options.configure ?? true) {
      const mode = db.prepare('PRAGMA journal_mode').get();
      if (mode?.journal_mode !== 'memory') db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    }
    db.exec(SCHEMA);
  });

  const stmt = new Map<string, StatementSync>();
  const prep = (sql: string): StatementSync => {
    let s = stmt.get(sql);
    if (!s) {
      s = db.prepare(sql);
      stmt.set(sql, s);
    }
    return s;
  };
  const begin = prep('BEGIN IMMEDIATE');
  const commit = prep('COMMIT');
  const rollback = prep('ROLLBACK');
  const headGet = prep('SELECT seq, hash, time FROM audit_head WHERE id = 1');
  const headPut = prep('INSERT INTO audit_head (id, seq, hash, time) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, time = excluded.time');
  const insert = prep(
    'INSERT INTO audit_entries (seq, time, type, outcome, actor, actor_idx, subject, subject_idx, client, consent, request_id, details, personal, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const rangeStmt = prep('SELECT * FROM audit_entries WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?');

  function readHead(): ChainHead {
    const row = headGet.get();
    if (!row) return GENESIS_HEAD;
    return { seq: Number(row.seq), hash: String(row.hash), time: text(row.time) };
  }

  function transaction<T>(fn: () => T): T {
    // A caller holding a transaction open on this shared handle would make BEGIN fail; say so plainly.
    if (db.isTransaction) throw new Error('audit ledger: the SQLite handle is already inside a transaction');
    begin.run();
    try {
      const out = fn();
      commit.run();
      return out;
    } catch (err) {
      if (db.isTransaction) rollback.run();
      throw err;
    }
  }

  return {
    kind: 'sqlite',

    async head() {
      return guard(readHead);
    },

    async append(build) {
      return guard(() =>
        transaction(() => {
          const e: StoredEntry = build(readHead());
          insert.run(
            e.seq, e.time, e.type, e.outcome, e.actor, e.actorIndex, e.subject, e.subjectIndex,
            e.client, e.consent, e.requestId, canonicalJson(e.details), e.personal, e.prev, e.hash,
          );
          headPut.run(e.seq, e.hash, e.time);
          return { entry: e, attempts: 1 };
        }),
      );
    },

    async range(fromSeq, toSeq, limit) {
      return guard(() => rangeStmt.all(fromSeq, Number.isFinite(toSeq) ? toSeq : Number.MAX_SAFE_INTEGER, limit).map(rowToScanned));
    },

    async query(q: BackendQuery) {
      const where: string[] = [];
      const args: SQLInputValue[] = [];
      const add = (clause: string, value: SQLInputValue): void => {
        where.push(clause);
        args.push(value);
      };
      if (q.afterSeq !== undefined) add('seq > ?', q.afterSeq);
      if (q.beforeSeq !== undefined) add('seq < ?', q.beforeSeq);
      if (q.fromTime !== undefined) add('time >= ?', q.fromTime);
      if (q.toTime !== undefined) add('time < ?', q.toTime);
      if (q.subjectIndex !== undefined) add('subject_idx = ?', q.subjectIndex);
      if (q.actorIndex !== undefined) add('actor_idx = ?', q.actorIndex);
      if (q.client !== undefined) add('client = ?', q.client);
      if (q.consent !== undefined) add('consent = ?', q.consent);
      if (q.types && q.types.length > 0) {
        where.push(`type IN (${q.types.map(() => '?').join(', ')})`);
        args.push(...q.types);
      }
      const sql = `SELECT * FROM audit_entries${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY seq ${q.order === 'desc' ? 'DESC' : 'ASC'} LIMIT ?`;
      args.push(q.limit);
      return guard(() => entriesOrThrow(prep(sql).all(...args).map(rowToScanned)));
    },

    async firstSeq() {
      return guard(() => {
        const row = prep('SELECT min(seq) AS seq FROM audit_entries').get();
        return typeof row?.seq === 'number' ? row.seq : null;
      });
    },

    async putCheckpoint(cp) {
      guard(() => prep('INSERT INTO audit_checkpoints (seq, head, iat, jws) VALUES (?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING').run(cp.seq, cp.head, cp.iat, cp.jws));
    },

    async checkpoints() {
      return guard(() => prep('SELECT * FROM audit_checkpoints ORDER BY seq').all().map(rowToCheckpoint));
    },

    async latestCheckpoint() {
      return guard(() => {
        const row = prep('SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1').get();
        return row ? rowToCheckpoint(row) : null;
      });
    },

    async truncateThrough(anchorSeq) {
      return guard(() =>
        transaction(() => {
          const removed = prep('DELETE FROM audit_entries WHERE seq <= ?').run(anchorSeq).changes;
          prep('DELETE FROM audit_checkpoints WHERE seq < ?').run(anchorSeq);
          return Number(removed);
        }),
      );
    },
  };
}
