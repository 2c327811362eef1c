import type { ReplayCache } from '../contracts.ts';
import type { Sql } from './sql.ts';

export function createSqliteReplayCache(sql: Sql): ReplayCache {
  return {
    rememberOnce(key, ttlSeconds) {
      return sql.run(() => {
        const now = Date.now();
        // One statement: a fresh key inserts, an expired one (not purged yet) is taken over, a live one is
        // left alone and reports 0 changes. SQLite serialises writers, so this is atomic across processes.
        const result = sql
          .stmt(
            `INSERT INTO replay (key, expires_at) VALUES (?, ?)
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE replay.expires_at <= ?`,
          )
          .run(key, now + Math.ceil(ttlSeconds * 1000), now);
        return Number(result.changes) === 1;
      });
    },

    has(key) {
      return sql.run(() => sql.stmt('SELECT 1 FROM replay WHERE key = ? AND expires_at > ?').get(key, Date.now()) !== undefined);
    },
  };
}
