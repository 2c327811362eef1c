import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import * as oc from 'openid-client';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { freePort } from '../peers/ports.ts';
import { clientKey, testConfig } from '../helpers/broker.ts';
import { UserAgent, hiddenField } from '../helpers/browser.ts';
import { scriptedConnector } from '../helpers/scripted-connector.ts';
import { awayFromWindowEdge } from '../helpers/rate-window.ts';
import { accountSecret, apiToken, signIn, type ApiLogin, type DelegationBroker } from '../delegation/helpers.ts';

// Catalogue WS-08: brute force and abuse per account and per IP, spread over two broker instances on
// one real Redis. The broker has no passwords; what an account can guess at is an invitation code, and
// what it can churn is consent records. Both instances share one issuer (one signs in on A and calls
// B), the brokers trust X-Forwarded-For so each test speaks from its own addresses, and every answer
// over a limit is the same 429 slow_down with Retry-After (an HTML page for the account pages).

const LIMITS = { invitationAttemptsPerAccount: 5, invitationAttemptsPerIp: 8, accountPerMinute: 20, accountChangesPerHour: 10 };
const P9 = { acr: 'P9.Cp.Cd', aal: 2, proofing: 'P9' as const };

describe.skipIf(!redisAvailable)('per-account and per-IP limits on the account app, shared by two instances (WS-08)', () => {
  let redis: RedisPeer;
  const brokers: Array<{ broker: Broker; server: Server; base: string }> = [];
  const upstreamA = scriptedConnector('nhs-login');
  let t: DelegationBroker;

  beforeAll(async () => {
    redis = await startRedis();
    const [portA, portB] = [await freePort(), await freePort()];
    const svcKey = await clientKey();
    // One issuer (A's address) for both: a token from A is good on B, as behind a load balancer.
    for (const [port, connector] of [[portA, upstreamA.connector], [portB, scriptedConnector('nhs-login').connector]] as const) {
      const config = parseConfig(testConfig(portA, redis.url, svcKey, { trustProxy: true, rateLimits: LIMITS }), {});
      const broker = await createBroker(config, { log: pino({ level: 'silent' }), env: {}, connectors: [connector] });
      const server = await broker.listen(port, '127.0.0.1');
      brokers.push({ broker, server, base: `http://localhost:${(server.address() as AddressInfo).port}` });
    }
    const base = brokers[0].base;
    const execute = [oc.allowInsecureRequests];
    t = {
      ...brokers[0],
      account: await oc.discovery(new URL(base), 'broker-account', undefined, oc.ClientSecretBasic(accountSecret()), { execute }),
      web: await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute }),
      close: async () => {},
    };
  }, 60_000);
  afterAll(async () => {
    for (const b of brokers) {
      b.server.closeAllConnections();
      await b.broker.close();
    }
    await redis?.stop();
  });

  /** A P9 person signed in at A with an API token; `name` is their upstream subject (same name, same account). */
  async function person(name: string): Promise<ApiLogin> {
    upstreamA.queue.push({ subject: name, claims: { name }, assurance: P9 });
    return apiToken(t, { connector: 'nhs-login' });
  }

  let lastOctet = 0;
  const freshIp = () => `203.0.113.${++lastOctet}`;
  const on = (i: number) => brokers[i % 2].base;

  async function api(base: string, ip: string, who: ApiLogin, method: string, path: string, body?: unknown) {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${who.token}`, 'x-forwarded-for': ip, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
  }

  const invite = (who: ApiLogin, ip = freshIp(), base = on(0)) => api(base, ip, who, 'POST', '/api/delegations', { access: { scopes: ['patient/Patient.rs'] }, period: { end: new Date(Date.now() + 30 * 86_400_000).toISOString() } });
  const answer = (who: ApiLogin, code: string, ip = freshIp(), base = on(0)) => api(base, ip, who, 'POST', '/api/delegations/invitations/accept', { code });
  const guess = () => randomBytes(15).toString('base64url');

  function expectSlowDown(r: { status: number; retryAfter: string | null; body: Record<string, unknown> }, windowSeconds: number): void {
    expect(r.status).toBe(429);
    expect(Number(r.retryAfter)).toBeGreaterThan(0);
    expect(Number(r.retryAfter)).toBeLessThanOrEqual(windowSeconds);
    expect(r.body).toEqual({ error: 'slow_down', error_description: 'too many requests; try again later' });
  }

  it('WS-08 a carer guessing invitation codes is throttled per account across instances and addresses; the real code sent over the limit gets the same answer and is not used up', async () => {
    await awayFromWindowEdge(3600, 30);
    const [patient, carer, other] = [await person('ws08-patient'), await person('ws08-carer'), await person('ws08-other-carer')];
    const created = await invite(patient);
    expect(created.status).toBe(201);
    const code = String(created.body.code);
    const id = String((created.body.delegation as { id: string }).id);

    // Each guess from another address, alternately on A and B: only the account ties them together.
    const statuses: number[] = [];
    for (let i = 0; i < LIMITS.invitationAttemptsPerAccount; i++) statuses.push((await answer(carer, guess(), freshIp(), on(i))).status);
    expect(statuses).toEqual(Array(LIMITS.invitationAttemptsPerAccount).fill(404));
    const wrong = await answer(carer, guess(), freshIp(), on(1));
    expectSlowDown(wrong, 3600);
    // The real code now: the same answer (nothing tells a guesser it was right), and the code survives.
    const right = await answer(carer, code, freshIp(), on(0));
    expectSlowDown(right, 3600);
    expect(right.body).toEqual(wrong.body);
    expect((await api(on(1), freshIp(), patient, 'GET', `/api/delegations/${id}`)).body).toMatchObject({ id, status: 'proposed' });
    // Still single use and still valid: another account (not limited) can answer it.
    const accepted = await answer(other, code, freshIp(), on(1));
    expect(accepted.status).toBe(200);
    expect(accepted.body).toMatchObject({ id, status: 'active' });
  }, 90_000);

  it('WS-08 the account pages answer the same limit with a 429 page and Retry-After (the carer over the limit, signed in with a browser)', async () => {
    upstreamA.queue.push({ subject: 'ws08-carer', claims: { name: 'ws08-carer' }, assurance: P9 });
    const ua = new UserAgent();
    const start = await ua.get(`${t.base}/account/invitations/accept`);
    const callback = await signIn(ua, t, new URL(start.headers.get('location')!, t.base).href, { connector: 'nhs-login' }, `${t.base}/account/callback`);
    expect((await ua.get(callback.href)).status).toBe(303);
    const form = await ua.get(`${t.base}/account/invitations/accept`);
    expect(form.status).toBe(200);
    const res = await ua.postForm(`${t.base}/account/invitations/accept`, { csrf: hiddenField(await form.text(), 'csrf'), code: guess(), answer: 'accept' });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    expect(await res.text()).toContain('Too many attempts');
  }, 60_000);

  it('WS-08 invitation attempts are also throttled per IP, whichever accounts they come from', async () => {
    await awayFromWindowEdge(3600, 30);
    const ip = freshIp();
    const people = [await person('ws08-ip-1'), await person('ws08-ip-2'), await person('ws08-ip-3')];
    const statuses: number[] = [];
    // Four each from two accounts (both under their own limit of five): eight from this address.
    for (let i = 0; i < LIMITS.invitationAttemptsPerIp; i++) statuses.push((await answer(people[i % 2], guess(), ip, on(i))).status);
    expect(statuses).toEqual(Array(LIMITS.invitationAttemptsPerIp).fill(404));
    // A third account from the same address is refused; from elsewhere it is not.
    expectSlowDown(await answer(people[2], guess(), ip, on(1)), 3600);
    expect((await answer(people[2], guess(), freshIp(), on(0))).status).toBe(404);
    // The limit stands before sign-in: the form post from that address, even without a session, is refused as a page.
    const page = await fetch(`${on(0)}/account/invitations/accept`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', 'x-forwarded-for': ip }, body: 'code=x&answer=accept' });
    expect(page.status).toBe(429);
    expect(await page.text()).toContain('Too many attempts');
  }, 90_000);

  it('WS-08 every account API call counts per account (20 a minute here) on both instances; other accounts are unaffected', async () => {
    const [busy, calm] = [await person('ws08-busy'), await person('ws08-calm')];
    await awayFromWindowEdge(60);
    const statuses: number[] = [];
    for (let i = 0; i < LIMITS.accountPerMinute; i++) statuses.push((await api(on(i), freshIp(), busy, 'GET', '/api/delegations')).status);
    expect(statuses).toEqual(Array(LIMITS.accountPerMinute).fill(200));
    expectSlowDown(await api(on(0), freshIp(), busy, 'GET', '/api/delegations'), 60);
    expect((await api(on(1), freshIp(), calm, 'GET', '/api/delegations')).status).toBe(200);
  }, 60_000);

  it('WS-08 consent changes count per account per hour; a refused change creates nothing', async () => {
    await awayFromWindowEdge(3600, 30);
    const patient = await person('ws08-prolific');
    const statuses: number[] = [];
    for (let i = 0; i < LIMITS.accountChangesPerHour; i++) statuses.push((await invite(patient, freshIp(), on(i))).status);
    expect(statuses).toEqual(Array(LIMITS.accountChangesPerHour).fill(201));
    expectSlowDown(await invite(patient, freshIp(), on(1)), 3600);
    const list = await api(on(0), freshIp(), patient, 'GET', '/api/delegations');
    expect((list.body.asPatient as unknown[]).length).toBe(LIMITS.accountChangesPerHour);
  }, 60_000);
});
