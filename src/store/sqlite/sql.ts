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
   */
  immediate<T>(op: () => T): Promise<T>;
  markClosed(): void;
}


export function createSql(db: DatabaseSync): Sql {
  const cache = new Map<string, StatementSync>();
  let closed = false;

  function ensureOpen(): void {
    if (closed) throw new StoreUnavailableError('sqlite store is closed');
  }

  return {
    db,
    stmt(sql) {
      let s = cache.get(sql);
      if (!s) {
        s = db.prepare(sql);
        cache.set(sql, s);
      }
      return s;
    },
    async run(op) {
      ensureOpen();
      return guard(op);
    },
    async immediate(op) {
      ensureOpen();
      return guard(() => {
        db.exec('BEGIN IMMEDIATE');
        try {
          const result = op();
          db.exec('COMMIT');
          return result;
        } catch (err) {
          if (db.isTransaction) db.exec('ROLLBACK');
          throw err;
        }
      });
    },
    markClosed() {
      closed = true;
      cache.clear();
    },
  };
}
