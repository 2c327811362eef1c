import type { KeyStore, StoredKey } from '../contracts.ts';
import type { RedisClient } from './client.ts';
import type { Guard } from './guard.ts';
import type { Keyspace } from './keyspace.ts';

// One hash kid -> JSON: the key set is small and always read whole.
export function createRedisKeyStore(client: RedisClient, guard: Guard, keys: Keyspace): KeyStore {
  const hash = keys.signingKeys();
  return {
    async listKeys() {
      const values = await guard(() => client.hvals(hash));
      return values.map((v) => JSON.parse(v) as StoredKey).sort((a, b) => a.createdAt - b.createdAt || a.kid.localeCompare(b.kid));
    },
    async putKey(key) {
      await guard(() => client.hset(hash, key.kid, JSON.stringify(key)));
    },
    async deleteKey(kid) {
      await guard(() => client.hdel(hash, kid));
    },
  };
}
