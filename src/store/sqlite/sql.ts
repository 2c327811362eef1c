import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { StoreUnavailableError } from '../errors.ts';
import { guard } from './guard.ts';

/**
 * The database handle the sqlite stores share: a statement cache, the closed flag, and the two ways
 * to touch the database (a guarded call, or a guarded IMMEDIATE transaction).
 */
export interface Sql {
  readonly db: DatabaseSync;
  /** A prepared statement, cached per SQL text (preparing is most of the cost of a small query). */
  stmt(sql: string): StatementSync;
  /** Runs `op` against the database; every failure to reach it becomes StoreUnavailableError. */
  run<T>(op: () => T): Promise<T>;
  /**
   * Runs `op` inside BEGIN IMMEDIATE ... COMMIT. IMMEDIATE takes the write lock up front, so a
   * read-then-write in `op` is atomic against other connections and other processes on the same file.
   * `op` must be synchronous: nothing else may run on this connection while the transaction is open.
   *
   * `durable`: commit with synchronous=FULL, so the WAL is fsynced before the commit returns and an
   * acknowledged write survives power loss too (the connection default, NORMAL, only survives process
   * crashes). For rare writes whose loss would matter, such as a consent being withdrawn.
   */
  immediate<T>(op: () => T, options?: { durable?: boolean }): Promise<T>;
  markClosed(): void;
}


export function createSql(db: DatabaseSync): Sql {
  const cache = new Map<string, StatementSync>();
  let closed = false;

  function ensureOpen(): void {
    if (closed) throw new StoreUnavailableError('sqlite store is closed');
  }

  function stmt(sql: string): StatementSync {
    let s = cache.get(sql);
    if (!s) {
      s = db.prepare(sql);
      cache.set(sql, s);
    }
    return s;
  }

  return {
    db,
    stmt,
    async run(op) {
      ensureOpen();
      return guard(op);
    },
    async immediate(op, options = {}) {
      ensureOpen();
      return guard(() => {
        // Set around this one transaction and put back, so the connection's other writes keep their
        // setting. op is synchronous, so nothing else runs on the connection in between.
        const restore = options.durable ? stmt('PRAGMA synchronous').get()?.synchronous : undefined;
        if (restore !== undefined) db.exec('PRAGMA synchronous = FULL');
        try {
          db.exec('BEGIN IMMEDIATE');
          try {
            const result = op();
            db.exec('COMMIT');
            return result;
          } catch (err) {
            if (db.isTransaction) db.exec('ROLLBACK');
            throw err;
          }
        } finally {
          if (restore !== undefined) db.exec(`PRAGMA synchronous = ${Number(restore)}`);
        }
      });
    },
    markClosed() {
      closed = true;
      cache.clear();
    },
  };
}
