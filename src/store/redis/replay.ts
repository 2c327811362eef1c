import type { ReplayCache } from '../contracts.ts';
import type { RedisClient } from './client.ts';
import type { Guard } from './guard.ts';
import type { Keyspace } from './keyspace.ts';

export function createRedisReplayCache(client: RedisClient, guard: Guard, keys: Keyspace): ReplayCache {
  return {
    rememberOnce(key, ttlSeconds) {
      // SET NX PX is one atomic command: exactly one caller gets OK until the key expires.
      const ttlMs = Math.max(1, Math.ceil(ttlSeconds * 1000));
      return guard(async () => (await client.set(keys.replay(key), '1', 'PX', ttlMs, 'NX')) === 'OK');
    },
    has(key) {
      return guard(async () => (await client.exists(keys.replay(key))) === 1);
    },
  };
}
