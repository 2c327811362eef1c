import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis } from 'ioredis';
import type { RedisTarget } from './url.ts';

export type RedisClient = Redis | Cluster;

export interface RedisClientOptions {
  /** A command without a reply after this long rejects (then StoreUnavailableError). Default 1000 ms. */
  commandTimeoutMs?: number;
  /**
   * A connection on which commands wait and nothing has been received for this long is dropped and
   * rebuilt. Default twice the command timeout; must exceed any command that legitimately blocks (WAIT).
   */
  socketTimeoutMs?: number;
  /** How long one connection attempt may take. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** Extra TLS settings (a private CA, client certificate). `rediss://` turns TLS on with system defaults. */
  tls?: ConnectionOptions;
  /** Password of the Sentinel processes, when they require one (the URL's credentials are the master's). */
  sentinelPassword?: string;
}

// Keep reconnecting for ever, at most a second apart: the broker must heal by itself when Redis returns,
// and the store fails closed in the meantime because nothing is queued (enableOfflineQueue: false).
function reconnectDelay(times: number): number {
  return Math.min(times * 100, 1000);
}

function tlsFor(host: string, enabled: boolean, extra: ConnectionOptions | undefined): ConnectionOptions | undefined {
  if (!enabled && !extra) return undefined;
  // SNI must be a hostname; Node rejects an IP address there.
  return { ...(isIP(host) === 0 ? { servername: host } : {}), ...extra };
}

export function createRedisClient(target: RedisTarget, options: RedisClientOptions = {}): RedisClient {
  const commandTimeout = options.commandTimeoutMs ?? 1000;
  const failFast = {
    commandTimeout,
    // A command timeout leaves the connection open. A primary that is paused or cut off by a partition
    // keeps it open too, silently: after this long without a byte while commands wait, the connection is
    // dropped and rebuilt (with Sentinel: towards whichever node is primary by then).
    socketTimeout: options.socketTimeoutMs ?? 2 * commandTimeout,
    // How long a closing connection may wait for the server's goodbye. Leaving a silent primary (on a
    // failover notice) must not wait for it.
    disconnectTimeout: 200,
    connectTimeout: options.connectTimeoutMs ?? 2000,
    maxRetriesPerRequest: 1,
    // A command cut off by a dropped connection may or may not have run. Replaying it could turn a
    // won `consume` into a reported loss, so it fails (StoreUnavailableError) and the caller decides.
    autoResendUnfulfilledCommands: false,
    // A demoted primary answers writes with READONLY while the connection to it lives (a failover that did
    // not close it, or a managed endpoint that moved): reconnect, which with Sentinel asks for the new
    // primary. The failed command is not resent (same reason as above).
    reconnectOnError: (err: Error) => (err.message.includes('READONLY') ? 1 : false),
    username: target.username,
    password: target.password,
  };

  switch (target.mode) {
    case 'standalone':
      return new Redis({
        ...failFast,
        host: target.host,
        port: target.port,
        db: target.db,
        tls: tlsFor(target.host, target.tls, options.tls),
        enableOfflineQueue: false,
        retryStrategy: reconnectDelay,
      });
    case 'sentinel':
      return new Redis({
        ...failFast,
        sentinels: target.sentinels,
        name: target.name,
        db: target.db,
        sentinelPassword: options.sentinelPassword,
        tls: options.tls,
        enableTLSForSentinelMode: options.tls !== undefined,
        sentinelRetryStrategy: reconnectDelay,
        // Told of a completed failover (+switch-master), reconnect at once instead of waiting for the old
        // primary's connection to fail: a paused or partitioned primary may keep it open for a long time.
        failoverDetector: true,
        enableOfflineQueue: false,
        retryStrategy: reconnectDelay,
      });
    case 'cluster':
      return new Cluster(target.nodes, {
        enableOfflineQueue: false,
        clusterRetryStrategy: reconnectDelay,
        slotsRefreshTimeout: failFast.commandTimeout,
        redisOptions: { ...failFast, tls: options.tls },
      });
  }
}

/** Closes a client: QUIT lets in-flight replies arrive, but if Redis is away it cannot answer, so not waited for long. */
export async function shutdown(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([client.quit().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }
  client.disconnect();
}
