import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import { SignJWT, generateKeyPair } from 'jose';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { clientKey, startTestBroker, testConfig, API, type ClientKey, type TestBroker } from '../helpers/broker.ts';
import { awayFromWindowEdge } from '../helpers/rate-window.ts';

// Rate limits on the token endpoint are shared by every instance on one Redis, per client id wherever
// the id travels (HTTP Basic, client_id or a client assertion in the body: catalogue WS-10) and per
// IP. The brokers trust X-Forwarded-For here, so each test speaks from its own addresses.

const FORM = 'application/x-www-form-urlencoded';
const PER_CLIENT = 6;
const PER_IP = 30;

describe.skipIf(!redisAvailable)('rate limits across instances', () => {
  let redis: RedisPeer;
  let a: TestBroker;
  let b: TestBroker;
  let svcKey: ClientKey;
  beforeAll(async () => {
    redis = await startRedis();
    svcKey = await clientKey();
    const clients = [
      ...testConfig(0, '', svcKey).clients!,
      { client_id: 'poster', client_secret: 'poster-secret-0123456789', token_endpoint_auth_method: 'client_secret_post' as const, grant_types: ['client_credentials' as const], resources: [API], scope: 'system/Patient.rs' },
    ];
    const extra = { trustProxy: true, clients, rateLimits: { tokenPerClient: PER_CLIENT, tokenPerIp: PER_IP, loginPerIp: 1000 } };
    a = await startTestBroker({ store: redis.url, svcKey, extra });
    b = await startTestBroker({ store: redis.url, svcKey, extra });
  }, 60_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await redis?.stop();
  });

  let lastOctet = 0;
  const freshIp = () => `198.51.100.${++lastOctet}`;

  const post = (tb: TestBroker, ip: string, body: Record<string, string>, headers: Record<string, string> = {}, path = '/token') =>
    fetch(`${tb.base}${path}`, { method: 'POST', headers: { 'content-type': FORM, 'x-forwarded-for': ip, ...headers }, body: new URLSearchParams(body) });

  const basic = (id: string, secret: string) => ({ authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` });
  const cc = { grant_type: 'client_credentials', resource: API, scope: 'system/Patient.rs' };

  const token = (tb: TestBroker, ip: string, secret = 'other-secret-0123456789') => post(tb, ip, cc, basic('other', secret));

  async function assertion(key: ClientKey['privateKey'], clientId = 'svc'): Promise<string> {
    return new SignJWT({ iss: clientId, sub: clientId, aud: a.base, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', kid: 'k-ES256' }).setIssuedAt().setExpirationTime('60s').sign(key);
  }

  async function expectSlowDown(res: Response): Promise<void> {
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await res.json()).toMatchObject({ error: 'slow_down' });
  }

  it('a client over its limit gets 429 with Retry-After, counted across both instances', async () => {
    await awayFromWindowEdge(60);
    const ip = freshIp();
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await token(a, ip)).status, (await token(b, ip)).status);
    expect(statuses.slice(0, 6)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(statuses.slice(6)).toEqual([429, 429]);
    await expectSlowDown(await token(a, ip));
  });

  it('wrong secrets count too (brute force against one client id is throttled)', async () => {
    const res = await token(a, freshIp(), 'guess-guess-guess-guess');
    expect(res.status).toBe(429);
  });

  it('WS-10 client_secret_post: secret guesses with the client id in the body are throttled per client, across instances and source addresses; then even the right secret waits', async () => {
    await awayFromWindowEdge(60);
    const right = { ...cc, client_id: 'poster', client_secret: 'poster-secret-0123456789' };
    // The body is read before oidc-provider and handed on intact: the right secret still works.
    expect((await post(a, freshIp(), right)).status).toBe(200);
    const statuses: number[] = [];
    for (let i = 0; i < PER_CLIENT - 1; i++) statuses.push((await post(i % 2 ? b : a, freshIp(), { ...right, client_secret: `guess-${i}-0123456789abcdef` })).status);
    expect(statuses).toEqual(Array(PER_CLIENT - 1).fill(401));
    await expectSlowDown(await post(b, freshIp(), { ...right, client_secret: 'guess-x-0123456789abcdef' }));
    await expectSlowDown(await post(a, freshIp(), right));
  });

  it('WS-10 private_key_jwt: forged client assertions (the client id only inside the JWT) are throttled per client; then a valid one waits too', async () => {
    await awayFromWindowEdge(60);
    const body = async (key: ClientKey['privateKey']) => ({ ...cc, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await assertion(key) });
    expect((await post(a, freshIp(), await body(svcKey.privateKey))).status).toBe(200);
    const { privateKey: wrongKey } = await generateKeyPair('ES256');
    const statuses: number[] = [];
    for (let i = 0; i < PER_CLIENT - 1; i++) statuses.push((await post(i % 2 ? b : a, freshIp(), await body(wrongKey))).status);
    expect(statuses).toEqual(Array(PER_CLIENT - 1).fill(401));
    await expectSlowDown(await post(b, freshIp(), await body(wrongKey)));
    await expectSlowDown(await post(a, freshIp(), await body(svcKey.privateKey)));
  });

  it('WS-10 PKCE verifier guesses by a public client (client_id in the body) are throttled per IP, not per client: naming a public client cannot spend the allowance of all its users', async () => {
    await awayFromWindowEdge(60);
    const guess = (i: number) => ({ grant_type: 'authorization_code', client_id: 'public-app', code: 'some-authorization-code-0123456789', redirect_uri: 'https://client.test/cb', code_verifier: `verifier-guess-${i}-${'x'.repeat(40)}` });
    const statuses: number[] = [];
    for (let i = 0; i < PER_CLIENT + 2; i++) statuses.push((await post(i % 2 ? b : a, freshIp(), guess(i))).status);
    expect(statuses).toEqual(Array(PER_CLIENT + 2).fill(400));
    // From one address, the per-IP limit still applies.
    const ip = freshIp();
    const fromOne: number[] = [];
    for (let i = 0; i < PER_IP + 1; i++) fromOne.push((await post(i % 2 ? b : a, ip, guess(100 + i))).status);
    expect(fromOne.slice(0, PER_IP)).toEqual(Array(PER_IP).fill(400));
    expect(fromOne[PER_IP]).toBe(429);
  });

  it('WS-10 the introspection and revocation endpoints count a client id in the body too', async () => {
    await awayFromWindowEdge(60);
    const statuses: number[] = [];
    for (let i = 0; i < PER_CLIENT; i++) statuses.push((await post(i % 2 ? b : a, freshIp(), { token: 'x', client_id: 'rs', client_secret: `guess-${i}-0123456789abcdef` }, {}, i % 2 ? '/token/revocation' : '/token/introspection')).status);
    expect(statuses.every((s) => s === 400 || s === 401)).toBe(true);
    await expectSlowDown(await post(a, freshIp(), { token: 'x', client_id: 'rs', client_secret: 'guess-y-0123456789abcdef' }, {}, '/token/introspection'));
  });

  it('WS-10 guesses spread over many client ids from one address are throttled per IP, across instances', async () => {
    await awayFromWindowEdge(60);
    const ip = freshIp();
    const statuses: number[] = [];
    for (let i = 0; i < PER_IP + 2; i++) statuses.push((await post(i % 2 ? b : a, ip, { ...cc, client_id: `made-up-${i}`, client_secret: 'guess-0123456789abcdef' })).status);
    expect(statuses.slice(0, PER_IP)).toEqual(Array(PER_IP).fill(401));
    expect(statuses.slice(PER_IP)).toEqual([429, 429]);
    // Another address is not affected.
    expect((await post(a, freshIp(), { ...cc, client_id: 'made-up-z', client_secret: 'guess-0123456789abcdef' })).status).toBe(401);
  });
});
