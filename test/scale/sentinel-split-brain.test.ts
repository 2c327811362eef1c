import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { openRedisStore, type RedisStore } from '../../src/store/redis/index.ts';
import { clientKey, type ClientKey } from '../helpers/broker.ts';
import { redisAvailable, startSentinelGroup, type RedisProcess, type SentinelGroup } from '../peers/redis-sentinel.ts';
import { assertionGrant, brokerOn, clientAssertion, errorOf, newCode, redeem, type Code, type Node } from './sentinel-flows.ts';

// Catalogue HA-11: the Redis primary cut off from its replicas, on a real Sentinel group (one primary,
// two replicas, three sentinels). The rule: the same code or jti is never accepted twice, and the broker
// heals by itself when the partition does.
//
// 1. Replicas gone silent (SIGSTOP): the primary alone keeps answering. With storeOptions.waitReplicas, or
//    with min-replicas-to-write on the primary, its writes are not acknowledged: the broker answers 503
//    instead of consuming a code or a jti on a primary whose writes a failover could discard. Replicas
//    back (SIGCONT): the same broker serves again, no restart.
// 2. Split brain: the primary is paused, the sentinels promote a replica, and the old primary comes back
//    while the sentinels cannot reach it (they are paused in turn), so for a while there are two primaries.
//    Broker A still holds its connection to the old one — a node on the old primary's side of the
//    partition; it is configured with a redis:// URL naming that node, which is what a connection opened
//    before the partition amounts to — and broker B follows Sentinel to the new one. One code and one
//    client-assertion jti are tried on both. Without any guard both brokers accept them: the double
//    acceptance this row is about, shown first. With waitReplicas, or min-replicas-to-write, the isolated
//    primary's writes fail and broker A answers 503. When the sentinels return they demote the old
//    primary, whose unacknowledged writes are discarded; broker B, which followed the failover by itself,
//    still refuses both replays.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Guarding {
  name: string;
  waitReplicas: number;
  minReplicasToWrite: boolean;
}

const GUARDS: Guarding[] = [
  { name: 'waitReplicas 1', waitReplicas: 1, minReplicasToWrite: false },
  { name: 'min-replicas-to-write 1 on the primary (no WAIT)', waitReplicas: 0, minReplicasToWrite: true },
];

describe.skipIf(!redisAvailable)('Redis primary cut off from its replicas (HA-11)', () => {
  let group: SentinelGroup | undefined;
  let stores: RedisStore[] = [];
  let nodes: Node[] = [];
  let svcKey: ClientKey;

  afterEach(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    await Promise.all(stores.map((s) => s.close()));
    await group?.stop();
    nodes = [];
    stores = [];
    group = undefined;
  });

  async function open(url: string, prefix: string, waitReplicas: number): Promise<RedisStore> {
    const store = openRedisStore(url, { prefix, waitReplicas, waitTimeoutMs: 500, onWarning: () => {} });
    stores.push(store);
    await store.ping();
    return store;
  }

  async function guardPrimary(primary: RedisProcess, g: Guarding): Promise<void> {
    if (!g.minReplicasToWrite) return;
    const admin = primary.admin();
    try {
      await admin.config('SET', 'min-replicas-to-write', '1');
      await admin.config('SET', 'min-replicas-max-lag', '2');
    } finally {
      admin.disconnect();
    }
  }

  /** Every replica holds everything written so far. */
  async function replicated(primary: RedisProcess, replicas: number): Promise<void> {
    const admin = primary.admin();
    try {
      await admin.set('sync', randomUUID());
      expect(await admin.wait(replicas, 5000)).toBe(replicas);
    } finally {
      admin.disconnect();
    }
  }

  /**
   * The status of `send` on broker B, retried while it is 503: each sentinel announces a switch in turn and
   * B's client reconnects on each, so B may refuse for a moment after a failover or a heal (fail-closed).
   */
  async function settled(send: () => Promise<Response>): Promise<number> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const res = await send();
      await res.arrayBuffer();
      if (res.status !== 503 || Date.now() > deadline) return res.status;
      await sleep(100);
    }
  }

  async function until(what: string, withinMs: number, check: () => Promise<boolean>): Promise<number> {
    const t0 = Date.now();
    while (!(await check())) {
      if (Date.now() - t0 > withinMs) throw new Error(`${what} not within ${withinMs} ms`);
      await sleep(50);
    }
    return Date.now() - t0;
  }

  for (const g of GUARDS) {
    it(`HA-11 replicas silent, ${g.name}: the lone primary's consumes fail closed (503), nothing is accepted twice, and the broker recovers by itself`, async () => {
      group = await startSentinelGroup();
      svcKey = await clientKey();
      const primary = group.nodes[0];
      await guardPrimary(primary, g);
      const store = await open(group.url, `ha11-${randomUUID()}:`, g.waitReplicas);
      const node = await brokerOn(store, svcKey);
      nodes.push(node);

      const code = await newCode(node);
      const assertion = await clientAssertion(node.base, svcKey);
      await replicated(primary, 2);
      const replicas = group.nodes.slice(1);
      for (const r of replicas) r.pause();
      if (g.minReplicasToWrite) {
        // Until min-replicas-max-lag has passed the primary still counts the silent replicas as good.
        const admin = primary.admin();
        await until('the primary refusing writes (NOREPLICAS)', 10_000, () => admin.set('probe', '1').then(() => false, (e: Error) => /NOREPLICAS/.test(e.message)));
        admin.disconnect();
      }

      const started = Date.now();
      const [redeemed, asserted] = await Promise.all([redeem(node, code), assertionGrant(node, assertion)]);
      expect(Date.now() - started).toBeLessThan(3000);
      for (const res of [redeemed, asserted]) {
        expect(res.status).toBe(503);
        expect(await errorOf(res)).toBe('temporarily_unavailable');
      }

      for (const r of replicas) r.resume();
      const resumedAt = Date.now();
      let first = 0;
      const recoveryMs = await until('a token after the replicas resumed', 30_000, async () => {
        const res = await assertionGrant(node, await clientAssertion(node.base, svcKey));
        return res.status === 200 || (first++, false);
      });
      console.log(`HA-11 (${g.name}): first token ${recoveryMs} ms after the replicas resumed (${first} refusals meanwhile)`);
      expect(Date.now() - resumedAt).toBeLessThan(30_000);

      // Whatever the fate of the refused attempts, each code and jti is accepted at most once from now on.
      const codeStatuses = [(await redeem(node, code)).status, (await redeem(node, code)).status];
      const jtiStatuses = [(await assertionGrant(node, assertion)).status, (await assertionGrant(node, assertion)).status];
      expect(codeStatuses.filter((s) => s === 200).length).toBeLessThanOrEqual(1);
      expect(jtiStatuses.filter((s) => s === 200).length).toBeLessThanOrEqual(1);
      expect(codeStatuses[1]).toBe(400);
      expect(jtiStatuses[1]).toBe(401);
      // With min-replicas-to-write nothing was written on the lone primary: the code is still good once.
      // With WAIT the consume happened on the primary and reached the replicas later: burnt, never accepted.
      expect(codeStatuses[0]).toBe(g.minReplicasToWrite ? 200 : 400);
      // And a fresh login works: the same broker, never restarted.
      expect((await redeem(node, await newCode(node))).status).toBe(200);
    }, 180_000);
  }

  interface SplitBrain {
    a: Node;
    b: Node;
    oldPrimary: RedisProcess;
    code: Code;
    assertion: string;
    /** From pausing the old primary to broker B's first token on the new one (polled every 50 ms from the pause). */
    followMs: number;
  }

  /** Up to two primaries: the old one (broker A's), resumed while the sentinels are paused, and the promoted one. */
  async function splitBrain(g: Guarding): Promise<SplitBrain> {
    group = await startSentinelGroup();
    svcKey = await clientKey();
    const oldPrimary = group.nodes[0];
    await guardPrimary(oldPrimary, g);
    const prefix = `ha11-${randomUUID()}:`;
    const storeA = await open(`redis://127.0.0.1:${oldPrimary.port}`, prefix, g.waitReplicas);
    const storeB = await open(group.url, prefix, g.waitReplicas);
    const b = await brokerOn(storeB, svcKey);
    const a = await brokerOn(storeA, svcKey, b.base);
    nodes.push(a, b);

    const code = await newCode(b);
    const assertion = await clientAssertion(b.base, svcKey);
    await replicated(oldPrimary, 2);

    // Paused sentinels enter TILT when resumed (30 s of doing nothing by default), and look at a returning
    // old primary only every 10 s: shortened here, so the partition heals in seconds, not a minute.
    await group.tune({ 'tilt-period': 1000, 'info-period': 1000, 'publish-period': 500 });

    oldPrimary.pause();
    // Broker B follows the failover without restart.
    const followMs = await until('broker B serving on the new primary', 30_000, async () => (await assertionGrant(b, await clientAssertion(b.base, svcKey))).status === 200);
    const promoted = await group.waitForNewPrimary(oldPrimary);

    for (const s of group.sentinels) s.pause();
    oldPrimary.resume();
    // The old primary is back, still a primary, with no replica left: the split brain.
    const admin = oldPrimary.admin();
    try {
      await until('the old primary answering as a primary without replicas', 10_000, async () => {
        const info = await admin.info('replication').catch(() => '');
        return /role:master/.test(info) && /connected_slaves:0/.test(info);
      });
    } finally {
      admin.disconnect();
    }
    expect(promoted).not.toBe(oldPrimary);
    await until('broker A reaching the old primary again', 10_000, async () => (await fetch(`${a.base}/readyz`)).status === 200);
    return { a, b, oldPrimary, code, assertion, followMs };
  }

  it('HA-11 split brain without any guard (the failure to prevent): a code and a jti are each accepted twice, once per primary', async () => {
    const s = await splitBrain({ name: 'none', waitReplicas: 0, minReplicasToWrite: false });
    expect(await settled(() => redeem(s.b, s.code))).toBe(200);
    expect((await redeem(s.a, s.code)).status).toBe(200);
    expect((await assertionGrant(s.a, s.assertion)).status).toBe(200);
    expect(await settled(() => assertionGrant(s.b, s.assertion))).toBe(200);
    for (const p of group!.sentinels) p.resume();
  }, 180_000);

  for (const g of GUARDS) {
    it(`HA-11 split brain, ${g.name}: the isolated primary's writes fail (503), each code and jti is accepted once; after the partition heals the replays stay refused`, async () => {
      const s = await splitBrain(g);
      console.log(`HA-11 split brain (${g.name}): broker B served its first token ${s.followMs} ms after the primary was paused`);

      // The code: first on the new primary (B), then on the isolated one (A).
      expect(await settled(() => redeem(s.b, s.code))).toBe(200);
      const onA = await redeem(s.a, s.code);
      expect(onA.status).toBe(503);
      expect(await errorOf(onA)).toBe('temporarily_unavailable');
      // The jti: first on the isolated primary (A), then on the new one (B).
      const jtiOnA = await assertionGrant(s.a, s.assertion);
      expect(jtiOnA.status).toBe(503);
      expect(await settled(() => assertionGrant(s.b, s.assertion))).toBe(200);
      // Whatever A tries keeps failing closed while it is cut off.
      expect((await assertionGrant(s.a, await clientAssertion(s.b.base, svcKey))).status).toBe(503);

      // The partition heals: the sentinels demote the old primary (its unacknowledged writes are dropped).
      for (const p of group!.sentinels) p.resume();
      // (A fresh connection each time: the demotion closes every client connection to the old primary.)
      await until('the old primary demoted to a replica', 30_000, async () => {
        const admin = s.oldPrimary.admin();
        try {
          return /role:slave/.test(await admin.info('replication'));
        } catch {
          return false;
        } finally {
          admin.disconnect();
        }
      }).catch((err: Error) => {
        throw new Error(`${err.message}\n${group!.logs()}`);
      });
      // Broker B was never restarted and still refuses both replays.
      expect(await settled(() => redeem(s.b, s.code))).toBe(400);
      expect(await settled(() => assertionGrant(s.b, s.assertion))).toBe(401);
      const fresh = await newCode(s.b);
      expect(await settled(() => redeem(s.b, fresh))).toBe(200);
      // Broker A, pinned to a node that is now a replica, keeps failing closed: never a second acceptance.
      expect((await assertionGrant(s.a, s.assertion)).status).toBe(503);
    }, 180_000);
  }
});
