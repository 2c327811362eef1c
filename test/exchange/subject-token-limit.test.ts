// Catalogue TX-16: the same subject_token exchanged 1,000 times at once. The broker issues no more than
// the per-token limit, answers the rest 429 slow_down with Retry-After, audits the flood once, and every
// token it did issue is tied to the subject's grant, so revoking that grant ends them all.
import { request, Agent } from 'node:http';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import * as oc from 'openid-client';
import { tokenRef } from '../../src/oidc/grants/token-exchange/verify.ts';
import { API2, AT, TE, introspect, login, startFixture, type Fixture } from './helpers.ts';
import { awayFromWindowEdge } from '../helpers/rate-window.ts';

const LIMIT = 10;
const FLOOD = 1000;

let f: Fixture;
beforeAll(async () => {
  f = await startFixture({ rateLimits: { exchangePerSubjectToken: LIMIT } });
}, 60_000);
afterAll(async () => {
  await f?.close();
});

interface Answer {
  status: number;
  retryAfter?: string;
  body: Record<string, unknown>;
}

// All requests are in flight at once; the client keeps at most 128 sockets open (a portable file
// descriptor budget), the rest wait in its queue.
const agent = new Agent({ keepAlive: true, maxSockets: 128 });

async function exchangeOnce(subjectToken: string): Promise<Answer> {
  const assertion = await new SignJWT({ iss: 'svc', sub: 'svc', aud: f.base, jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuedAt()
    .setExpirationTime('60s')
    .sign(f.svcKey.privateKey);
  const body = new URLSearchParams({
    grant_type: TE,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
    subject_token: subjectToken,
    subject_token_type: AT,
    resource: API2,
    scope: 'patient/Patient.rs',
  }).toString();
  return new Promise((resolve, reject) => {
    const req = request(`${f.base}/token`, { method: 'POST', agent, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('one subject token exchanged over and over (TX-16)', () => {
  it('TX-16 1,000 concurrent exchanges of one subject_token: the limit is issued, the rest get 429 slow_down with Retry-After, audited once; revoking the grant ends every issued token', async () => {
    const user = await login(f, 'flood-user');
    await awayFromWindowEdge(60);
    const answers = await Promise.all(Array.from({ length: FLOOD }, () => exchangeOnce(user.access)));

    const issued = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status !== 200);
    expect(issued).toHaveLength(LIMIT);
    expect(refused).toHaveLength(FLOOD - LIMIT);
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(Number(r.retryAfter)).toBeGreaterThan(0);
      expect(Number(r.retryAfter)).toBeLessThanOrEqual(60);
      expect(r.body).toMatchObject({ error: 'slow_down' });
    }

    // A flood is one audit entry (the first refusal of the window), naming the token by reference only.
    const rateDenials = async () => (await f.broker.ledger.query({ type: 'token.exchanged', order: 'desc', limit: 2000 })).filter((e) => e.details.check === 'rate_limit');
    for (let i = 0; i < 50 && (await rateDenials()).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    const denials = await rateDenials();
    expect(denials).toHaveLength(1);
    expect(denials[0]).toMatchObject({ outcome: 'failure', client: 'svc', details: { decision: 'deny', error: 'slow_down', subject_ref: tokenRef(user.access) } });
    expect(JSON.stringify(denials[0])).not.toContain(user.access);

    // The counter is named by the token's hash (the store never holds the token): the next hit counts on.
    expect((await f.broker.store.rateLimits.hit(`exchange-subject|${tokenRef(user.access)}`, 60)).count).toBe(FLOOD + 1);

    // Every issued token is live and derives from the user's grant...
    const tokens = issued.map((a) => String(a.body.access_token));
    expect(new Set(tokens).size).toBe(LIMIT);
    for (const token of tokens) expect(await introspect(f, token)).toMatchObject({ active: true, sub: user.sub, act: { sub: 'svc' } });
    // ...so revoking that grant (the web client revokes its refresh token) ends all of them.
    await oc.tokenRevocation(f.web, user.tokens.refresh_token!);
    for (const token of tokens) expect(await introspect(f, token)).toEqual({ active: false });
  }, 120_000);

  it('TX-16 another subject token (same user, new login) is counted on its own', async () => {
    const first = await login(f, 'two-tokens');
    const second = await login(f, 'two-tokens');
    await awayFromWindowEdge(60);
    const a = await Promise.all(Array.from({ length: LIMIT + 2 }, () => exchangeOnce(first.access)));
    expect(a.filter((x) => x.status === 429)).toHaveLength(2);
    const b = await exchangeOnce(second.access);
    expect(b.status).toBe(200);
  }, 60_000);
});
