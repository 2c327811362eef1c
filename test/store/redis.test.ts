import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import { openStore } from '../../src/store/open.ts';
import type { StoredConsent } from '../../src/store/contracts.ts';
import { openRedisStore, parseRedisUrl, type RedisStore } from '../../src/store/redis/index.ts';
import { createKeyspace } from '../../src/store/redis/keyspace.ts';
import { keySlot } from '../../src/store/redis/slot.ts';
import { freePort } from '../peers/ports.ts';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { storeContract } from './contract.ts';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function prefix(): string {
  return `test-${randomUUID()}:`;
}

async function opened(url: string, options: Parameters<typeof openRedisStore>[1] = {}): Promise<RedisStore> {
  const store = openRedisStore(url, { prefix: prefix(), ...options });
  await store.ping();
  return store;
}

/** Polls ping until it answers; ioredis reconnects by itself, nothing is reopened. */
async function waitForPing(store: RedisStore, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      await store.ping();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

/** A one-node Redis Cluster: enough to make Redis refuse any command or script that spans hash slots. */
async function startCluster(): Promise<RedisPeer> {
  const peer = await startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-announce-ip', '127.0.0.1']);
  const admin = new Redis({ port: peer.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  admin.on('error', () => {});
  try {
    await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    for (let i = 0; i < 100; i++) {
      const info = String(await admin.call('CLUSTER', 'INFO'));
      if (info.includes('cluster_state:ok')) return peer;
      await sleep(50);
    }
    throw new Error('cluster did not become ready');
  } finally {
    admin.disconnect();
  }
}

/** One Sentinel watching `master`, so the store must discover the master through it. */
async function startSentinel(master: RedisPeer): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'broker-sentinel-'));
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor brokermaster 127.0.0.1 ${master.port} 1\n`);
  const child: ChildProcess = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  probe.on('error', () => {});
  try {
    for (let i = 0; ; i++) {
      try {
        await probe.connect();
        const addr = await probe.call('SENTINEL', 'get-master-addr-by-name', 'brokermaster');
        if (Array.isArray(addr)) break;
      } catch (err) {
        if (i > 100) throw err;
      }
      probe.disconnect();
      await sleep(50);
    }
  } finally {
    probe.disconnect();
  }
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

describe('parseRedisUrl', () => {
  it('parses standalone, TLS, Sentinel and Cluster URLs', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6380')).toEqual({ mode: 'standalone', host: '127.0.0.1', port: 6380, db: 0, tls: false });
    expect(parseRedisUrl('rediss://broker:p%40ss@redis.example:6390/2')).toEqual({
      mode: 'standalone',
      host: 'redis.example',
      port: 6390,
      db: 2,
      tls: true,
      username: 'broker',
      password: 'p@ss',
    });
    expect(parseRedisUrl('redis://:secret@[::1]')).toMatchObject({ host: '::1', port: 6379, password: 'secret' });
    expect(parseRedisUrl('redis+sentinel://s1:26379,s2/mymaster/1')).toEqual({
      mode: 'sentinel',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
      ],
      name: 'mymaster',
      db: 1,
    });
    expect(parseRedisUrl('redis+cluster://u:p@n1:7000,n2:7001')).toEqual({
      mode: 'cluster',
      nodes: [
        { host: 'n1', port: 7000 },
        { host: 'n2', port: 7001 },
      ],
      username: 'u',
      password: 'p',
    });
  });

  it('rejects malformed URLs without echoing credentials', () => {
    const bad = [
      'redis://h1:1,h2:2',
      'redis+sentinel://s1:26379',
      'redis+cluster://n1:7000/3',
      'redis://h:99999',
      'redis://h/notanumber',
      'redis://user:hunter2@h?tls=true',
      'redis://user:hun/ter2@h',
      'redis://user:hunter2%@h',
      'memcached://h:11211',
    ];
    for (const url of bad) {
      expect(() => parseRedisUrl(url), url).toThrow(/invalid redis URL/);
      expect(() => parseRedisUrl(url), url).not.toThrow(/hun|ter2/);
    }
  });

  it('refuses a key prefix that would become a hash tag', () => {
    expect(() => openRedisStore('redis://127.0.0.1:1', { prefix: 'a{b}:' })).toThrow(/prefix/);
  });
});

describe.skipIf(!redisAvailable)('redis store', () => {
  // Peers start inside open() so nothing is spawned while the suite is only being collected (or skipped).
  let standalone: RedisPeer;
  storeContract(
    'redis (standalone)',
    async () => {
      standalone = await startRedis();
      return opened(standalone.url);
    },
    () => standalone.stop(),
  );

  let cluster: RedisPeer;
  storeContract(
    'redis (cluster)',
    async () => {
      cluster = await startCluster();
      return opened(`redis+cluster://127.0.0.1:${cluster.port}`);
    },
    () => cluster.stop(),
  );

  let master: RedisPeer;
  let sentinel: Awaited<ReturnType<typeof startSentinel>>;
  storeContract(
    'redis (sentinel)',
    async () => {
      master = await startRedis();
      sentinel = await startSentinel(master);
      return opened(`redis+sentinel://127.0.0.1:${sentinel.port}/brokermaster`);
    },
    async () => {
      await sentinel.stop();
      await master.stop();
    },
  );

  it('keeps consume atomic across two clients', async () => {
    const peer = await startRedis();
    const p = prefix();
    const [a, b] = [await opened(peer.url, { prefix: p }), await opened(peer.url, { prefix: p })];
    try {
      for (let round = 0; round < 5; round++) {
        const id = `code-${round}`;
        await a.oidc.upsert('AuthorizationCode', id, { grantId: 'g' }, 60);
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).oidc.consume('AuthorizationCode', id)));
        expect(results.filter(Boolean)).toHaveLength(1);
      }
      const remembered = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).replay.rememberOnce('jti-1', 60)));
      expect(remembered.filter(Boolean)).toHaveLength(1);
    } finally {
      await a.close();
      await b.close();
      await peer.stop();
    }
  });

  it('computes hash slots as Redis Cluster does', async () => {
    const peer = await startCluster();
    const admin = new Redis({ port: peer.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    admin.on('error', () => {});
    try {
      const keys = createKeyspace('broker:');
      const samples = [
        'plain',
        'a{b}c',
        '{}x',
        '{',
        'x}{',
        '}{x}',
        'x{}{y}',
        '{a}{b}',
        'Zoë{✓ 猫}',
        keys.consent('id:{1}'),
        keys.consentVersions('id:{1}'),
        keys.consentsByGrantor('acct'),
        keys.consentsByGrantee('acct'),
        keys.consentsEnding('active'),
        ...Array.from({ length: 50 }, () => `k{${randomUUID()}}`),
        ...Array.from({ length: 50 }, () => randomUUID()),
      ];
      for (const key of samples) expect(keySlot(key), key).toBe(await admin.call('CLUSTER', 'KEYSLOT', key));
      // A consent's pointer and versions share one slot.
      expect(keySlot(keys.consent('x'))).toBe(keySlot(keys.consentVersions('x')));
    } finally {
      admin.disconnect();
      await peer.stop();
    }
  });

  it('keeps consent compare-and-set atomic across two clients (standalone and cluster)', async () => {
    const standalonePeer = await startRedis();
    const clusterPeer = await startCluster();
    try {
      for (const url of [standalonePeer.url, `redis+cluster://127.0.0.1:${clusterPeer.port}`]) {
        const p = prefix();
        const [a, b] = [await opened(url, { prefix: p }), await opened(url, { prefix: p })];
        try {
          for (let round = 0; round < 5; round++) {
            const v1: StoredConsent = { id: `consent-${round}`, version: 1, grantor: 'patient', status: 'proposed', record: 'v1', updatedAt: 1, endsAt: 10 };
            const creates = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).consents.create({ ...v1, record: `v1-${i}` })));
            expect(creates.filter(Boolean)).toHaveLength(1);
            const created = { ...v1, record: `v1-${creates.indexOf(true)}` };
            const results = await Promise.all(
              Array.from({ length: 50 }, (_, i) =>
                (i % 2 ? a : b).consents.update({ ...v1, version: 2, grantee: `carer-${round}-${i}`, status: 'active', record: `v2-${i}`, endsAt: 20 + i }, 1),
              ),
            );
            expect(results.filter(Boolean), url).toHaveLength(1);
            const winner = results.indexOf(true);
            const expected = { ...v1, version: 2, grantee: `carer-${round}-${winner}`, status: 'active', record: `v2-${winner}`, endsAt: 20 + winner };
            expect(await a.consents.get(v1.id)).toEqual(expected);
            expect(await b.consents.history(v1.id)).toEqual([created, expected]);
            const lists = await Promise.all(Array.from({ length: 50 }, (_, i) => a.consents.listByGrantee(`carer-${round}-${i}`)));
            expect(lists.flat()).toEqual([expected]);
            expect((await b.consents.listEnding(100, ['active'], 100)).filter((c) => c.id === v1.id)).toEqual([expected]);
            expect((await b.consents.listEnding(100, ['proposed'], 100)).filter((c) => c.id === v1.id)).toEqual([]);
          }
        } finally {
          await a.close();
          await b.close();
        }
      }
    } finally {
      await standalonePeer.stop();
      await clusterPeer.stop();
    }
  });

  describe('consent indexes in a cluster', () => {
    let peer: RedisPeer;
    let store: RedisStore;
    let keys: ReturnType<typeof createKeyspace>;

    beforeAll(async () => {
      peer = await startCluster();
      store = await opened(`redis+cluster://127.0.0.1:${peer.port}`);
      keys = createKeyspace(store.prefix);
    });

    afterAll(async () => {
      await store?.close();
      await peer?.stop();
    });

    function consent(overrides: Partial<StoredConsent> = {}): StoredConsent {
      return { id: `consent-${randomUUID()}`, version: 1, grantor: `patient-${randomUUID()}`, status: 'active', record: 'jws', updatedAt: 1, ...overrides };
    }

    /** A value whose key (made by `keyOf`) hashes to `slot`, so the store can update it in the record's script. */
    function inSlot(slot: number, keyOf: (value: string) => string): string {
      for (let i = 0; i < 2_000_000; i++) {
        const value = `v-${i}-${randomUUID().slice(0, 8)}`;
        if (keySlot(keyOf(value)) === slot) return value;
      }
      throw new Error('no value found for slot');
    }

    it('lists ignore entries that do not belong and remove them, but keep a concurrent writer\'s', async () => {
      const c = consent({ grantee: `carer-${randomUUID()}`, endsAt: 100 });
      expect(await store.consents.create(c)).toBe(true);
      const r = store.redis;

      // Left by a writer that lost its race or died after the CAS: score <= the current version.
      const strayAccount = `carer-${randomUUID()}`;
      const stray = keys.consentsByGrantee(strayAccount);
      await r.zadd(stray, 1, c.id);
      // Added by a writer of version 2 that has not reached its CAS yet.
      const pendingAccount = `carer-${randomUUID()}`;
      const pending = keys.consentsByGrantee(pendingAccount);
      await r.zadd(pending, 2, c.id);
      // Added by a create that has not reached its CAS yet (or died before it).
      const orphanAccount = `patient-${randomUUID()}`;
      await r.zadd(keys.consentsByGrantor(orphanAccount), 1, 'consent-not-yet');

      expect(await store.consents.listByGrantee(strayAccount)).toEqual([]);
      expect(await r.zscore(stray, c.id)).toBeNull();
      expect(await store.consents.listByGrantee(pendingAccount)).toEqual([]);
      expect(await r.zscore(pending, c.id)).toBe('2');
      expect(await store.consents.listByGrantor(orphanAccount)).toEqual([]);
      expect(await r.zscore(keys.consentsByGrantor(orphanAccount), 'consent-not-yet')).toBe('1');
      expect(await store.consents.listByGrantee(c.grantee ?? '')).toEqual([c]);
    });

    it('listEnding never misses a consent whose index score a losing writer lowered, and drops stale members', async () => {
      const status = `active-${randomUUID()}`;
      const ending = keys.consentsEnding(status);
      const r = store.redis;
      const c = consent({ status, endsAt: 100 });
      expect(await store.consents.create(c)).toBe(true);
      const member = `${c.id}\u00001`;
      expect(await r.zscore(ending, member)).toBe('100');

      // A loser of a CAS race for version 1 pulled the score down (ZADD LT): still found exactly by endsAt.
      await r.zadd(ending, 'LT', 40, member);
      expect(await store.consents.listEnding(50, [status], 10)).toEqual([]);
      expect(await r.zscore(ending, member)).toBe('100');
      expect(await store.consents.listEnding(100, [status], 10)).toEqual([c]);

      // Version 2; then a slow writer re-adds version 1's member, and a loser adds version 2 under another status.
      const v2 = { ...c, version: 2, record: 'v2' };
      expect(await store.consents.update(v2, 1)).toBe(true);
      expect(await r.zscore(ending, member)).toBeNull();
      await r.zadd(ending, 90, member);
      const otherStatus = `inactive-${randomUUID()}`;
      await r.zadd(keys.consentsEnding(otherStatus), 90, `${c.id}\u00002`);
      expect(await store.consents.listEnding(100, [status, otherStatus], 10)).toEqual([v2]);
      expect(await r.zscore(ending, member)).toBeNull();
      expect(await r.zcard(keys.consentsEnding(otherStatus))).toBe(0);
    });

    it('updates index keys in the record\'s slot inside the CAS script and the others around it', async () => {
      const id = `consent-${randomUUID()}`;
      const slot = keySlot(keys.consent(id));
      const sameSlotCarer = inSlot(slot, keys.consentsByGrantee);
      const sameSlotStatus = inSlot(slot, keys.consentsEnding);
      const otherCarer = `carer-${randomUUID()}`;
      expect(keySlot(keys.consentsByGrantee(otherCarer))).not.toBe(slot);

      const v1 = consent({ id, grantee: sameSlotCarer, status: sameSlotStatus, endsAt: 100 });
      expect(await store.consents.create(v1)).toBe(true);
      expect(await store.consents.listByGrantee(sameSlotCarer)).toEqual([v1]);
      expect(await store.consents.listEnding(100, [sameSlotStatus], 10)).toEqual([v1]);

      const v2 = { ...v1, version: 2, grantee: otherCarer, status: 'moved-away', record: 'v2' };
      expect(await store.consents.update(v2, 1)).toBe(true);
      expect(await store.redis.zscore(keys.consentsByGrantee(sameSlotCarer), id)).toBeNull();
      expect(await store.consents.listByGrantee(sameSlotCarer)).toEqual([]);
      expect(await store.consents.listByGrantee(otherCarer)).toEqual([v2]);
      expect(await store.consents.listEnding(100, [sameSlotStatus], 10)).toEqual([]);

      const v3 = { ...v2, version: 3, grantee: sameSlotCarer, status: sameSlotStatus, record: 'v3' };
      expect(await store.consents.update(v3, 2)).toBe(true);
      expect(await store.consents.listByGrantee(sameSlotCarer)).toEqual([v3]);
      expect(await store.consents.listByGrantee(otherCarer)).toEqual([]);
      expect(await store.consents.listEnding(100, [sameSlotStatus, 'moved-away'], 10)).toEqual([v3]);
      expect(await store.consents.history(id)).toEqual([v1, v2, v3]);
    });
  });

  it('keeps prefixes apart', async () => {
    const peer = await startRedis();
    const [a, b] = [await opened(peer.url), await opened(peer.url)];
    try {
      expect(await a.replay.rememberOnce('same-key', 60)).toBe(true);
      expect(await b.replay.rememberOnce('same-key', 60)).toBe(true);
      const keys = await a.redis.keys('*');
      expect(keys.length).toBeGreaterThan(0);
      expect(keys.every((k) => k.startsWith(a.prefix) || k.startsWith(b.prefix))).toBe(true);
    } finally {
      await a.close();
      await b.close();
      await peer.stop();
    }
  });

  it('fails closed, without hanging, while Redis is down and recovers by itself', async () => {
    const peer = await startRedis();
    const store = await opened(peer.url);
    try {
      await store.oidc.upsert('AuthorizationCode', 'before', { grantId: 'g' }, 60);
      await peer.stop();

      const started = Date.now();
      const calls = await Promise.allSettled([
        store.oidc.consume('AuthorizationCode', 'before'),
        store.oidc.find('AuthorizationCode', 'before'),
        store.oidc.upsert('AuthorizationCode', 'during', {}, 60),
        store.oidc.revokeByGrantId('AuthorizationCode', 'g'),
        store.accounts.createLink({ provider: 'p', subject: 's', accountId: 'a', evidence: 'e', createdAt: 1 }),
        store.accounts.listLinks('a'),
        store.keys.listKeys(),
        store.replay.rememberOnce('jti', 60),
        store.rateLimits.hit('ip', 60),
      ]);
      expect(Date.now() - started).toBeLessThan(1500);
      for (const call of calls) {
        expect(call.status).toBe('rejected');
        if (call.status === 'rejected') expect(call.reason).toBeInstanceOf(StoreUnavailableError);
      }

      const pingStarted = Date.now();
      await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - pingStarted).toBeLessThan(1500);

      await peer.restart();
      await waitForPing(store, 5000);
      // The same object works again; the restarted server kept no data (no persistence in tests).
      await store.oidc.upsert('AuthorizationCode', 'after', {}, 60);
      expect(await store.oidc.consume('AuthorizationCode', 'after')).toBe(true);
      expect(await store.oidc.consume('AuthorizationCode', 'after')).toBe(false);
    } finally {
      await store.close();
      await peer.stop();
    }
  });

  it('serves a burst of calls made before the first connection is ready', async () => {
    const peer = await startRedis();
    const store = openRedisStore(peer.url, { prefix: prefix() });
    try {
      const pending = Array.from({ length: 50 }, () => store.replay.rememberOnce('jti-burst', 60));
      // One shared listener, however many callers are waiting (plus the fixed ones: the guard's first-ready
      // flag and the maxmemory-policy check run on every connect).
      expect(store.redis.listenerCount('ready')).toBeLessThanOrEqual(3);
      const results = await Promise.all(pending);
      expect(results.filter(Boolean)).toHaveLength(1);
    } finally {
      await store.close();
      await peer.stop();
    }
  });

  it('fails fast when Redis was never reachable', async () => {
    const port = await freePort();
    const store = openRedisStore(`redis://127.0.0.1:${port}`, { prefix: prefix() });
    try {
      const started = Date.now();
      await expect(store.oidc.consume('AuthorizationCode', 'x')).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await store.close();
    }
  });

  it('fails with StoreUnavailableError once closed', async () => {
    const peer = await startRedis();
    const store = await opened(peer.url);
    await store.close();
    try {
      await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.replay.rememberOnce('k', 1)).rejects.toBeInstanceOf(StoreUnavailableError);
    } finally {
      await peer.stop();
    }
  });

  it('is what openStore returns for redis URLs', async () => {
    const peer = await startRedis();
    const store = openStore(peer.url);
    try {
      expect(store.kind).toBe('redis');
      await store.ping();
      expect(await store.replay.rememberOnce(`k-${randomUUID()}`, 60)).toBe(true);
    } finally {
      await store.close();
      await peer.stop();
    }
  });
});
