import type { Cluster, Redis } from 'ioredis';
import type { RedisClient } from './client.ts';

/**
 * The node's `maxmemory-policy`, or undefined when it cannot be read (CONFIG denied by ACL, renamed or
 * disabled on a managed Redis): the check is advisory and must never stop the broker from working.
 */
export async function readEvictionPolicy(client: RedisClient): Promise<string | undefined> {
  const nodes: (Redis | Cluster)[] = client.isCluster ? (client as Cluster).nodes('master') : [client];
  const policies = new Set<string>();
  for (const node of nodes) {
    try {
      const reply = (await (node as Redis).config('GET', 'maxmemory-policy')) as unknown;
      if (Array.isArray(reply) && typeof reply[1] === 'string') policies.add(reply[1]);
    } catch {
      // NOPERM, unknown command: tolerated.
    }
  }
  if (policies.size === 0) return undefined;
  // Any evicting node is what matters; report it rather than a safe one.
  return [...policies].find((p) => p !== 'noeviction') ?? 'noeviction';
}

/**
 * Returns a warning when Redis may evict keys under memory pressure (anything but `noeviction`: the
 * `volatile-*` policies evict exactly the keys with a TTL, which is every replay and consumed marker).
 * An evicted marker would let a code, `jti` or assertion ID be replayed (catalogue HA-05). With
 * `noeviction` a full Redis refuses writes instead, and the broker fails closed (503).
 */
export async function checkEvictionPolicy(client: RedisClient): Promise<string | undefined> {
  const policy = await readEvictionPolicy(client);
  if (policy === undefined || policy === 'noeviction') return undefined;
  return `redis maxmemory-policy is "${policy}": replay markers and consumed codes may be evicted under memory pressure; set maxmemory-policy noeviction (or use a dedicated instance for broker state)`;
}
