import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API, clientKey, startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { apiToken, startDelegationBroker, type ApiLogin, type DelegationBroker } from '../delegation/helpers.ts';

// Issue 9, "large and deep inputs": oversized headers and bodies, deeply nested JSON and huge JWTs are
// refused early with a 4xx, never a 5xx, never a hang. (Huge JWKS: test/exchange/jwks-limits.test.ts;
// XML entity expansion and deep XML at the SAML ACS: test/providers/saml/hostile.test.ts.)

const ADMIN = 'admin-token-0123456789-0123456789-abcdef';
const basic = `Basic ${Buffer.from('other:other-secret-0123456789').toString('base64')}`;
const FORM = 'application/x-www-form-urlencoded';

/** A raw request with Node's client: fetch refuses some of these shapes on the client side. */
function raw(base: string, path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; body: string; ms: number }> {
  const t0 = Date.now();
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: Date.now() - t0 }));
    });
    // The server may answer (413/431) and close before the whole body is sent.
    req.on('error', (err) => reject(err));
    if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}

/**
 * Sends a GET with one oversized header over a bare socket and returns the status line's code. Node
 * answers 431 and closes while the client may still be writing, so a reset after the answer is normal;
 * a reset before any answer is reported as status 0.
 */
function oversizedHeader(base: string, path: string, name: string, value: string): Promise<{ status: number; ms: number }> {
  const t0 = Date.now();
  const url = new URL(base);
  return new Promise((resolve) => {
    let data = '';
    const socket = connect(Number(url.port), url.hostname === 'localhost' ? '127.0.0.1' : url.hostname);
    const done = () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0), ms: Date.now() - t0 });
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (data += c));
    socket.on('error', done);
    socket.on('close', done);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\n${name}: `);
    // Write the value in pieces so Node sees the limit crossed and answers before the headers end.
    const piece = 8192;
    let at = 0;
    const next = () => {
      if (socket.destroyed) return;
      if (at >= value.length) {
        socket.write('\r\n\r\n');
        return;
      }
      socket.write(value.slice(at, (at += piece)), next);
    };
    next();
  });
}

/** A syntactically JWT-shaped string of about `bytes` bytes. */
function hugeJwt(bytes: number): string {
  const header = Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: 'k' })).toString('base64url');
  return `${header}.${Buffer.from(JSON.stringify({ sub: 'x', pad: 'x'.repeat(bytes) })).toString('base64url')}.${'A'.repeat(86)}`;
}

function expectRefused(res: { status: number; ms: number }, allowed: number[], what: string): void {
  expect(allowed, `${what}: status ${res.status}`).toContain(res.status);
  expect(res.ms, `${what}: answered in ${res.ms} ms`).toBeLessThan(3000);
}

describe('large and deep inputs are refused early, never a 5xx', () => {
  let tb: TestBroker;
  let dt: DelegationBroker;
  let patient: ApiLogin;

  beforeAll(async () => {
    tb = await startTestBroker({ svcKey: await clientKey(), extra: { exchange: { adminToken: ADMIN } } });
    dt = await startDelegationBroker();
    patient = await apiToken(dt, { persona: 'patient' });
  }, 30_000);
  afterAll(async () => {
    await tb?.close();
    await dt?.close();
  });

  it('a header over 16 KiB -> 431 from Node (before any route runs)', async () => {
    for (const path of ['/token', '/.well-known/openid-configuration', '/api/delegations', '/admin/exchange/explain']) {
      expectRefused(await oversizedHeader(tb.base, path, 'x-filler', 'a'.repeat(20 * 1024)), [431], `x-filler on ${path}`);
    }
    // A 1 MB bearer token or a 64 KiB cookie is a header too.
    expectRefused(await oversizedHeader(dt.base, '/api/delegations', 'authorization', `Bearer ${hugeJwt(1024 * 1024)}`), [431], '1 MB bearer');
    expectRefused(await oversizedHeader(tb.base, '/auth', 'cookie', `_session=${'a'.repeat(64 * 1024)}`), [431], '64 KiB cookie');
    // Control: the same route with normal headers answers normally.
    expect((await raw(tb.base, '/.well-known/openid-configuration')).status).toBe(200);
  });

  it('a 5 MB body to /token, /api/delegations and /admin/exchange/explain -> 413 (or 400)', async () => {
    const form = `grant_type=client_credentials&scope=${'a'.repeat(5 * 1024 * 1024)}`;
    expectRefused(await raw(tb.base, '/token', { method: 'POST', headers: { authorization: basic, 'content-type': FORM }, body: form }), [400, 413], '/token');
    const json = JSON.stringify({ access: { level: 1 }, pad: 'x'.repeat(5 * 1024 * 1024) });
    expectRefused(await raw(dt.base, '/api/delegations', { method: 'POST', headers: { authorization: `Bearer ${patient.token}`, 'content-type': 'application/json' }, body: json }), [400, 413], '/api/delegations');
    expectRefused(await raw(tb.base, '/admin/exchange/explain', { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: json }), [400, 413], '/admin/exchange/explain');
  });

  it('deeply nested JSON (100,000 levels, and 30,000 within the size limit) -> 400 (or 413 when over the limit)', async () => {
    const cases: [string, number[]][] = [
      ['['.repeat(100_000) + ']'.repeat(100_000), [400, 413]],
      ['['.repeat(100_000), [400, 413]],
      ['['.repeat(30_000) + ']'.repeat(30_000), [400]],
      ['{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000), [400]],
    ];
    for (const [body, allowed] of cases) {
      const label = `${body.slice(0, 5)}… (${body.length} bytes)`;
      const d = await raw(dt.base, '/api/delegations', { method: 'POST', headers: { authorization: `Bearer ${patient.token}`, 'content-type': 'application/json' }, body });
      expectRefused(d, allowed, `/api/delegations ${label}`);
      const x = await raw(tb.base, '/admin/exchange/explain', { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body });
      expectRefused(x, allowed, `/admin/exchange/explain ${label}`);
    }
    // Nothing was created by any of them.
    expect(await dt.broker.delegation.listForPatient(patient.accountId)).toEqual([]);
  });

  it('a 1 MB JWT as subject_token, client_assertion or token -> 4xx quickly; a 48 KiB one (under the body limit) too', async () => {
    for (const size of [1024 * 1024, 48 * 1024]) {
      const jwt = hugeJwt(size);
      const exchange = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: jwt, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', resource: API });
      expectRefused(await raw(tb.base, '/token', { method: 'POST', headers: { authorization: basic, 'content-type': FORM }, body: exchange.toString() }), [400, 401, 413], `subject_token ${size}`);
      const assertion = new URLSearchParams({ grant_type: 'client_credentials', client_id: 'svc', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: jwt, resource: API, scope: 'system/Patient.rs' });
      expectRefused(await raw(tb.base, '/token', { method: 'POST', headers: { 'content-type': FORM }, body: assertion.toString() }), [400, 401, 413], `client_assertion ${size}`);
      for (const path of ['/token/introspection', '/token/revocation']) {
        const res = await raw(tb.base, path, { method: 'POST', headers: { authorization: `Basic ${Buffer.from('rs:rs-secret-0123456789ab').toString('base64')}`, 'content-type': FORM }, body: new URLSearchParams({ token: jwt }).toString() });
        // Introspection of an unknown token is 200 {active:false} and revocation of one is 200 by RFC
        // 7009, when the body is within the limit: never a 5xx, never active.
        expectRefused(res, size > 64 * 1024 ? [400, 413] : [200, 400, 413], `${path} ${size}`);
        if (res.status === 200 && path.endsWith('introspection')) expect(JSON.parse(res.body)).toEqual({ active: false });
      }
    }
  });
});
