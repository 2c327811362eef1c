import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rateLimit } from '../../src/web/rate-limit.ts';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import type { RateLimitStore } from '../../src/store/contracts.ts';
import { openRedisStore, type RedisStore } from '../../src/store/redis/index.ts';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';

// Catalogue HA-17: the rate limiter's store down must not make the limiter fail open. A local
// per-process window applies instead; when the store returns, the shared count is used again.

function app(store: RateLimitStore, limit: number): Koa {
  const k = new Koa();
  k.use(rateLimit(store, [{ paths: ['/token'], keys: [(ctx) => `ip:${ctx.ip}`], limit, windowSeconds: 60 }]));
  k.use((ctx) => {
    ctx.body = { ok: true };
  });
  return k;
}

async function listen(k: Koa): Promise<{ server: Server; base: string }> {
  const server = k.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', () => r()));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function statuses(base: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await fetch(`${base}/token`, { method: 'POST' })).status);
  return out;
}

describe('rate limiter with its store down (HA-17)', () => {
  it('a store that always fails: the local window limits (429 + Retry-After), never fails open', async () => {
    const down: RateLimitStore = { hit: () => Promise.reject(new StoreUnavailableError('down')) };
    const { server, base } = await listen(app(down, 3));
    try {
      expect(await statuses(base, 3)).toEqual([200, 200, 200]);
      const res = await fetch(`${base}/token`, { method: 'POST' });
      expect(res.status).toBe(429);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await res.json()).toMatchObject({ error: 'slow_down' });
      // Other paths are not limited by this rule.
      expect((await fetch(`${base}/other`)).status).toBe(200);
    } finally {
      server.close();
    }
  });

  describe.skipIf(!redisAvailable)('with a real Redis stopped mid-way', () => {
    let redis: RedisPeer;
    let store: RedisStore;
    let base: string;
    let server: Server;
    beforeAll(async () => {
      redis = await startRedis();
      store = openRedisStore(redis.url, { prefix: 'rl-fallback:' });
      await store.ping();
      ({ server, base } = await listen(app(store.rateLimits, 5)));
    });
    afterAll(async () => {
      server?.close();
      await store?.close();
      await redis?.stop();
    });

    it('counts in Redis, falls back to the local window while Redis is down, and back to Redis after', async () => {
      expect(await statuses(base, 2)).toEqual([200, 200]);
      await redis.stop();
      // Fresh local window: 5 allowed, the 6th refused, each answered quickly (no hang on the store).
      const t0 = Date.now();
      expect(await statuses(base, 6)).toEqual([200, 200, 200, 200, 200, 429]);
      expect(Date.now() - t0).toBeLessThan(3000);
      await redis.restart();
      // Once Redis answers again, its (empty, since non-persistent) shared window counts.
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        try {
          await store.ping();
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      expect(await statuses(base, 5)).toEqual([200, 200, 200, 200, 200]);
      expect(await statuses(base, 1)).toEqual([429]);
    }, 20_000);
  });
});
