import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import { openRedisStore, type RedisStore, type RedisStoreOptions } from '../../src/store/redis/index.ts';
import { createKeyspace } from '../../src/store/redis/keyspace.ts';
import { redisAvailable, startSentinelGroup, type SentinelGroup } from '../peers/redis-sentinel.ts';
import { storeContract } from './contract.ts';

// Catalogue HA-04 at the store level, on a real Sentinel group (one primary, two replicas, three
// sentinels). Replication is asynchronous, so a write the primary acknowledged can be missing from the
// replica that a failover promotes. The replicas replicate through relays the test can hold, which makes
// that loss deterministic: held replication, a marker written, the primary killed.
//   - without storeOptions.waitReplicas the marker is gone after the failover: the replay is accepted;
//   - with it, the marker's write fails (StoreUnavailableError, so 503) while no replica acknowledges it,
//     and a marker that was acknowledged survives both a killed primary and a planned failover.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Retries an operation that fails with StoreUnavailableError while the store follows a new primary. Each
 * sentinel announces the switch when it learns of it, up to a second or so apart, and the client
 * reconnects on every announcement: a call may fail (closed, never wrongly) in between.
 */
async function eventually<T>(op: () => Promise<T>, withinMs = 20_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await op();
    } catch (err) {
      if (!(err instanceof StoreUnavailableError) || Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

describe.skipIf(!redisAvailable)('Sentinel failover and security markers (HA-04)', () => {
  let group: SentinelGroup | undefined;
  let stores: RedisStore[] = [];

  afterEach(async () => {
    connectionErrors = [];
    await Promise.all(stores.map((s) => s.close()));
    stores = [];
    await group?.stop();
    group = undefined;
  });

  // Connection errors, for a failure message.
  let connectionErrors: string[] = [];
  async function open(options: RedisStoreOptions = {}): Promise<RedisStore> {
    const store = openRedisStore(group!.url, { prefix: `ha04-${randomUUID()}:`, onWarning: () => {}, onError: (e) => connectionErrors.push(`${Date.now()} ${e.message}`), ...options });
    stores.push(store);
    await store.ping();
    return store;
  }

  /** True once every live replica holds `key`: the write has been replicated. */
  async function onReplicas(key: string): Promise<void> {
    const primary = await group!.primary();
    const replicas = group!.nodes.filter((n) => n !== primary && n.alive);
    for (;;) {
      const found = await Promise.all(
        replicas.map(async (n) => {
          const r = n.admin();
          try {
            return (await r.exists(key)) === 1;
          } finally {
            r.disconnect();
          }
        }),
      );
      if (found.every(Boolean)) return;
      await sleep(20);
    }
  }

  it('HA-04 without WAIT: a consumed code and a replay marker written just before the primary dies can be lost, so the replay is accepted', async () => {
    group = await startSentinelGroup({ relay: true });
    const store = await open();
    const keys = createKeyspace(store.prefix);
    await store.oidc.upsert('AuthorizationCode', 'code-1', { grantId: 'g1' }, 600);
    await onReplicas(keys.oidc('AuthorizationCode', 'code-1'));

    group.holdReplication();
    // The primary acknowledges both: to the broker they are done.
    expect(await store.oidc.consume('AuthorizationCode', 'code-1')).toBe(true);
    expect(await store.replay.rememberOnce('jti-1', 600)).toBe(true);
    const old = group.nodes[0];
    await old.kill();
    await group.waitForNewPrimary(old);

    // The same store object follows the new primary, which never saw either write.
    expect(await eventually(() => store.oidc.consume('AuthorizationCode', 'code-1')), 'the consumed code came back').toBe(true);
    expect(await eventually(() => store.replay.rememberOnce('jti-1', 600)), 'the replay marker was lost').toBe(true);
  }, 120_000);

  it('HA-04 with waitReplicas: an unacknowledged marker fails closed, an acknowledged one survives a killed primary and a planned failover', async () => {
    group = await startSentinelGroup({ relay: true });
    const store = await open({ waitReplicas: 1, waitTimeoutMs: 500 });
    for (const id of ['acked', 'held', 'planned']) await store.oidc.upsert('AuthorizationCode', id, { grantId: `g-${id}` }, 600);
    await store.oidc.upsert('RefreshToken', 'rt-held', { grantId: 'g-held' }, 600);

    // Acknowledged by a replica before the call returns.
    expect(await store.oidc.consume('AuthorizationCode', 'acked')).toBe(true);
    expect(await store.replay.rememberOnce('jti-acked', 600)).toBe(true);

    group.holdReplication();
    const t0 = Date.now();
    const held = await Promise.allSettled([
      store.oidc.consume('AuthorizationCode', 'held'),
      store.replay.rememberOnce('jti-held', 600),
      store.oidc.destroy('RefreshToken', 'rt-held'),
      store.oidc.revokeByGrantId('AuthorizationCode', 'g-planned'),
      store.accounts.createLink({ provider: 'p', subject: `s-${randomUUID()}`, accountId: 'a', evidence: 'e', createdAt: 1 }),
      store.accounts.setIdentifier('nhs_number', randomUUID(), 'a'),
      store.keys.putKey({ kid: 'k', alg: 'ES256', use: 'sig', publicJwk: {}, sealedPrivateJwk: 'x', createdAt: 1, activatesAt: 1 }),
      store.consents.create({ id: randomUUID(), version: 1, grantor: 'a', status: 'proposed', record: 'r', updatedAt: 1 }),
    ]);
    for (const r of held) {
      expect(r.status).toBe('rejected');
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(StoreUnavailableError);
    }
    // Bounded by two WAIT timeouts (the one they all queued behind, then one probe), not one per write.
    expect(Date.now() - t0).toBeLessThan(2000);
    // Reads and writes whose loss fails safe are not held up.
    const found = await store.oidc.find('AuthorizationCode', 'acked').catch((e: Error) => {
      throw new Error(`${e.message}; connection errors: ${connectionErrors.join(' | ')}; now ${Date.now()}, hold at ${t0}`);
    });
    expect(found?.consumed).toBeTruthy();
    expect(await store.replay.has('jti-acked')).toBe(true);
    await store.oidc.upsert('Session', 's1', {}, 60);
    await store.ping();

    const old = group.nodes[0];
    await old.kill();
    const next = await group.waitForNewPrimary(old);

    // Acknowledged markers survived; the held ones were lost, but their writes had been reported as failed,
    // so each is accepted exactly once overall.
    expect(await eventually(() => store.oidc.consume('AuthorizationCode', 'acked'))).toBe(false);
    expect(await eventually(() => store.replay.rememberOnce('jti-acked', 600))).toBe(false);
    expect(await eventually(() => store.oidc.consume('AuthorizationCode', 'held'))).toBe(true);
    expect(await eventually(() => store.replay.rememberOnce('jti-held', 600))).toBe(true);
    expect(await eventually(() => store.oidc.find('RefreshToken', 'rt-held'))).toBeDefined();

    // A planned failover (SENTINEL FAILOVER) right after acknowledged writes.
    expect(await eventually(() => store.oidc.consume('AuthorizationCode', 'planned'))).toBe(true);
    expect(await eventually(() => store.replay.rememberOnce('jti-planned', 600))).toBe(true);
    await group.failover();
    await group.waitForNewPrimary(next);
    expect(await eventually(() => store.oidc.consume('AuthorizationCode', 'planned'))).toBe(false);
    expect(await eventually(() => store.replay.rememberOnce('jti-planned', 600))).toBe(false);
  }, 120_000);

  it('acknowledges concurrent writes with shared WAITs (group commit), not one WAIT each', async () => {
    group = await startSentinelGroup();
    const store = await open({ waitReplicas: 2, waitTimeoutMs: 1000 });
    const admin = group.nodes[0].admin();
    const waits = async () => Number(/cmdstat_wait:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
    try {
      const before = await waits();
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => store.replay.rememberOnce(`burst-${i % 100}`, 60)));
      expect(results.filter(Boolean)).toHaveLength(100);
      const used = (await waits()) - before;
      expect(used).toBeGreaterThan(0);
      expect(used).toBeLessThan(50);
    } finally {
      admin.disconnect();
    }
  }, 60_000);
});

describe.skipIf(!redisAvailable)('redis store on Sentinel with waitReplicas', () => {
  let contractGroup: SentinelGroup;
  storeContract(
    'redis (sentinel, 2 replicas, waitReplicas 1)',
    async () => {
      contractGroup = await startSentinelGroup();
      const store = openRedisStore(contractGroup.url, { prefix: `contract-${randomUUID()}:`, waitReplicas: 1, onWarning: () => {} });
      await store.ping();
      return store;
    },
    () => contractGroup.stop(),
  );
});
