import type { KeyStore, StoredKey } from '../contracts.ts';
import type { RedisClient } from './client.ts';
import type { AcknowledgedWrites } from './acknowledged.ts';
import type { Guard } from './guard.ts';
import type { Keyspace } from './keyspace.ts';

// One hash kid -> JSON: the key set is small and always read whole.
// Key changes wait for the replicas (acknowledged.ts): a deleted key that a failover brings back would be
// published again, and an added one that vanishes would leave its tokens unverifiable.
export function createRedisKeyStore(client: RedisClient, guard: Guard, keys: Keyspace, acked: AcknowledgedWrites): KeyStore {
  const hash = keys.signingKeys();
  return {
    async listKeys() {
      const values = await guard(() => client.hvals(hash));
      return values.map((v) => JSON.parse(v) as StoredKey).sort((a, b) => a.createdAt - b.createdAt || a.kid.localeCompare(b.kid));
    },
    async putKey(key) {
      await acked.guard(async () => {
        const since = acked.mark();
        await acked.client.hset(hash, key.kid, JSON.stringify(key));
        await acked.ack(since);
      });
    },
    async deleteKey(kid) {
      await acked.guard(async () => {
        const since = acked.mark();
        await acked.client.hdel(hash, kid);
        await acked.ack(since);
      });
    },
  };
}
