import type { RateLimitStore } from '../contracts.ts';
import { integer } from './rows.ts';
import type { Sql } from './sql.ts';

export function createSqliteRateLimitStore(sql: Sql): RateLimitStore {
  return {
    hit(key, windowSeconds) {
      return sql.run(() => {
        const windowMs = Math.max(1, Math.round(windowSeconds * 1000));
        const windowStart = Math.floor(Date.now() / windowMs) * windowMs;
        const resetAtMs = windowStart + windowMs;
        // SET expressions see the old row, so a hit in a newer window restarts the count at 1. A hit stamped
        // with an older window (another process's clock lagging) counts into the current one instead of
        // rewinding it. The window length is part of the key: one key may be limited per minute and per hour.
        const row = sql
          .stmt(
            `INSERT INTO rate_limits (key, window_ms, window_start, count, expires_at) VALUES (?, ?, ?, 1, ?)
             ON CONFLICT (key, window_ms) DO UPDATE SET
               count = CASE WHEN excluded.window_start > window_start THEN 1 ELSE count + 1 END,
               window_start = max(window_start, excluded.window_start),
               expires_at = max(expires_at, excluded.expires_at)
             RETURNING count`,
          )
          .get(key, windowMs, windowStart, resetAtMs);
        if (!row) throw new Error('rate limit upsert returned no row');
        return { count: integer(row, 'count'), resetAt: Math.ceil(resetAtMs / 1000) };
      });
    },
  };
}
