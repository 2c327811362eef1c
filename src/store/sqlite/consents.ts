import type { ConsentStore, StoredConsent } from '../contracts.ts';
import { integer, optionalInteger, optionalText, text, type Row } from './rows.ts';
import type { Sql } from './sql.ts';
import { checkCreate, checkUpdate } from '../consent-checks.ts';

// Every version is a row of consent_versions; `consents` holds, per id, the newest version's number, its
// rowid (seq) and the fields the lists filter and sort on, with one index per list (schema in db.ts). So
// every lookup is an index seek plus a rowid fetch per row returned, whatever the number of consents.
//
// Writes are IMMEDIATE transactions (atomic against other connections and processes) committed with
// synchronous=FULL: a consent change that was acknowledged survives power loss, not only a crash.

const COLUMNS = 'v.id, v.version, v.grantor, v.grantee, v.status, v.record, v.updated_at, v.ends_at';
const NEWEST = `SELECT ${COLUMNS} FROM consents c JOIN consent_versions v ON v.seq = c.seq`;

const INSERT_VERSION = `INSERT INTO consent_versions (id, version, grantor, grantee, status, record, updated_at, ends_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?)`;

function toConsent(row: Row): StoredConsent {
  const consent: StoredConsent = {
    id: text(row, 'id'),
    version: integer(row, 'version'),
    grantor: text(row, 'grantor'),
    status: text(row, 'status'),
    record: text(row, 'record'),
    updatedAt: integer(row, 'updated_at'),
  };
  const grantee = optionalText(row, 'grantee');
  if (grantee !== undefined) consent.grantee = grantee;
  const endsAt = optionalInteger(row, 'ends_at');
  if (endsAt !== undefined) consent.endsAt = endsAt;
  return consent;
}

/** SQLite's own order for TEXT (BINARY collation: UTF-8 bytes), so merged lists sort as the indexes do. */
function compareText(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a), Buffer.from(b));
}


export function createSqliteConsentStore(sql: Sql): ConsentStore {
  function insertVersion(c: StoredConsent): number {
    const result = sql.stmt(INSERT_VERSION).run(c.id, c.version, c.grantor, c.grantee ?? null, c.status, c.record, c.updatedAt, c.endsAt ?? null);
    return Number(result.lastInsertRowid);
  }

  function currentVersion(id: string): number | undefined {
    const row = sql.stmt('SELECT version FROM consents WHERE id = ?').get(id);
    return row ? integer(row, 'version') : undefined;
  }

  function list(column: 'grantor' | 'grantee', accountId: string): Promise<StoredConsent[]> {
    return sql.run(() => sql.stmt(`${NEWEST} WHERE c.${column} = ? ORDER BY c.updated_at, c.id`).all(accountId).map(toConsent));
  }

  return {
    async create(consent) {
      checkCreate(consent);
      return sql.immediate(
        () => {
          if (currentVersion(consent.id) !== undefined) return false;
          const seq = insertVersion(consent);
          sql
            .stmt('INSERT INTO consents (id, version, seq, grantor, grantee, status, updated_at, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
            .run(consent.id, consent.version, seq, consent.grantor, consent.grantee ?? null, consent.status, consent.updatedAt, consent.endsAt ?? null);
          return true;
        },
        { durable: true },
      );
    },

    async update(consent, expectedVersion) {
      checkUpdate(consent, expectedVersion);
      // A stale caller learns so without queueing for the write lock; the check that counts is inside.
      if ((await sql.run(() => currentVersion(consent.id))) !== expectedVersion) return false;
      return sql.immediate(
        () => {
          if (currentVersion(consent.id) !== expectedVersion) return false;
          const seq = insertVersion(consent);
          sql
            .stmt('UPDATE consents SET version = ?, seq = ?, grantor = ?, grantee = ?, status = ?, updated_at = ?, ends_at = ? WHERE id = ?')
            .run(consent.version, seq, consent.grantor, consent.grantee ?? null, consent.status, consent.updatedAt, consent.endsAt ?? null, consent.id);
          return true;
        },
        { durable: true },
      );
    },

    get(id) {
      return sql.run(() => {
        const row = sql.stmt(`${NEWEST} WHERE c.id = ?`).get(id);
        return row ? toConsent(row) : undefined;
      });
    },

    history(id) {
      return sql.run(() => sql.stmt(`SELECT ${COLUMNS} FROM consent_versions v WHERE v.id = ? ORDER BY v.version`).all(id).map(toConsent));
    },

    listByGrantor: (accountId) => list('grantor', accountId),
    listByGrantee: (accountId) => list('grantee', accountId),

    async listEnding(at, statuses, limit) {
      const n = Math.floor(limit);
      if (Number.isNaN(at)) throw new TypeError('listEnding needs a time, not NaN');
      if (!(n > 0) || statuses.length === 0) return [];
      // One index range per status, each already in (ends_at, id) order and cut at `limit`, then merged:
      // an IN list would make SQLite sort every ended consent of those statuses before applying the limit.
      return sql.run(() => {
        const found = [...new Set(statuses)].flatMap((status) =>
          sql
            .stmt(`${NEWEST} WHERE c.status = ? AND c.ends_at <= ? ORDER BY c.ends_at, c.id LIMIT ?`)
            .all(status, at, n)
            .map(toConsent),
        );
        return found.sort((a, b) => (a.endsAt ?? 0) - (b.endsAt ?? 0) || compareText(a.id, b.id)).slice(0, n);
      });
    },
  };
}
