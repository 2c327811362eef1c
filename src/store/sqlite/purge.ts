import type { Sql } from './sql.ts';

// Reads already ignore expired rows; purging only keeps the file from growing. Each DELETE is its own
// short statement so a purge never holds the write lock for long.
const PURGES = [
  'DELETE FROM oidc_models WHERE expires_at IS NOT NULL AND expires_at <= ?',
  'DELETE FROM replay WHERE expires_at <= ?',
  'DELETE FROM rate_limits WHERE expires_at <= ?',
];

export async function purgeExpired(sql: Sql, now = Date.now()): Promise<void> {
  for (const statement of PURGES) await sql.run(() => sql.stmt(statement).run(now));
}

/** Purges every `intervalMs` until the returned stop function is called. Never keeps the process alive. */
export function schedulePurge(sql: Sql, intervalMs: number, onError: (err: unknown) => void): () => void {
  const timer = setInterval(() => {
    purgeExpired(sql).catch(onError);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
