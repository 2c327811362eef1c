import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { redisAvailable } from '../peers/redis.ts';
import { startRedisCluster } from '../peers/redis-cluster.ts';
import { openStore } from '../../src/store/open.ts';
import { storeContract } from '../store/contract.ts';
import { clientKey, startTestBroker, API, REDIRECT, type TestBroker } from '../helpers/broker.ts';
import { UserAgent, loginThroughDemo } from '../helpers/browser.ts';
import { verifyLedger } from '../../src/audit/index.ts';

// A real three-master Redis Cluster: keys that must change together share a slot (Redis itself refuses
// any script or multi-key command that spans slots), so the whole contract and a full login must pass.

describe.skipIf(!redisAvailable)('Redis Cluster with three masters', () => {
  let cluster: Awaited<ReturnType<typeof startRedisCluster>>;
  let tb: TestBroker;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    tb = await startTestBroker({ store: cluster.url, svcKey: await clientKey() });
  }, 60_000);
  afterAll(async () => {
    await tb?.close();
    await cluster?.stop();
  });

  storeContract('redis cluster (3 masters)', async () => openStore(cluster.url));

  it('a full login, refresh and the audit chain on the cluster', async () => {
    const web = await oc.discovery(new URL(tb.base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute: [oc.allowInsecureRequests] });
    const verifier = oc.randomPKCECodeVerifier();
    const url = oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid offline_access patient/Patient.rs', resource: API, prompt: 'consent', code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const back = await loginThroughDemo(new UserAgent(), url.href, 'patient', tb.base);
    const tokens = await oc.authorizationCodeGrant(web, back, { pkceCodeVerifier: verifier });
    const refreshed = await oc.refreshTokenGrant(web, tokens.refresh_token!);
    expect(refreshed.access_token).toBeTruthy();
    await expect(oc.refreshTokenGrant(web, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    await new Promise((r) => setTimeout(r, 200));
    expect(await verifyLedger(tb.broker.ledgerBackend, tb.broker.publicJwks())).toMatchObject({ ok: true });
  });
});
