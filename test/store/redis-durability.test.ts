import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import type { StoredConsent } from '../../src/store/contracts.ts';
import { checkEvictionPolicy, openRedisStore, readEvictionPolicy, type RedisStore } from '../../src/store/redis/index.ts';
import { configSchema } from '../../src/config/schema.ts';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';

// Durability settings the broker supports by config (deploy/redis/README.md): optional WAIT for consent
// writes (storeOptions.waitReplicas) and the maxmemory-policy check at connect (catalogue HA-05).

function consent(id: string, version: number, status = 'active'): StoredConsent {
  return { id, version, grantor: 'patient-1', grantee: 'carer-1', status, record: `{"v":${version}}`, updatedAt: Date.now() };
}

async function until(check: () => Promise<boolean>, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('storeOptions config section', () => {
  it('defaults to no WAIT and validates its fields', () => {
    expect(configSchema.parse({}).storeOptions).toMatchObject({ waitReplicas: 0, waitTimeoutMs: 1000, allowPlaintext: false });
    expect(configSchema.parse({ storeOptions: { waitReplicas: 1, waitTimeoutMs: 250 } }).storeOptions).toMatchObject({ waitReplicas: 1, waitTimeoutMs: 250 });
    expect(() => configSchema.parse({ storeOptions: { waitReplicas: -1 } })).toThrow();
    expect(() => configSchema.parse({ storeOptions: { waitReplicas: 1, extra: true } })).toThrow();
  });
});

describe.skipIf(!redisAvailable)('WAIT acknowledgement for consent writes (primary + replica)', () => {
  let primary: RedisPeer;
  let replica: RedisPeer;
  let store: RedisStore;
  let probe: Redis;

  beforeAll(async () => {
    primary = await startRedis();
    replica = await startRedis(['--replicaof', '127.0.0.1', String(primary.port)]);
    probe = new Redis(primary.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    const replicaProbe = new Redis(replica.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    await until(async () => /master_link_status:up/.test(await replicaProbe.info('replication')), 10_000);
    replicaProbe.disconnect();
    store = openRedisStore(primary.url, { prefix: `wait-${randomUUID()}:`, waitReplicas: 1, waitTimeoutMs: 300 });
    await store.ping();
  }, 20_000);
  afterAll(async () => {
    await store?.close();
    probe?.disconnect();
    await replica?.stop();
    await primary?.stop();
  });

  it('with the replica up, creates and updates are acknowledged and reach the replica', async () => {
    const id = randomUUID();
    expect(await store.consents.create(consent(id, 1, 'proposed'))).toBe(true);
    expect(await store.consents.update(consent(id, 2), 1)).toBe(true);
    expect((await store.consents.get(id))?.version).toBe(2);
    // A lost compare-and-set writes nothing and needs no WAIT: plain false.
    expect(await store.consents.update(consent(id, 2), 1)).toBe(false);
    const onReplica = new Redis(replica.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    expect(await onReplica.llen(`${store.prefix}{consent:${id}}:versions`)).toBe(2);
    onReplica.disconnect();
  });

  it('with the replica stopped, a consent write fails (StoreUnavailableError) within the WAIT bound; then recovers', async () => {
    const id = randomUUID();
    expect(await store.consents.create(consent(id, 1, 'proposed'))).toBe(true);
    await replica.stop();
    await until(async () => /connected_slaves:0/.test(await probe.info('replication')), 10_000);

    const t0 = Date.now();
    const err = await store.consents.update(consent(id, 2), 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as Error).message).toMatch(/acknowledged by 0 of 1/);
    expect(Date.now() - t0).toBeLessThan(1500);
    const created = await store.consents.create(consent(randomUUID(), 1, 'proposed')).catch((e: unknown) => e);
    expect(created).toBeInstanceOf(StoreUnavailableError);
    // Reads and other traffic are not held up (WAIT blocks only the consent writer's connection).
    expect((await store.consents.get(id))?.id).toBe(id);
    await store.ping();

    // The unacknowledged write may still be on the primary (the comment in consents.ts says so); the
    // caller reported failure. With the replica back, writes are acknowledged again.
    await replica.restart();
    await until(async () => /connected_slaves:1/.test(await probe.info('replication')), 10_000);
    const current = (await store.consents.get(id))!.version;
    expect(await store.consents.update(consent(id, current + 1), current)).toBe(true);
  }, 30_000);

  it('refuses waitReplicas with redis+cluster', () => {
    expect(() => openRedisStore('redis+cluster://127.0.0.1:1', { waitReplicas: 1 })).toThrow(/not supported with redis\+cluster/);
  });
});

describe.skipIf(!redisAvailable)('maxmemory-policy check (HA-05)', () => {
  let redis: RedisPeer;
  beforeAll(async () => {
    redis = await startRedis(['--maxmemory-policy', 'allkeys-lru']);
  });
  afterAll(() => redis?.stop());

  it('warns at connect when Redis may evict keys, and is quiet with noeviction', async () => {
    const warnings: string[] = [];
    const store = openRedisStore(redis.url, { prefix: `ev-${randomUUID()}:`, onWarning: (m) => warnings.push(m) });
    await store.ping();
    await until(async () => warnings.length > 0, 2000);
    expect(warnings[0]).toMatch(/maxmemory-policy is "allkeys-lru".*noeviction/);

    await store.redis.config('SET', 'maxmemory-policy', 'volatile-lru');
    expect(await checkEvictionPolicy(store.redis)).toMatch(/volatile-lru/);
    await store.redis.config('SET', 'maxmemory-policy', 'noeviction');
    expect(await readEvictionPolicy(store.redis)).toBe('noeviction');
    expect(await checkEvictionPolicy(store.redis)).toBeUndefined();
    await store.close();
  });

  it('tolerates an ACL that denies CONFIG', async () => {
    const admin = new Redis(redis.port, '127.0.0.1');
    await admin.call('ACL', 'SETUSER', 'broker', 'on', '>pw-0123456789', '~*', '+@all', '-config');
    admin.disconnect();
    const store = openRedisStore(`redis://broker:pw-0123456789@127.0.0.1:${redis.port}`, { prefix: `ev-${randomUUID()}:`, onWarning: () => {} });
    await store.ping();
    expect(await readEvictionPolicy(store.redis)).toBeUndefined();
    expect(await checkEvictionPolicy(store.redis)).toBeUndefined();
    await store.close();
  });
});
