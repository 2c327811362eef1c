import type { DatabaseSync } from 'node:sqlite';
import type { Store } from '../contracts.ts';
import { createSqliteAccountStore } from './accounts.ts';
import { createSqliteConsentStore } from './consents.ts';
import { openSqliteDatabase, type SqliteOpenOptions } from './db.ts';
import { createSqliteKeyStore } from './keys.ts';
import { createSqliteOidcStore } from './oidc.ts';
import { purgeExpired, schedulePurge } from './purge.ts';
import { createSqliteRateLimitStore } from './rate-limits.ts';
import { createSqliteReplayCache } from './replay.ts';
import { createSql } from './sql.ts';

export { applyMigrations, openSqliteDatabase, type SqliteOpenOptions } from './db.ts';

export interface SqliteStoreOptions extends SqliteOpenOptions {
  /** How often expired rows are deleted; 0 disables the timer. Default one minute. */
  purgeIntervalMs?: number;
  /** Told about a failed background purge (the next one retries). Default: ignored. */
  onPurgeError?: (err: unknown) => void;
}

export interface SqliteStore extends Store {
  readonly kind: 'sqlite';
  /** The shared connection, for stores that live in the same file (the audit ledger). */
  readonly db: DatabaseSync;
  /** Deletes expired rows now (the timer does this periodically). */
  purgeExpired(): Promise<void>;
}

/** Opens the embedded store on a file (or `:memory:`). Several processes may open the same file. */
export function openSqliteStore(path: string, options: SqliteStoreOptions = {}): SqliteStore {
  const db = openSqliteDatabase(path, options);
  const sql = createSql(db);
  const intervalMs = options.purgeIntervalMs ?? 60_000;
  const stopPurge = intervalMs > 0 ? schedulePurge(sql, intervalMs, options.onPurgeError ?? (() => {})) : () => {};
  let closed = false;

  return {
    kind: 'sqlite',
    db,
    oidc: createSqliteOidcStore(sql),
    accounts: createSqliteAccountStore(sql),
    consents: createSqliteConsentStore(sql),
    keys: createSqliteKeyStore(sql),
    replay: createSqliteReplayCache(sql),
    rateLimits: createSqliteRateLimitStore(sql),
    async ping() {
      await sql.run(() => sql.stmt('SELECT 1').get());
    },
    purgeExpired: () => purgeExpired(sql),
    async close() {
      if (closed) return;
      closed = true;
      stopPurge();
      sql.markClosed();
      db.close();
    },
  };
}
