import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { startBrokerProcess, type BrokerProcess } from '../peers/broker-process.ts';
import { startSwitchProxy, type SwitchProxy } from '../peers/switch-proxy.ts';
import { freePort } from '../peers/ports.ts';
import { clientKey, REDIRECT, testConfig } from '../helpers/broker.ts';
import { UserAgent, followToClient, hiddenField, location, loginThroughDemo } from '../helpers/browser.ts';

// A broker node killed (SIGKILL) in the middle of something, with a load balancer moving the traffic to
// the other node on the same Redis. HA-07: mid-login, while the user is at the upstream; the callback
// lands on the survivor and the login completes, as nothing of it lived in the dead process. HA-08: after
// the token endpoint consumed the code and stored the tokens but before the response left (held back by
// test/peers/hold-token-response.ts); the client's retry on the survivor is invalid_grant, and that reuse
// revokes the grant the dead node created, so nothing the client never received stays usable.

const webBasic = `Basic ${Buffer.from('web:web-secret-0123456789').toString('base64')}`;
const rsBasic = `Basic ${Buffer.from('rs:rs-secret-0123456789ab').toString('base64')}`;
const FORM = 'application/x-www-form-urlencoded';

describe.skipIf(!redisAvailable)('a broker node killed mid-flow, the other node on the same Redis takes over', () => {
  let redis: RedisPeer;
  let proxy: SwitchProxy;
  let base: string;
  let dir: string;
  let config: Record<string, unknown>;
  let b: BrokerProcess;
  const started: BrokerProcess[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    dir = mkdtempSync(join(tmpdir(), 'node-kill-'));
    const proxyPort = await freePort();
    base = `http://localhost:${proxyPort}`;
    config = { ...testConfig(proxyPort, redis.url, await clientKey(), { issuer: base, logLevel: 'error', rateLimits: { tokenPerIp: 0, tokenPerClient: 0, loginPerIp: 0 } }) };
    delete config.port;
    // The survivor starts first and creates the signing keys; each test's node A loads them.
    b = await startBrokerProcess(config, dir, await freePort());
    started.push(b);
    proxy = await startSwitchProxy(proxyPort, b.port);
  }, 60_000);
  afterAll(async () => {
    await proxy?.close();
    // A killed node has already gone (and its exit event with it).
    await Promise.all(started.filter((p) => p.child.exitCode === null && p.child.signalCode === null).map((p) => p.stop()));
    await redis?.stop();
  });

  async function startA(env: Record<string, string> = {}): Promise<BrokerProcess> {
    const a = await startBrokerProcess(config, dir, await freePort(), env);
    started.push(a);
    proxy.target = a.port;
    return a;
  }
  async function killA(a: BrokerProcess): Promise<void> {
    await a.stop('SIGKILL');
    expect(a.child.signalCode).toBe('SIGKILL');
    proxy.target = b.port;
  }
  function authorization(scope: string, extra: Record<string, string> = {}) {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const url = `${base}/auth?${new URLSearchParams({ client_id: 'web', response_type: 'code', redirect_uri: REDIRECT, scope, resource: 'https://api.test', code_challenge: challenge, code_challenge_method: 'S256', state: 's', nonce: 'n', ...extra })}`;
    return { url, verifier };
  }
  const post = (path: string, auth: string, params: Record<string, string>) => fetch(`${base}${path}`, { method: 'POST', headers: { authorization: auth, 'content-type': FORM }, body: new URLSearchParams(params) });
  const redeem = (code: string, verifier: string) => post('/token', webBasic, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier });
  const introspect = async (token: string) => ((await (await post('/token/introspection', rsBasic, { token })).json()) as { active: boolean }).active;

  it('HA-07 node A killed while the user is at the upstream: the callback on node B completes the login and the code is redeemed there', async () => {
    const a = await startA();
    const ua = new UserAgent();
    const { url, verifier } = authorization('openid patient/Patient.rs');
    // On A: authorize, the chooser, the choice of upstream, and the upstream's page (state and secret).
    let res = await ua.get(url);
    const interaction = location(res, base);
    const chooser = await (await ua.get(interaction)).text();
    const uid = new URL(interaction).pathname.split('/').pop()!;
    res = await ua.postForm(`${base}/interaction/${uid}/login`, { csrf: hiddenField(chooser, 'csrf'), upstream: 'demo' });
    const upstreamPage = await (await ua.get(location(res, base))).text();
    expect(proxy.served.slice(-4)).toEqual([a.port, a.port, a.port, a.port]);

    await killA(a);
    const servedBefore = proxy.served.length;
    // On B: the upstream's callback, the rest of the interaction, the code exchange.
    res = await ua.postForm(`${base}/upstream/demo/callback`, { state: hiddenField(upstreamPage, 'state'), secret: hiddenField(upstreamPage, 'secret'), persona: 'patient' });
    const back = await followToClient(ua, res, base);
    expect(back.origin + back.pathname).toBe(REDIRECT);
    expect(back.searchParams.get('error')).toBeNull();
    const code = back.searchParams.get('code');
    expect(code).toBeTruthy();
    const token = await redeem(code!, verifier);
    expect(token.status).toBe(200);
    expect((await token.json()) as object).toMatchObject({ id_token: expect.any(String), access_token: expect.any(String) });
    expect(new Set(proxy.served.slice(servedBefore))).toEqual(new Set([b.port]));
  }, 60_000);

  it('HA-08 node A killed after consuming the code, before its token response left: the retry on node B is invalid_grant and the lost tokens are revoked', async () => {
    const heldFile = join(dir, 'held-token-response.json');
    const a = await startA({ NODE_OPTIONS: `--import=${resolve('test/peers/hold-token-response.ts')}`, HOLD_TOKEN_RESPONSE_FILE: heldFile });
    const { url, verifier } = authorization('openid offline_access patient/Patient.rs', { prompt: 'consent' });
    const code = (await loginThroughDemo(new UserAgent(), url, 'patient', base)).searchParams.get('code')!;
    expect(code).toBeTruthy();

    const lost = redeem(code, verifier);
    for (let i = 0; i < 200 && !a.output().includes('TOKEN_RESPONSE_HELD'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(a.output()).toContain('TOKEN_RESPONSE_HELD');
    await killA(a);
    const first = await lost;
    // The load balancer's answer for a node that died mid-request: no tokens reached the client.
    expect(first.status).toBe(502);
    expect(await first.text()).not.toContain('access_token');

    // What the dead node created and never delivered: live until the client retries.
    const held = JSON.parse(readFileSync(heldFile, 'utf8')) as { access_token: string; refresh_token?: string };
    expect(held.refresh_token).toBeTruthy();
    expect(await introspect(held.access_token)).toBe(true);
    const probe = new Redis(redis.port, '127.0.0.1');
    const refreshRecords = () => probe.keys('broker:oidc:{RefreshToken:*');
    try {
      expect(await refreshRecords()).toHaveLength(1);

      // The client retries, on B: invalid_grant, twice, and no token is ever issued for this code again.
      for (let i = 0; i < 2; i++) {
        const retry = await redeem(code, verifier);
        expect(retry.status).toBe(400);
        expect(await retry.json()).toMatchObject({ error: 'invalid_grant' });
      }
      // The reuse revoked the grant: the tokens of the lost response are dead, none is left in the store.
      expect(await introspect(held.access_token)).toBe(false);
      const refresh = await post('/token', webBasic, { grant_type: 'refresh_token', refresh_token: held.refresh_token! });
      expect(refresh.status).toBe(400);
      expect(await refresh.json()).toMatchObject({ error: 'invalid_grant' });
      expect(await refreshRecords()).toEqual([]);
    } finally {
      probe.disconnect();
    }
  }, 60_000);
});
