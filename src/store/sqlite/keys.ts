import type { KeyStore, StoredKey } from '../contracts.ts';
import { text } from './rows.ts';
import type { Sql } from './sql.ts';

export function createSqliteKeyStore(sql: Sql): KeyStore {
  return {
    listKeys() {
      return sql.run(() =>
        sql
          .stmt('SELECT json FROM signing_keys ORDER BY created_at, kid')
          .all()
          .map((row) => JSON.parse(text(row, 'json')) as StoredKey),
      );
    },

    putKey(key) {
      return sql.run(() => {
        sql
          .stmt('INSERT INTO signing_keys (kid, created_at, json) VALUES (?, ?, ?) ON CONFLICT (kid) DO UPDATE SET created_at = excluded.created_at, json = excluded.json')
          .run(key.kid, key.createdAt, JSON.stringify(key));
      });
    },

    deleteKey(kid) {
      return sql.run(() => {
        sql.stmt('DELETE FROM signing_keys WHERE kid = ?').run(kid);
      });
    },
  };
}
