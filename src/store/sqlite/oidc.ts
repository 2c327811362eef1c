import type { OidcModelStore, OidcPayload } from '../contracts.ts';
import { optionalText, text, type Row } from './rows.ts';
import type { Sql } from './sql.ts';

// `consumed` lives in its own column rather than inside the JSON so that consume is one conditional
// UPDATE (atomic across connections and processes) and the payload text is stored exactly as given.

const LIVE = '(expires_at IS NULL OR expires_at > ?)';

function indexField(payload: OidcPayload, field: 'grantId' | 'uid' | 'userCode'): string | null {
  const v = payload[field];
  return typeof v === 'string' ? v : null;
}

function toPayload(row: Row): OidcPayload {
  const payload = JSON.parse(text(row, 'payload')) as OidcPayload;
  const consumed = optionalText(row, 'consumed');
  if (consumed !== undefined) payload.consumed = JSON.parse(consumed);
  return payload;
}

export function createSqliteOidcStore(sql: Sql): OidcModelStore {
  function findWhere(column: 'id' | 'uid' | 'user_code', model: string, value: string): Promise<OidcPayload | undefined> {
    return sql.run(() => {
      const row = sql
        .stmt(`SELECT payload, consumed FROM oidc_models WHERE model = ? AND ${column} = ? AND ${LIVE} LIMIT 1`)
        .get(model, value, Date.now());
      return row ? toPayload(row) : undefined;
    });
  }

  return {
    upsert(model, id, payload, expiresIn) {
      return sql.run(() => {
        const { consumed, ...rest } = payload;
        const expiresAt = expiresIn === undefined ? null : Date.now() + Math.ceil(expiresIn * 1000);
        sql
          .stmt(
            `INSERT INTO oidc_models (model, id, payload, consumed, grant_id, uid, user_code, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (model, id) DO UPDATE SET
               payload = excluded.payload, consumed = excluded.consumed, grant_id = excluded.grant_id,
               uid = excluded.uid, user_code = excluded.user_code, expires_at = excluded.expires_at`,
          )
          .run(
            model,
            id,
            JSON.stringify(rest),
            consumed === undefined || consumed === null ? null : JSON.stringify(consumed),
            indexField(payload, 'grantId'),
            indexField(payload, 'uid'),
            indexField(payload, 'userCode'),
            expiresAt,
          );
      });
    },

    find: (model, id) => findWhere('id', model, id),
    findByUid: (model, uid) => findWhere('uid', model, uid),
    findByUserCode: (model, userCode) => findWhere('user_code', model, userCode),

    consume(model, id) {
      return sql.run(() => {
        const now = Date.now();
        const result = sql
          .stmt(`UPDATE oidc_models SET consumed = ? WHERE model = ? AND id = ? AND consumed IS NULL AND ${LIVE}`)
          .run(String(Math.floor(now / 1000)), model, id, now);
        return Number(result.changes) === 1;
      });
    },

    destroy(model, id) {
      return sql.run(() => {
        sql.stmt('DELETE FROM oidc_models WHERE model = ? AND id = ?').run(model, id);
      });
    },

    revokeByGrantId(model, grantId) {
      return sql.run(() => {
        sql.stmt('DELETE FROM oidc_models WHERE model = ? AND grant_id = ?').run(model, grantId);
      });
    },
  };
}
