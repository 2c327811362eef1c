import type { Store } from '../contracts.ts';
import { createRedisAccountStore } from './accounts.ts';
import { createRedisConsentStore, type ConsentWriteAck } from './consents.ts';
import { StoreUnavailableError } from '../errors.ts';
import type { Redis } from 'ioredis';
import { createRedisClient, type RedisClient, type RedisClientOptions } from './client.ts';
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
   * After each consent create/update, `WAIT waitReplicas waitTimeoutMs`: fewer acknowledgements and the
   * write fails with StoreUnavailableError. 0 (the default) skips WAIT. Standalone and Sentinel only.
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
  const warn = options.onWarning ?? ((message: string) => options.onError?.(new Error(message)));
  // Security state (replay markers, consumed codes) must never be evicted: check on every (re)connect,
  // as a failover may land on a differently configured node.
  client.on('ready', () => {
    void checkEvictionPolicy(client).then((message) => message && warn(message), () => undefined);
  });

  const waitReplicas = options.waitReplicas ?? 0;
  const waitTimeoutMs = options.waitTimeoutMs ?? 1000;
  let consentClient = client;
  let consentGuard = guard;
  let ack: ConsentWriteAck | undefined;
  if (waitReplicas > 0) {
    if (client.isCluster) throw new Error('storeOptions.waitReplicas is not supported with redis+cluster (WAIT must reach the node that took the write)');
    if (!Number.isSafeInteger(waitReplicas) || !Number.isSafeInteger(waitTimeoutMs) || waitTimeoutMs < 1) throw new RangeError('waitReplicas and waitTimeoutMs must be positive integers');
    // WAIT blocks its connection, so consent writes get their own: other traffic is not held up behind a
    // slow replica. WAIT counts the writes of its connection, which are exactly the consent writes. The
    // command timeout leaves room for the WAIT itself (a timed-out WAIT would also fail, but would leave
    // the connection blocked behind it).
    const writer = (client as Redis).duplicate({ commandTimeout: timeoutMs + waitTimeoutMs });
    writer.on('error', options.onError ?? (() => {}));
    consentClient = writer;
    const writerReady = createWhenReady(writer);
    const writerGuard = createGuard(writer, writerReady, timeoutMs);
    // Wait (bounded) for the writer's own connection too: it may lag the shared one after a reconnect.
    consentGuard = (op) => writerGuard(async () => {
      await writerReady(timeoutMs);
      return op();
    });
    ack = async () => {
      const acked = await writer.wait(waitReplicas, waitTimeoutMs);
      if (acked < waitReplicas) {
        // The write is on the primary and may still reach replicas, or be lost on failover: it is
        // reported as failed, and the caller must treat its outcome as unknown (a retry re-reads it).
        throw new StoreUnavailableError(`consent write acknowledged by ${acked} of ${waitReplicas} replica(s) within ${waitTimeoutMs} ms; it may still be present on the primary`);
      }
    };
  }

  return {
    kind: 'redis',
    redis: client,
    prefix,
    oidc: createRedisOidcStore(client, guard, keys),
    accounts: createRedisAccountStore(client, guard, keys),
    consents: createRedisConsentStore(consentClient, consentGuard, keys, ack),
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
    close: async () => {
      await Promise.all([shutdown(client, timeoutMs), consentClient !== client ? shutdown(consentClient, timeoutMs) : undefined]);
    },
  };
}
