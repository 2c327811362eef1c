import type { Store } from '../contracts.ts';
import { createRedisAccountStore } from './accounts.ts';
import { createRedisConsentStore } from './consents.ts';
import { acknowledgedWrites, unacknowledged, type AcknowledgedWrites } from './acknowledged.ts';
import { createRedisClient, shutdown, type RedisClient, type RedisClientOptions } from './client.ts';
import { createGuard, createWhenReady } from './guard.ts';
import { createKeyspace } from './keyspace.ts';
import { createRedisKeyStore } from './keys.ts';
import { createRedisOidcStore } from './oidc.ts';
import { createRedisRateLimitStore } from './rate-limits.ts';
import { createRedisReplayCache } from './replay.ts';
import { parseRedisUrl } from './url.ts';
import { checkEvictionPolicy } from './eviction.ts';

export { parseRedisUrl, type RedisTarget } from './url.ts';
export { checkEvictionPolicy, readEvictionPolicy } from './eviction.ts';
export type { RedisClient, RedisClientOptions } from './client.ts';

export interface RedisStoreOptions extends RedisClientOptions {
  /** Prepended to every key, so several brokers (or environments) can share one Redis. Default `broker:`. */
  prefix?: string;
  /** Told about connection errors (they also surface as StoreUnavailableError on calls). Default: ignored. */
  onError?: (err: Error) => void;
  /**
   * After each write whose loss on a failover would let something be accepted twice or come back
   * (consumed codes and refresh tokens, replay markers, revocations, account links, signing keys, consent
   * changes), `WAIT waitReplicas waitTimeoutMs`: fewer acknowledgements and the write fails with
   * StoreUnavailableError (so 503). 0 (the default) skips WAIT. Standalone and Sentinel only.
   */
  waitReplicas?: number;
  /** How long WAIT may block. Default 1000 ms. */
  waitTimeoutMs?: number;
  /**
   * Told about unsafe Redis settings found at connect time (an evicting `maxmemory-policy`). Default:
   * reported through onError.
   */
  onWarning?: (message: string) => void;
}

export interface RedisStore extends Store {
  readonly kind: 'redis';
  /** The shared client, for stores that live in the same Redis (the audit ledger). */
  readonly redis: RedisClient;
  readonly prefix: string;
}

/** Opens the shared store. Connects in the background; calls fail with StoreUnavailableError until it can reach Redis. */
export function openRedisStore(url: string, options: RedisStoreOptions = {}): RedisStore {
  const prefix = options.prefix ?? 'broker:';
  const keys = createKeyspace(prefix);
  const timeoutMs = options.commandTimeoutMs ?? 1000;
  const target = parseRedisUrl(url);
  const client = createRedisClient(target, options);
  // Without a listener ioredis prints every reconnect failure; callers learn of outages through errors.
  client.on('error', options.onError ?? (() => {}));
  const whenReady = createWhenReady(client);
  const guard = createGuard(client, whenReady, timeoutMs);
  const warn = options.onWarning ?? ((message: string) => options.onError?.(new Error(message)));
  // Security state (replay markers, consumed codes) must never be evicted: check on every (re)connect,
  // as a failover may land on a differently configured node.
  client.on('ready', () => {
    void checkEvictionPolicy(client).then((message) => message && warn(message), () => undefined);
  });

  const waitReplicas = options.waitReplicas ?? 0;
  const waitTimeoutMs = options.waitTimeoutMs ?? 1000;
  let acked: AcknowledgedWrites = unacknowledged(client, guard);
  if (waitReplicas > 0) {
    if (client.isCluster) throw new Error('storeOptions.waitReplicas is not supported with redis+cluster (WAIT must reach the node that took the write)');
    if (!Number.isSafeInteger(waitReplicas) || !Number.isSafeInteger(waitTimeoutMs) || waitTimeoutMs < 1) throw new RangeError('waitReplicas and waitTimeoutMs must be positive integers');
    acked = acknowledgedWrites(client, { waitReplicas, waitTimeoutMs, commandTimeoutMs: timeoutMs, onError: options.onError });
  } else if (target.mode === 'sentinel') {
    warn('redis+sentinel without storeOptions.waitReplicas: a failover can lose the last consumed codes and replay markers (asynchronous replication), letting them be used again; set waitReplicas (see deploy/redis/README.md)');
  }

  return {
    kind: 'redis',
    redis: client,
    prefix,
    oidc: createRedisOidcStore(client, guard, keys, acked),
    accounts: createRedisAccountStore(client, guard, keys, acked),
    consents: createRedisConsentStore(client, guard, keys, acked),
    keys: createRedisKeyStore(client, guard, keys, acked),
    replay: createRedisReplayCache(client, guard, keys, acked),
    rateLimits: createRedisRateLimitStore(client, guard, keys),
    async ping() {
      await guard(async () => {
        // A health check during a reconnect should report the outcome of that reconnect, within bounds.
        await whenReady(timeoutMs);
        await client.ping();
      });
    },
    close: async () => {
      await Promise.all([shutdown(client, timeoutMs), acked.close(timeoutMs)]);
    },
  };
}
