import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import { createRedisClient } from '../../src/store/redis/client.ts';
import { openRedisStore, parseRedisUrl, type RedisStore } from '../../src/store/redis/index.ts';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';

// Catalogue HA-02: Redis unreachable must not hang requests. The client is built with a command timeout,
// no offline queue and a bounded retry count; here Redis goes silent (a network black hole: the TCP
// connection stays open, nothing comes back), the hardest case for a client with default settings.

describe('ioredis options (HA-02)', () => {
  it('standalone and sentinel clients: commandTimeout, no offline queue, bounded retries, no resend', () => {
    for (const url of ['redis://127.0.0.1:1', 'redis+sentinel://127.0.0.1:1/mymaster']) {
      const client = createRedisClient(parseRedisUrl(url)) as Redis;
      client.on('error', () => {});
      const o = client.options;
      expect(o.commandTimeout).toBe(1000);
      expect(o.enableOfflineQueue).toBe(false);
      expect(o.maxRetriesPerRequest).toBe(1);
      expect(o.autoResendUnfulfilledCommands).toBe(false);
      expect(o.connectTimeout).toBe(2000);
      client.disconnect();
    }
  });
});

/** A TCP relay to Redis that can be switched to swallow everything in both directions. */
async function blackholeProxy(target: number): Promise<{ port: number; blackhole(on: boolean): void; close(): Promise<void> }> {
  let holed = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((down) => {
    const up = connect(target, '127.0.0.1');
    sockets.add(down).add(up);
    down.on('data', (d) => void (holed || up.write(d)));
    up.on('data', (d) => void (holed || down.write(d)));
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    blackhole: (on) => void (holed = on),
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe.skipIf(!redisAvailable)('Redis gone silent (HA-02)', () => {
  let redis: RedisPeer;
  let proxy: Awaited<ReturnType<typeof blackholeProxy>>;
  let store: RedisStore;
  beforeAll(async () => {
    redis = await startRedis();
    proxy = await blackholeProxy(redis.port);
    store = openRedisStore(`redis://127.0.0.1:${proxy.port}`, { prefix: `bh-${randomUUID()}:` });
    await store.ping();
  });
  afterAll(async () => {
    await store?.close();
    await proxy?.close();
    await redis?.stop();
  });

  it('every kind of call fails with StoreUnavailableError within about a second, none hangs', async () => {
    expect(await store.replay.rememberOnce(`x-${randomUUID()}`, 60)).toBe(true);
    proxy.blackhole(true);
    const t0 = Date.now();
    const results = await Promise.allSettled([
      store.replay.rememberOnce(`jti-${randomUUID()}`, 60),
      store.oidc.consume('AuthorizationCode', 'code-1'),
      store.rateLimits.hit('ip:1', 60),
      store.consents.get('c-1'),
      store.keys.listKeys(),
      store.ping(),
    ]);
    const elapsed = Date.now() - t0;
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(StoreUnavailableError);
    }
    expect(elapsed).toBeLessThan(2500);
  }, 15_000);
});
