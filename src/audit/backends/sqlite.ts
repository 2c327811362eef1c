import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { StoreUnavailableError } from '../../store/errors.ts';
import type { BackendQuery, ChainHead, LedgerBackend, ScannedEntry, StoredCheckpoint } from '../backend.ts';
import { GENESIS_HEAD } from '../backend.ts';
import { canonicalDetails } from '../chain.ts';
import { decodeEntry, entriesOrThrow, parseJsonText } from '../decode.ts';
import type { StoredEntry } from '../entry.ts';

/** Appends between search-index catch-ups (bounded work per append; queries catch up first anyway). */
const SEARCH_BATCH = 256;

const SEARCH_KEYS_OF = (range: string): string => `
  SELECT 's:' || subject_idx AS key, seq FROM audit_entries WHERE ${range} AND subject_idx IS NOT NULL
  UNION ALL SELECT 'a:' || actor_idx, seq FROM audit_entries WHERE ${range} AND actor_idx IS NOT NULL
  UNION ALL SELECT 'c:' || client, seq FROM audit_entries WHERE ${range} AND client IS NOT NULL
  UNION ALL SELECT 'k:' || consent, seq FROM audit_entries WHERE ${range} AND consent IS NOT NULL`;

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
-- Lookup keys ('s:' subject blind index, 'a:' actor blind index, 'c:' client, 'k:' consent) -> seq.
-- Kept out of audit_entries on purpose: four secondary b-trees updated on every append more than halved
-- append throughput. This table is filled in batches (see catchUp) and brought up to date before a query.
CREATE TABLE IF NOT EXISTS audit_search (
  key TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (key, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_search_state (
  id  INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL
);
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
  if ('code' in err && err.code === 'ERR_INVALID_STATE') return true; // the handle was closed
  return 'errcode' in err && typeof err.errcode === 'number' && UNAVAILABLE.has(err.errcode & 0xff);
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
  const detailsText = typeof row.details === 'string' ? row.details : undefined;
  const details = detailsText === undefined ? undefined : parseJsonText(detailsText);
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
  }, detailsText);
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

  /** Smallest seq whose time >= t (or one past the last entry). */
  function seqAtOrAfterTime(t: string): number {
    const bounds = prep('SELECT min(seq) AS lo, max(seq) AS hi FROM audit_entries').get();
    let lo = typeof bounds?.lo === 'number' ? bounds.lo : 1;
    let hi = typeof bounds?.hi === 'number' ? bounds.hi : 0;
    let answer = hi + 1;
    const at = prep('SELECT seq, time FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT 1');
    while (lo <= hi) {
      const mid = Math.floor((lo + hi) / 2);
      const row = at.get(mid);
      const seq = Number(row?.seq);
      if (!row || seq > hi || String(row.time) >= t) {
        if (row && seq <= hi) answer = Math.min(answer, seq);
        hi = mid - 1;
      } else {
        lo = seq + 1;
      }
    }
    return answer;
  }

  const searchDone = prep('SELECT seq FROM audit_search_state WHERE id = 1');
  const searchFill = prep(`INSERT OR IGNORE INTO audit_search (key, seq) ${SEARCH_KEYS_OF('seq > ?1 AND seq <= ?2')}`);
  const searchMark = prep('INSERT INTO audit_search_state (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq');

  /** Indexes every entry not yet in audit_search. Runs inside a write transaction. */
  function catchUp(upTo: number): void {
    const row = searchDone.get();
    const done = typeof row?.seq === 'number' ? row.seq : 0;
    if (upTo <= done) return;
    searchFill.run(done, upTo);
    searchMark.run(upTo);
  }

  function searchKey(q: BackendQuery): string | undefined {
    if (q.subjectIndex !== undefined) return `s:${q.subjectIndex}`;
    if (q.actorIndex !== undefined) return `a:${q.actorIndex}`;
    if (q.consent !== undefined) return `k:${q.consent}`;
    if (q.client !== undefined) return `c:${q.client}`;
    return undefined;
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

  type Pending = { build: (head: ChainHead) => StoredEntry; resolve: (r: { entry: StoredEntry; attempts: number }) => void; reject: (err: unknown) => void };
  let pending: Pending[] = [];
  function flush(): void {
    const batch = pending;
    pending = [];
    let entries: StoredEntry[];
    try {
      entries = guard(() =>
        transaction(() => {
          let head = readHead();
          const out: StoredEntry[] = [];
          for (const p of batch) {
            const e = p.build(head);
            insert.run(
              e.seq, e.time, e.type, e.outcome, e.actor, e.actorIndex, e.subject, e.subjectIndex,
              e.client, e.consent, e.requestId, canonicalDetails(e.details), e.personal, e.prev, e.hash,
            );
            if (e.seq % SEARCH_BATCH === 0) catchUp(e.seq);
            head = { seq: e.seq, hash: e.hash, time: e.time };
            out.push(e);
          }
          headPut.run(head.seq, head.hash, head.time);
          return out;
        }),
      );
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => p.resolve({ entry: entries[i], attempts: 1 }));
  }

  return {
    kind: 'sqlite',

    async head() {
      return guard(readHead);
    },

    append(build) {
      // Group commit: appends made in the same turn of the event loop share one transaction (one lock,
      // one commit). Each entry still chains on the one before it, and each caller's promise settles
      // only once its own entry is committed.
      return new Promise((resolve, reject) => {
        pending.push({ build, resolve, reject });
        if (pending.length === 1) setImmediate(flush);
      });
    },

    async range(fromSeq, toSeq, limit) {
      return guard(() => rangeStmt.all(fromSeq, Number.isFinite(toSeq) ? toSeq : Number.MAX_SAFE_INTEGER, limit).map(rowToScanned));
    },

    async query(q: BackendQuery) {
      const key = searchKey(q);
      if (key !== undefined) {
        guard(() => {
          const head = readHead().seq;
          const row = searchDone.get();
          if ((typeof row?.seq === 'number' ? row.seq : 0) < head) transaction(() => catchUp(readHead().seq));
        });
      }
      const where: string[] = [];
      const args: SQLInputValue[] = [];
      const add = (clause: string, value: SQLInputValue): void => {
        where.push(clause);
        args.push(value);
      };
      // With a lookup key the walk is driven by audit_search's (key, seq) primary key, so a page of a busy
      // client's entries reads only that page, in seq order, and stops at LIMIT.
      const s = key === undefined ? 'e' : 's';
      if (key !== undefined) add('s.key = ?', key);
      if (q.afterSeq !== undefined) add(`${s}.seq > ?`, q.afterSeq);
      if (q.beforeSeq !== undefined) add(`${s}.seq < ?`, q.beforeSeq);
      // No index on time (one less b-tree per append): the ledger never lets time decrease along the chain,
      // so a time bound is a seq bound, found by binary search on the primary key.
      if (q.fromTime !== undefined) {
        add(`${s}.seq >= ?`, guard(() => seqAtOrAfterTime(q.fromTime ?? '')));
        add('e.time >= ?', q.fromTime);
      }
      if (q.toTime !== undefined) {
        add(`${s}.seq < ?`, guard(() => seqAtOrAfterTime(q.toTime ?? '')));
        add('e.time < ?', q.toTime);
      }
      if (q.subjectIndex !== undefined) add('e.subject_idx = ?', q.subjectIndex);
      if (q.actorIndex !== undefined) add('e.actor_idx = ?', q.actorIndex);
      if (q.client !== undefined) add('e.client = ?', q.client);
      if (q.consent !== undefined) add('e.consent = ?', q.consent);
      if (q.types && q.types.length > 0) {
        where.push(`e.type IN (${q.types.map(() => '?').join(', ')})`);
        args.push(...q.types);
      }
      const from = key === undefined ? 'audit_entries e' : 'audit_search s JOIN audit_entries e ON e.seq = s.seq';
      const sql = `SELECT e.* FROM ${from}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${s}.seq ${q.order === 'desc' ? 'DESC' : 'ASC'} LIMIT ?`;
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
          // Per key, a range delete on the primary key; a row-value IN over the whole table would scan it.
          const dropKey = prep('DELETE FROM audit_search WHERE key = ? AND seq <= ?');
          for (const row of prep(`SELECT DISTINCT key FROM (${SEARCH_KEYS_OF('seq <= ?1')})`).all(anchorSeq)) dropKey.run(String(row.key), anchorSeq);
          const removed = prep('DELETE FROM audit_entries WHERE seq <= ?').run(anchorSeq).changes;
          prep('DELETE FROM audit_checkpoints WHERE seq < ?').run(anchorSeq);
          return Number(removed);
        }),
      );
    },
  };
}
