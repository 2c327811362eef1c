import type { RateLimitStore } from '../contracts.ts';
import type { RedisClient } from './client.ts';
import type { Guard } from './guard.ts';
import type { Keyspace } from './keyspace.ts';
import { lua, runScript } from './scripts.ts';

// One key per fixed window, so a new window starts at zero without any reset logic; the key expires when
// its window ends. INCR and the expiry are one script so a crash between them cannot leave a counter
// without a TTL.
const HIT = lua(`
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
return count
`);

export function createRedisRateLimitStore(client: RedisClient, guard: Guard, keys: Keyspace): RateLimitStore {
  return {
    hit(key, windowSeconds) {
      const windowMs = Math.max(1, Math.round(windowSeconds * 1000));
      const windowStart = Math.floor(Date.now() / windowMs) * windowMs;
      const resetAtMs = windowStart + windowMs;
      return guard(async () => {
        const count = await runScript(client, HIT, [keys.rateLimit(key, windowMs, windowStart)], [resetAtMs]);
        if (typeof count !== 'number') throw new Error('unexpected reply from rate-limit script');
        return { count, resetAt: Math.ceil(resetAtMs / 1000) };
      });
    },
  };
}
