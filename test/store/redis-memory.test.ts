import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import { openRedisStore, type RedisStore } from '../../src/store/redis/index.ts';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';

// Catalogue HA-05: Redis full. With an evicting policy the replay and consumed markers are what goes
// (they all carry a TTL), and a replay is then accepted: shown first, as the failure to avoid. With
// `noeviction` (deploy/redis/redis.conf) a full Redis refuses writes: the store fails closed
// (StoreUnavailableError, so 503), reads go on, no marker disappears, and it works again once memory is
// freed.

const VALUE = 'x'.repeat(64 * 1024);
const FILLERS = 40;

/** Writes unrelated data, then sets maxmemory below what is in use: Redis is full from here on. */
async function fillUp(admin: Redis, policy: string): Promise<void> {
  for (let i = 0; i < FILLERS; i++) await admin.set(`filler:${i}`, VALUE);
  const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1]);
  await admin.config('SET', 'maxmemory-policy', policy);
  await admin.config('SET', 'maxmemory', String(used - 1024 * 1024));
}

describe.skipIf(!redisAvailable)('Redis out of memory (HA-05)', () => {
  let redis: RedisPeer | undefined;
  let store: RedisStore | undefined;
  let admin: Redis | undefined;

  afterEach(async () => {
    admin?.disconnect();
    await store?.close();
    await redis?.stop();
    admin = undefined;
    store = undefined;
    redis = undefined;
  });

  async function setUp(): Promise<{ store: RedisStore; admin: Redis }> {
    redis = await startRedis();
    admin = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    store = openRedisStore(redis.url, { prefix: `mem-${randomUUID()}:`, onWarning: () => {} });
    await store.ping();
    return { store, admin };
  }

  it('HA-05 with allkeys-lru (the failure to avoid): under memory pressure replay markers are evicted and the replay is accepted', async () => {
    const { store: s, admin: a } = await setUp();
    const jtis = Array.from({ length: 50 }, (_, i) => `jti-${i}`);
    for (const jti of jtis) expect(await s.replay.rememberOnce(jti, 600)).toBe(true);
    await fillUp(a, 'allkeys-lru');
    const replayed = await Promise.all(jtis.map((jti) => s.replay.rememberOnce(jti, 600)));
    expect(replayed.filter(Boolean).length).toBeGreaterThan(0);
  });

  it('HA-05 with noeviction: a full Redis refuses security writes (fail closed), keeps every marker, and recovers once memory is freed', async () => {
    const { store: s, admin: a } = await setUp();
    const jtis = Array.from({ length: 50 }, (_, i) => `jti-${i}`);
    for (const jti of jtis) expect(await s.replay.rememberOnce(jti, 600)).toBe(true);
    await s.oidc.upsert('AuthorizationCode', 'code-1', { grantId: 'g1' }, 600);
    await fillUp(a, 'noeviction');

    // Security writes fail closed: no new marker, no consume, no consent. (Redis lets a script whose first
    // write frees memory carry on, so an upsert, which begins by deleting, may still pass: harmless.)
    const writes = await Promise.allSettled([
      s.replay.rememberOnce('jti-new', 600),
      s.oidc.consume('AuthorizationCode', 'code-1'),
      s.consents.create({ id: randomUUID(), version: 1, grantor: 'a', status: 'proposed', record: 'r', updatedAt: 1 }),
    ]);
    for (const [i, w] of writes.entries()) {
      expect(w.status, `write ${i}: ${JSON.stringify(w)}`).toBe('rejected');
      if (w.status === 'rejected') expect(w.reason).toBeInstanceOf(StoreUnavailableError);
    }
    // Every marker is still there, and a replay is refused (or fails closed), never accepted.
    for (const jti of jtis) expect(await s.replay.has(jti)).toBe(true);
    for (const jti of jtis) expect(await s.replay.rememberOnce(jti, 600).catch((e: unknown) => e)).not.toBe(true);
    expect((await s.oidc.find('AuthorizationCode', 'code-1'))?.consumed).toBeUndefined();

    await a.del(...Array.from({ length: FILLERS }, (_, i) => `filler:${i}`));
    expect(await s.replay.rememberOnce('jti-after', 600)).toBe(true);
    expect(await s.replay.rememberOnce('jti-0', 600)).toBe(false);
    expect(await s.oidc.consume('AuthorizationCode', 'code-1')).toBe(true);
  });
});
