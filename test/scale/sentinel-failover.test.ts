import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { openRedisStore, type RedisStore } from '../../src/store/redis/index.ts';
import { clientKey, type ClientKey } from '../helpers/broker.ts';
import { redisAvailable, startSentinelGroup, type SentinelGroup } from '../peers/redis-sentinel.ts';
import {
  RecordingAgent,
  assertionGrant,
  brokerOn,
  clientAssertion,
  dpopGrant,
  dpopKey,
  dpopProof,
  errorOf,
  newCode,
  redeem,
  refresh,
  revoke,
  type Node,
} from './sentinel-flows.ts';

// Catalogue HA-04 through the broker: a broker on redis+sentinel (one primary, two replicas, three
// sentinels, real processes) under load — logins and token calls — while the primary fails over, by a
// hard kill and by SENTINEL FAILOVER. Right after, the test replays what was used just before: an
// authorization code, a refresh token (already rotated), a revoked refresh token (HA-19: a revocation
// must not come undone by a failover), a client assertion (its jti), a DPoP proof (its jti) and a SAML
// assertion ID (the replay-cache entry the SAML connector writes).
//
// Asynchronous replication can lose the primary's last writes. The first test makes that loss
// deterministic (replication held by the peer's relays, then the primary killed) and shows, with WAIT
// off, the replays accepted: the failure storeOptions.waitReplicas exists for. With waitReplicas the
// same markers are either acknowledged by a replica before the request succeeds — and then refused when
// replayed after any failover — or the request fails closed (503) and nothing was issued.
//
// The broker follows the new primary without restart; the time from the failover to its first token
// that needed a store write (a client assertion's jti) and to a green /readyz is printed.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Markers {
  code: { code: string; verifier: string };
  rotatedRefreshToken: string;
  revokedRefreshToken: string;
  assertion: string;
  dpop: string;
  samlKey: string;
}

interface Replays {
  code: number;
  refresh: number;
  revoked: number;
  assertion: number;
  dpop: number;
  saml: boolean;
}

describe.skipIf(!redisAvailable)('broker on Redis Sentinel: primary failover under load (HA-04)', () => {
  let group: SentinelGroup | undefined;
  let store: RedisStore | undefined;
  let node: Node | undefined;
  let svcKey: ClientKey;

  let background: ReturnType<typeof load> | undefined;
  // The broker's error log, shown when a request met a 500.
  let brokerErrors: string[] = [];

  afterEach(async () => {
    // A failed test leaves its load running: stop it before the broker goes.
    await background?.stop();
    background = undefined;
    brokerErrors = [];
    await node?.close();
    await store?.close();
    await group?.stop();
    node = undefined;
    store = undefined;
    group = undefined;
  });

  async function setUp(waitReplicas: number): Promise<Node> {
    group = await startSentinelGroup({ relay: true });
    svcKey = await clientKey();
    store = openRedisStore(group.url, { prefix: `ha04-${randomUUID()}:`, waitReplicas, waitTimeoutMs: 500, onWarning: () => {} });
    await store.ping();
    node = await brokerOn(store, svcKey, undefined, brokerErrors);
    return node;
  }

  interface Prepared {
    code: { code: string; verifier: string };
    refreshToken: string;
    toRevoke: string;
  }

  /**
   * What must exist on every replica before the markers are used: a code, and a refresh token from
   * another login. Then only the markers (a consumed code, a rotated refresh token, jtis) can be lost.
   */
  async function prepare(n: Node): Promise<Prepared> {
    const code = await newCode(n);
    const refreshTokenOf = async () => {
      const res = await redeem(n, await newCode(n));
      expect(res.status).toBe(200);
      return ((await res.json()) as { refresh_token: string }).refresh_token;
    };
    const [refreshToken, toRevoke] = [await refreshTokenOf(), await refreshTokenOf()];
    const admin = (await group!.primary())!.admin();
    try {
      // WAIT counts this connection's write, and with it everything the primary executed before.
      await admin.set('sync', randomUUID());
      expect(await admin.wait(2, 5000)).toBe(2);
    } finally {
      admin.disconnect();
    }
    return { code, refreshToken, toRevoke };
  }

  /** Uses one of each marker; every use must succeed (200) for the replays to mean anything. */
  async function useMarkers(n: Node, p: Prepared): Promise<{ markers: Markers; statuses: number[] }> {
    const assertion = await clientAssertion(n.base, svcKey);
    const dpop = await dpopProof(n, await dpopKey());
    const samlKey = `saml-assertion:https://idp.example/${randomUUID()}:_${randomUUID()}`;
    const [code, rotated, revoked, a, d, saml] = await Promise.all([
      redeem(n, p.code),
      refresh(n, p.refreshToken),
      revoke(n, p.toRevoke),
      assertionGrant(n, assertion),
      dpopGrant(n, dpop),
      store!.replay.rememberOnce(samlKey, 600).then(
        (first) => (first ? 200 : 400),
        () => 503,
      ),
    ]);
    return {
      markers: { code: p.code, rotatedRefreshToken: p.refreshToken, revokedRefreshToken: p.toRevoke, assertion, dpop, samlKey },
      statuses: [code.status, rotated.status, revoked.status, a.status, d.status, saml],
    };
  }

  /**
   * The status of `send`, retried while it is 503: right after a failover the broker may still refuse for
   * a moment (each sentinel announces the switch in turn and the client reconnects on each; the second
   * replica is still resynchronising). A 503 is fail-closed, never an acceptance.
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

  async function replay(n: Node, m: Markers): Promise<Replays> {
    const [code, rt, revoked, a, d] = await Promise.all([
      settled(() => redeem(n, m.code)),
      settled(() => refresh(n, m.rotatedRefreshToken)),
      settled(() => refresh(n, m.revokedRefreshToken)),
      settled(() => assertionGrant(n, m.assertion)),
      settled(() => dpopGrant(n, m.dpop)),
    ]);
    let saml: boolean | undefined;
    for (let i = 0; saml === undefined; i++) {
      saml = await store!.replay.rememberOnce(m.samlKey, 600).catch((err: unknown) => {
        if (i > 100) throw err;
        return sleep(100).then(() => undefined);
      });
    }
    return { code, refresh: rt, revoked, assertion: a, dpop: d, saml };
  }

  /** Polls a store-writing token call until it succeeds; returns ms since `from`. */
  async function firstToken(n: Node, from: number): Promise<number> {
    for (;;) {
      const res = await assertionGrant(n, await clientAssertion(n.base, svcKey));
      if (res.status === 200) return Date.now() - from;
      expect(res.status).toBe(503);
      if (Date.now() - from > 60_000) throw new Error('no token within 60 s of the failover');
      await sleep(50);
    }
  }

  async function firstReady(n: Node, from: number): Promise<number> {
    for (;;) {
      if ((await fetch(`${n.base}/readyz`)).status === 200) return Date.now() - from;
      if (Date.now() - from > 60_000) throw new Error('readyz not green within 60 s of the failover');
      await sleep(50);
    }
  }

  /**
   * Under load nothing but success, fail-closed (503) or a protocol refusal: never a 500, with one known
   * exception, reported and not this section's code: the OP's login-policy checks (src/oidc/provider.ts:
   * the session re-check and upstream-logout checks) call the store directly, so a store failure there
   * reaches oidc-provider as an unknown error and the authorization resume answers 500 server_error
   * instead of 503. Nothing is issued either way. Tolerated only in exactly that form: a GET /auth/<uid>
   * whose 500 the broker logged as oidc-provider's server error caused by a StoreUnavailableError.
   */
  function expectNoUnexplained500(statuses: number[], failures: string[]): void {
    expect(statuses.filter((s) => s >= 500 && s !== 503).length, 'every 5xx other than 503 is recorded with its path').toBe(failures.length);
    // A failover may give 503s (fail closed), never a 500: store failures inside the OP's login-policy
    // checks included (oidc/provider.ts storeBacked).
    expect(failures, brokerErrors.join('\n')).toEqual([]);
  }

  /** Token calls and logins in the background; every response is recorded. */
  function load(n: Node): { stop(): Promise<{ statuses: number[]; logins: number; failures: string[] }> } {
    let running = true;
    const statuses: number[] = [];
    const failures: string[] = [];
    let logins = 0;
    const tokenWorker = async () => {
      while (running) {
        const res = await assertionGrant(n, await clientAssertion(n.base, svcKey));
        statuses.push(res.status);
        const body = await res.text();
        if (res.status >= 500 && res.status !== 503) failures.push(`POST /token ${res.status} ${body.slice(0, 300)}`);
      }
    };
    const loginWorker = async () => {
      while (running) {
        const ua = new RecordingAgent();
        try {
          const res = await redeem(n, await newCode(n, ua));
          statuses.push(res.status);
          if (res.status === 200) logins++;
          else if (res.status >= 500 && res.status !== 503) failures.push(`POST /token (code) ${res.status} ${(await res.text()).slice(0, 300)}`);
        } catch {
          // A login interrupted by the failover: its steps' statuses are checked below.
        }
        statuses.push(...ua.statuses);
        failures.push(...ua.failures);
      }
    };
    const workers = [tokenWorker(), tokenWorker(), loginWorker()];
    return {
      async stop() {
        running = false;
        await Promise.all(workers);
        return { statuses, logins, failures };
      },
    };
  }

  it('HA-04 without WAIT (the loss waitReplicas prevents): markers used while replication lagged are accepted again after the primary is killed', async () => {
    const n = await setUp(0);
    const prepared = await prepare(n);
    group!.holdReplication();
    const { markers, statuses } = await useMarkers(n, prepared);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
    const old = group!.nodes[0];
    await old.kill();
    await group!.waitForNewPrimary(old);
    await firstToken(n, Date.now());

    const replayed = await replay(n, markers);
    // Every one of them is accepted a second time: the primary acknowledged the markers, the replica that
    // took over never had them.
    expect(replayed).toEqual({ code: 200, refresh: 200, revoked: 200, assertion: 200, dpop: 200, saml: true });
  }, 180_000);

  it('HA-04 with waitReplicas: a killed primary under load; acknowledged markers are refused when replayed, unacknowledged uses failed closed (503), no 500, the broker follows the new primary', async () => {
    const n = await setUp(1);
    background = load(n);
    await sleep(1000);

    // Acknowledged by a replica before each request succeeded.
    const acked = await useMarkers(n, await prepare(n));
    expect(acked.statuses).toEqual([200, 200, 200, 200, 200, 200]);

    // Replication held: uses now fail closed, nothing is issued.
    const toHold = await prepare(n);
    group!.holdReplication();
    const assertion = await clientAssertion(n.base, svcKey);
    const dpop = await dpopProof(n, await dpopKey());
    const held = await Promise.all([redeem(n, toHold.code), refresh(n, toHold.refreshToken), assertionGrant(n, assertion), dpopGrant(n, dpop)]);
    for (const res of held) {
      expect(res.status).toBe(503);
      expect(await errorOf(res)).toBe('temporarily_unavailable');
    }

    const old = group!.nodes[0];
    const killedAt = Date.now();
    await old.kill();
    const promoted = await group!.waitForNewPrimary(old);
    const failoverMs = Date.now() - killedAt;
    const [tokenMs, readyMs] = await Promise.all([firstToken(n, killedAt), firstReady(n, killedAt)]);
    console.log(`HA-04 kill -9 of the primary: sentinels promoted ${promoted.port} after ${failoverMs} ms; first token after ${tokenMs} ms; /readyz green after ${readyMs} ms`);

    // Replayed immediately: all refused with their protocol errors.
    const replayed = await replay(n, acked.markers);
    expect(replayed).toEqual({ code: 400, refresh: 400, revoked: 400, assertion: 401, dpop: 400, saml: false });

    // The uses that failed closed were never acknowledged and died with the old primary: each is accepted
    // now, once, and refused when used again. Over the whole test, one success each.
    // (A use that meets a 503 while the broker settles is of unknown fate and may already count: then the
    // first answer is a refusal too. Never two successes.)
    const once = async (send: () => Promise<Response>, refusal: number) => {
      const [first, second] = [await settled(send), await settled(send)];
      expect([200, refusal]).toContain(first);
      expect(second).toBe(refusal);
      return first;
    };
    const firsts = [await once(() => redeem(n, toHold.code), 400), await once(() => refresh(n, toHold.refreshToken), 400), await once(() => assertionGrant(n, assertion), 401), await once(() => dpopGrant(n, dpop), 400)];
    // Normally each was lost with the old primary and is accepted exactly once now.
    expect(firsts.filter((s) => s === 200).length).toBeGreaterThan(0);

    const { statuses, logins, failures } = await background.stop();
    background = undefined;
    console.log(`HA-04 kill -9 load: ${statuses.length} responses (${statuses.filter((s) => s === 503).length} 503), ${logins} logins completed`);
    // Under load nothing but success, fail-closed or a protocol refusal; never a 500.
    expectNoUnexplained500(statuses, failures);
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0);
    expect(logins).toBeGreaterThan(0);
  }, 180_000);

  it('HA-04 with waitReplicas: SENTINEL FAILOVER under load; every marker used just before is refused right after', async () => {
    const n = await setUp(1);
    background = load(n);
    await sleep(1000);
    const acked = await useMarkers(n, await prepare(n));
    expect(acked.statuses).toEqual([200, 200, 200, 200, 200, 200]);

    const old = (await group!.primary())!;
    const startedAt = Date.now();
    await group!.failover();
    const promoted = await group!.waitForNewPrimary(old);
    const [tokenMs, readyMs] = await Promise.all([firstToken(n, startedAt), firstReady(n, startedAt)]);
    console.log(`HA-04 SENTINEL FAILOVER: ${promoted.port} promoted after ${Date.now() - startedAt} ms; first token after ${tokenMs} ms; /readyz green after ${readyMs} ms`);

    expect(await replay(n, acked.markers)).toEqual({ code: 400, refresh: 400, revoked: 400, assertion: 401, dpop: 400, saml: false });
    const { statuses, logins, failures } = await background.stop();
    background = undefined;
    console.log(`HA-04 SENTINEL FAILOVER load: ${statuses.length} responses (${statuses.filter((s) => s === 503).length} 503), ${logins} logins completed`);
    expectNoUnexplained500(statuses, failures);
    expect(logins).toBeGreaterThan(0);
  }, 180_000);
});
