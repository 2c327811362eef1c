import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import { openStore } from '../../src/store/open.ts';
import { openRedisStore, parseRedisUrl, type RedisStore } from '../../src/store/redis/index.ts';
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
      // One shared listener, however many callers are waiting.
      expect(store.redis.listenerCount('ready')).toBeLessThanOrEqual(2);
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
