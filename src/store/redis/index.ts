import type { Store } from '../contracts.ts';
import { createRedisAccountStore } from './accounts.ts';
import { createRedisConsentStore } from './consents.ts';
import { createRedisClient, type RedisClient, type RedisClientOptions } from './client.ts';
import { createGuard, createWhenReady } from './guard.ts';
import { createKeyspace } from './keyspace.ts';
import { createRedisKeyStore } from './keys.ts';
import { createRedisOidcStore } from './oidc.ts';
import { createRedisRateLimitStore } from './rate-limits.ts';
import { createRedisReplayCache } from './replay.ts';
import { parseRedisUrl } from './url.ts';

export { parseRedisUrl, type RedisTarget } from './url.ts';
export type { RedisClient, RedisClientOptions } from './client.ts';

export interface RedisStoreOptions extends RedisClientOptions {
  /** Prepended to every key, so several brokers (or environments) can share one Redis. Default `broker:`. */
  prefix?: string;
  /** Told about connection errors (they also surface as StoreUnavailableError on calls). Default: ignored. */
  onError?: (err: Error) => void;
}

export interface RedisStore extends Store {
  readonly kind: 'redis';
  /** The shared client, for stores that live in the same Redis (the audit ledger). */
  readonly redis: RedisClient;
  readonly prefix: string;
}

async function shutdown(client: RedisClient, timeoutMs: number): Promise<void> {
  // QUIT lets in-flight replies arrive; if Redis is away it cannot answer, so do not wait on it.
  if (client.status === 'ready') {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([client.quit().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }
  client.disconnect();
}

/** Opens the shared store. Connects in the background; calls fail with StoreUnavailableError until it can reach Redis. */
export function openRedisStore(url: string, options: RedisStoreOptions = {}): RedisStore {
  const prefix = options.prefix ?? 'broker:';
  const keys = createKeyspace(prefix);
  const timeoutMs = options.commandTimeoutMs ?? 1000;
  const client = createRedisClient(parseRedisUrl(url), options);
  // Without a listener ioredis prints every reconnect failure; callers learn of outages through errors.
  client.on('error', options.onError ?? (() => {}));
  const whenReady = createWhenReady(client);
  const guard = createGuard(client, whenReady, timeoutMs);

  return {
    kind: 'redis',
    redis: client,
    prefix,
    oidc: createRedisOidcStore(client, guard, keys),
    accounts: createRedisAccountStore(client, guard, keys),
    consents: createRedisConsentStore(client, guard, keys),
    keys: createRedisKeyStore(client, guard, keys),
    replay: createRedisReplayCache(client, guard, keys),
    rateLimits: createRedisRateLimitStore(client, guard, keys),
    async ping() {
      await guard(async () => {
        // A health check during a reconnect should report the outcome of that reconnect, within bounds.
        await whenReady(timeoutMs);
        await client.ping();
      });
    },
    close: () => shutdown(client, timeoutMs),
  };
}
