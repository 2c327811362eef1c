import { DatabaseSync } from 'node:sqlite';
import { guard } from './guard.ts';

export interface SqliteOpenOptions {
  /**
   * How long a statement waits for another connection's write lock before failing with SQLITE_BUSY (then
   * StoreUnavailableError). node:sqlite is synchronous, so this also bounds how long the event loop can block.
   */
  busyTimeoutMs?: number;
}

// Append-only: a released migration is never edited, a change is a new entry.
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE oidc_models (
    model      TEXT NOT NULL,
    id         TEXT NOT NULL,
    payload    TEXT NOT NULL,
    consumed   TEXT,
    grant_id   TEXT,
    uid        TEXT,
    user_code  TEXT,
    expires_at INTEGER,
    PRIMARY KEY (model, id)
  ) WITHOUT ROWID;
  CREATE INDEX oidc_models_grant ON oidc_models (model, grant_id) WHERE grant_id IS NOT NULL;
  CREATE INDEX oidc_models_uid ON oidc_models (model, uid) WHERE uid IS NOT NULL;
  CREATE INDEX oidc_models_user_code ON oidc_models (model, user_code) WHERE user_code IS NOT NULL;
  CREATE INDEX oidc_models_expiry ON oidc_models (expires_at) WHERE expires_at IS NOT NULL;

  CREATE TABLE accounts (
    id             TEXT PRIMARY KEY,
    created_at     INTEGER NOT NULL,
    sealed_profile TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE links (
    provider   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    account_id TEXT NOT NULL,
    evidence   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
  ) WITHOUT ROWID;
  CREATE INDEX links_account ON links (account_id);

  CREATE TABLE identifiers (
    kind         TEXT NOT NULL,
    hashed_value TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    PRIMARY KEY (kind, hashed_value)
  ) WITHOUT ROWID;

  CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    json       TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE replay (
    key        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX replay_expiry ON replay (expires_at);

  CREATE TABLE rate_limits (
    key          TEXT NOT NULL,
    window_ms    INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (key, window_ms)
  ) WITHOUT ROWID;
  CREATE INDEX rate_limits_expiry ON rate_limits (expires_at);
  `,
  // Consents: every version in consent_versions (a rowid table: records are signed JWS, too large for
  // WITHOUT ROWID to pay off), the newest one's index fields in consents. The indexes end in id and seq so
  // lists come out in order straight from the index and reach the record by rowid.
  `
  CREATE TABLE consent_versions (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    grantor    TEXT NOT NULL,
    grantee    TEXT,
    status     TEXT NOT NULL,
    record     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    ends_at    INTEGER,
    UNIQUE (id, version)
  );

  CREATE TABLE consents (
    id         TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    grantor    TEXT NOT NULL,
    grantee    TEXT,
    status     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    ends_at    INTEGER
  ) WITHOUT ROWID;
  CREATE INDEX consents_grantor ON consents (grantor, updated_at, id, seq);
  CREATE INDEX consents_grantee ON consents (grantee, updated_at, id, seq) WHERE grantee IS NOT NULL;
  CREATE INDEX consents_ending ON consents (status, ends_at, id, seq) WHERE ends_at IS NOT NULL;
  `,
];

/**
 * Brings one component's tables up to date. Versions are kept per component in schema_versions (not in
 * PRAGMA user_version, which is one number per file) so other stores sharing the file, such as the audit
 * ledger, can migrate their own tables with this same function.
 */
export function applyMigrations(db: DatabaseSync, component: string, migrations: readonly string[]): void {
  // IMMEDIATE takes the write lock before reading the version, so two processes starting together
  // cannot both run the same migration.
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec('CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID');
    const row = db.prepare('SELECT version FROM schema_versions WHERE component = ?').get(component);
    const current = row ? Number(row.version) : 0;
    if (current > migrations.length) {
      // An older broker must not write to tables whose meaning it does not know.
      throw new Error(`sqlite schema of ${component} is at version ${current}, newer than this broker knows (${migrations.length})`);
    }
    for (let v = current; v < migrations.length; v++) db.exec(migrations[v]);
    db.prepare('INSERT INTO schema_versions (component, version) VALUES (?, ?) ON CONFLICT (component) DO UPDATE SET version = excluded.version').run(
      component,
      migrations.length,
    );
    db.exec('COMMIT');
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

/** Opens (creating if needed) the broker's SQLite file, sets the pragmas and brings the schema up to date. */
export function openSqliteDatabase(path: string, options: SqliteOpenOptions = {}): DatabaseSync {
  const busyTimeoutMs = options.busyTimeoutMs ?? 2000;
  return guard(() => {
    const db = new DatabaseSync(path, { timeout: busyTimeoutMs });
    try {
      // WAL lets readers in other processes proceed while one writes; NORMAL is durable across
      // application crashes in WAL mode and only risks the last commits on power loss.
      db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
      applyMigrations(db, 'store', MIGRATIONS);
      return db;
    } catch (err) {
      db.close();
      throw err;
    }
  });
}
