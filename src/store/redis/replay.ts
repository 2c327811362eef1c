import type { ReplayCache } from '../contracts.ts';
import type { AcknowledgedWrites } from './acknowledged.ts';
import type { RedisClient } from './client.ts';
import type { Guard } from './guard.ts';
import type { Keyspace } from './keyspace.ts';

/** Markers are set through `acked` (acknowledged.ts): a marker lost on failover would let its replay through. */
export function createRedisReplayCache(client: RedisClient, guard: Guard, keys: Keyspace, acked: AcknowledgedWrites): ReplayCache {
  return {
    rememberOnce(key, ttlSeconds) {
      // SET NX PX is one atomic command: exactly one caller gets OK until the key expires.
      const ttlMs = Math.max(1, Math.ceil(ttlSeconds * 1000));
      return acked.guard(async () => {
        const since = acked.mark();
        const first = (await acked.client.set(keys.replay(key), '1', 'PX', ttlMs, 'NX')) === 'OK';
        if (first) await acked.ack(since);
        return first;
      });
    },
    has(key) {
      return guard(async () => (await client.exists(keys.replay(key))) === 1);
    },
  };
}
