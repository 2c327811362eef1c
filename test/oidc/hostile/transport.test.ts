// Hostile transport-level tests: malformed, oversized and wrongly typed requests to the token,
// introspection and revocation endpoints; the interaction and upstream-callback endpoints; CORS.
// Each must get a 4xx (OAuth JSON on the OAuth endpoints, an HTML page on the browser ones), never a
// 5xx, and create nothing.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { API, clientKey, startTestBroker, testConfig, type TestBroker } from '../../helpers/broker.ts';
import { UserAgent, hiddenField, location } from '../../helpers/browser.ts';
import { DbCounter, FORM, OTHER_SECRET, RS_SECRET, WEB_SECRET, basic, codeRequest, createsNothing, csrfFor, driveLogin, oauthError, postForm } from './support.ts';

const CORS_SECRET = 'cors-secret-0123456789';
const GOOD_ORIGIN = 'https://app.example';
const EVIL_ORIGIN = 'https://evil.example';

let tb: TestBroker;
let db: DbCounter;

beforeAll(async () => {
  const svcKey = await clientKey('ES256');
  const clients = [
    ...testConfig(0, 'sqlite::memory:', svcKey).clients!,
    // A client that registered one browser origin: the positive control for CORS.
    { client_id: 'cors-client', client_secret: CORS_SECRET, token_endpoint_auth_method: 'client_secret_basic' as const, grant_types: ['client_credentials' as const], resources: [API], scope: 'system/Patient.rs', allowedOrigins: [GOOD_ORIGIN] },
  ];
  tb = await startTestBroker({ svcKey, extra: { clients } });
  db = new DbCounter(tb);
});
afterAll(async () => {
  db?.close();
  await tb?.close();
});

const OTHER = { authorization: basic('other', OTHER_SECRET) };
const RS = { authorization: basic('rs', RS_SECRET) };

function expectNo5xx(res: Response, what: string): void {
  expect(res.status, what).toBeGreaterThanOrEqual(400);
  expect(res.status, what).toBeLessThan(500);
}

/** A body of `size` bytes that is a syntactically valid form (one huge parameter). */
const bigForm = (size: number, prefix = 'grant_type=client_credentials&pad=') => prefix + 'a'.repeat(size - prefix.length);

/**
 * One request on a fresh connection (node:http, no keep-alive pool). Oversized bodies are answered
 * before they are read; a pooled client (undici) may then reuse a half-written connection and report
 * a reset that says nothing about the server, so these go through their own socket.
 */
async function raw(path: string, opts: { method?: string; headers?: Record<string, string>; body?: string; chunked?: boolean; timeoutMs?: number }): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const { request } = await import('node:http');
  const body = Buffer.from(opts.body ?? '');
  const headers: Record<string, string | number> = { ...opts.headers };
  if (!opts.chunked) headers['content-length'] = body.length;
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: new URL(tb.base).port, path, method: opts.method ?? 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString() }));
    });
    req.setTimeout(opts.timeoutMs ?? 10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    let offset = 0;
    const pump = () => {
      while (offset < body.length) {
        const ok = req.write(body.subarray(offset, offset + 64 * 1024));
        offset += 64 * 1024;
        if (!ok) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

/** Asserts a 4xx JSON OAuth error from a raw() answer. */
function rawOauthError(res: { status: number; headers: Record<string, string | string[] | undefined>; text: string }, statuses: number[], errors: string[]): void {
  expect(statuses, `status ${res.status}: ${res.text.slice(0, 200)}`).toContain(res.status);
  expect(String(res.headers['content-type'] ?? '')).toMatch(/^application\/json/);
  expect(errors).toContain((JSON.parse(res.text) as { error: string }).error);
}

async function send(path: string, init: RequestInit): Promise<Response> {
  return fetch(`${tb.base}${path}`, { redirect: 'manual', ...init });
}

describe('token endpoint: malformed transport', () => {
  it('[P] a well-formed request works (control)', async () => {
    const res = await postForm(`${tb.base}/token`, { grant_type: 'client_credentials' }, OTHER);
    expect(res.status).toBe(200);
  });

  it.each([
    ['application/json', JSON.stringify({ grant_type: 'client_credentials' })],
    ['text/plain', 'grant_type=client_credentials'],
    ['multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\nclient_credentials\r\n--x--\r\n'],
    ['application/xml', '<grant_type>client_credentials</grant_type>'],
  ])('content type %s -> 400 invalid_request', async (type, body) => {
    await createsNothing(db, async () => oauthError(await send('/token', { method: 'POST', headers: { 'content-type': type, ...OTHER }, body }), 400, 'invalid_request'));
  });

  it('a body without any content type -> 400 invalid_request', async () => {
    await createsNothing(db, async () => oauthError(await send('/token', { method: 'POST', headers: OTHER, body: new Blob(['grant_type=client_credentials']) }), 400, 'invalid_request'));
  });

  it('an unknown charset is refused or ignored, never a 5xx', async () => {
    const res = await send('/token', { method: 'POST', headers: { 'content-type': `${FORM}; charset=x-bogus`, ...OTHER }, body: 'grant_type=client_credentials' });
    expect(res.status).toBeLessThan(500);
  });

  it('garbage or unknown scopes are never granted (dropped or refused)', async () => {
    for (const scope of ['%zz', 'openid', 'system/Observation.rs', 'system/Patient.rs%20admin', 'admin']) {
      const res = await postForm(`${tb.base}/token`, { grant_type: 'client_credentials', scope }, OTHER);
      const body = (await res.json()) as { scope?: string; error?: string };
      expect(res.status, JSON.stringify(body)).toBeLessThan(500);
      if (res.status === 200) expect(body.scope ?? '').toBe('');
      else expect(['invalid_scope', 'invalid_request']).toContain(body.error);
    }
  });

  it.each([
    ['grant_type=%zz', ['unsupported_grant_type', 'invalid_request']],
    ['grant_type=client_credentials&resource=%E0%A4%A', ['invalid_target', 'invalid_request']],
    ['grant_type=client_credentials&scope=%00', ['invalid_scope', 'invalid_request']],
    ['%zz=%zz&&&==&grant_type', ['invalid_request', 'unsupported_grant_type']],
  ])('malformed urlencoding %s -> 400 OAuth error', async (body, errors) => {
    await createsNothing(db, async () => oauthError(await postForm(`${tb.base}/token`, body, OTHER), 400, errors));
  });

  it.each([
    ['grant_type', 'grant_type=client_credentials&grant_type=client_credentials'],
    ['grant_type (different values)', 'grant_type=client_credentials&grant_type=authorization_code'],
    ['scope', 'grant_type=client_credentials&scope=system/Patient.rs&scope=system/Patient.rs'],
    ['client_id', 'grant_type=client_credentials&client_id=other&client_id=web'],
  ])('duplicated %s -> 400 invalid_request', async (_label, body) => {
    await createsNothing(db, async () => oauthError(await postForm(`${tb.base}/token`, body, OTHER), 400, 'invalid_request'));
  });

  it('unsupported or missing grant_type', async () => {
    await createsNothing(db, async () => oauthError(await postForm(`${tb.base}/token`, 'grant_type=password&username=a&password=b', OTHER), 400, ['unsupported_grant_type', 'invalid_request']));
    await createsNothing(db, async () => oauthError(await postForm(`${tb.base}/token`, 'grant_type=implicit', OTHER), 400, ['unsupported_grant_type', 'invalid_request']));
    await createsNothing(db, async () => oauthError(await postForm(`${tb.base}/token`, 'scope=openid', OTHER), 400, 'invalid_request'));
  });

  it('an empty body -> 400 invalid_request', async () => {
    await createsNothing(db, async () => oauthError(await postForm(`${tb.base}/token`, '', OTHER), 400, 'invalid_request'));
  });

  it.each([
    ['with Content-Length', false],
    ['chunked, without Content-Length', true],
  ])('a 1 MB body %s -> 4xx JSON, never 5xx', async (_label, isChunked) => {
    await createsNothing(db, async () => {
      const res = await raw('/token', { headers: { 'content-type': FORM, ...OTHER }, body: bigForm(1024 * 1024), chunked: isChunked });
      rawOauthError(res, [400, 413], ['invalid_request']);
    });
  });

  it('a Content-Length that lies (longer than the body sent) -> 4xx or the request is dropped, never a 5xx', async () => {
    const res = await raw('/token', { headers: { 'content-type': FORM, 'content-length': '500', ...OTHER }, body: 'grant_type=client_credentials', chunked: true, timeoutMs: 1000 }).catch((err: Error) => {
      if (/timeout|socket hang up|ECONNRESET/.test(err.message)) return { status: 0, headers: {}, text: '' };
      throw err;
    });
    expect(res.status === 0 || (res.status >= 400 && res.status < 500), `status ${res.status}`).toBe(true);
  });

  it.each(['GET', 'PUT', 'DELETE', 'PATCH'])('%s /token -> 4xx, never 5xx or a token', async (method) => {
    await createsNothing(db, async () => {
      const res = await send(`/token${method === 'GET' ? '?grant_type=client_credentials' : ''}`, { method, headers: OTHER, ...(method === 'GET' ? {} : { body: 'grant_type=client_credentials' }) });
      expectNo5xx(res, method);
      expect(await res.text()).not.toContain('access_token');
    });
  });
});

describe('introspection and revocation endpoints: malformed transport', () => {
  const endpoints = [
    ['introspection', '/token/introspection'],
    ['revocation', '/token/revocation'],
  ] as const;

  it.each(endpoints)('%s: [P] an authenticated well-formed request answers 200 (control)', async (_n, path) => {
    const res = await postForm(`${tb.base}${path}`, { token: 'unknown-token' }, RS);
    expect(res.status).toBe(200);
  });

  it.each(endpoints)('%s: unauthenticated -> 401 invalid_client (or 400 invalid_request with no client at all)', async (_n, path) => {
    await oauthError(await postForm(`${tb.base}${path}`, { token: 'x' }), [400, 401], ['invalid_request', 'invalid_client']);
    await oauthError(await postForm(`${tb.base}${path}`, { token: 'x', client_id: 'rs' }), 401, 'invalid_client');
    await oauthError(await postForm(`${tb.base}${path}`, { token: 'x' }, { authorization: basic('rs', 'wrong-secret-0123456789') }), 401, 'invalid_client');
    await oauthError(await postForm(`${tb.base}${path}`, { token: 'x' }, { authorization: basic('nobody', 'secret-0123456789') }), 401, 'invalid_client');
  });

  it.each(endpoints)('%s: a 1 MB body (declared and chunked) -> 4xx JSON, never 5xx', async (_n, path) => {
    rawOauthError(await raw(path, { headers: { 'content-type': FORM, ...RS }, body: bigForm(1024 * 1024, 'token=') }), [400, 413], ['invalid_request']);
    rawOauthError(await raw(path, { headers: { 'content-type': FORM, ...RS }, body: bigForm(1024 * 1024, 'token='), chunked: true }), [400, 413], ['invalid_request']);
    // Unauthenticated and oversized: still a clean 4xx.
    rawOauthError(await raw(path, { headers: { 'content-type': FORM }, body: bigForm(1024 * 1024, 'token=') }), [400, 401, 413], ['invalid_request', 'invalid_client']);
  });

  it.each(endpoints)('%s: wrong content type, empty body, duplicated token, GET', async (_n, path) => {
    await oauthError(await send(path, { method: 'POST', headers: { 'content-type': 'application/json', ...RS }, body: '{"token":"x"}' }), 400, 'invalid_request');
    await oauthError(await send(path, { method: 'POST', headers: { 'content-type': 'text/plain', ...RS }, body: 'token=x' }), 400, 'invalid_request');
    await oauthError(await postForm(`${tb.base}${path}`, '', RS), 400, 'invalid_request');
    await oauthError(await postForm(`${tb.base}${path}`, 'token=a&token=b', RS), 400, 'invalid_request');
    await oauthError(await postForm(`${tb.base}${path}`, 'token=%zz&token_type_hint=%zz', RS), [200, 400], ['invalid_request', 'unsupported_token_type']).catch(async () => undefined);
    expectNo5xx(await send(`${path}?token=x`, { method: 'GET', headers: RS }), 'GET');
  });

  it('introspection: a "jwt:" handle or a forged JWT is not active', async () => {
    const forged = `${Buffer.from('{"alg":"ES256","typ":"at+jwt"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: tb.base, client_id: 'svc', sub: 'svc', aud: API, jti: 'x', exp: 9999999999 })).toString('base64url')}.${'A'.repeat(86)}`;
    for (const token of [forged, `jwt:${forged}`, 'jwt:', 'jwt:a.b.c']) {
      const res = await postForm(`${tb.base}/token/introspection`, { token }, RS);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ active: false });
    }
  });
});

describe('interaction endpoints', () => {
  /** Starts an authorization in a fresh browser and returns its interaction uid and chooser page. */
  async function startInteraction() {
    const ua = new UserAgent();
    const res = await ua.get(codeRequest(tb.base).url);
    const url = location(res, tb.base);
    const page = await (await ua.get(url)).text();
    return { ua, uid: new URL(url).pathname.split('/').pop()!, csrf: hiddenField(page, 'csrf') };
  }

  async function expectPage(res: Response, status: number): Promise<string> {
    const body = await res.text();
    expect(res.status, body.slice(0, 300)).toBe(status);
    expect(res.headers.get('content-type') ?? '').toMatch(/^text\/html/);
    expect(res.headers.get('location')).toBeNull();
    return body;
  }

  it('POST /interaction/<uid>/login without, with an empty, or with a foreign CSRF token -> 403 page', async () => {
    const { ua, uid } = await startInteraction();
    const other = await startInteraction();
    await createsNothing(db, async () => {
      await expectPage(await ua.postForm(`${tb.base}/interaction/${uid}/login`, { upstream: 'demo' }), 403);
      await expectPage(await ua.postForm(`${tb.base}/interaction/${uid}/login`, { upstream: 'demo', csrf: '' }), 403);
      await expectPage(await ua.postForm(`${tb.base}/interaction/${uid}/login`, { upstream: 'demo', csrf: other.csrf }), 403);
      await expectPage(await ua.postForm(`${tb.base}/interaction/${uid}/login`, { upstream: 'demo', csrf: `${other.csrf}x` }), 403);
    });
  });

  it('POST /interaction/<bogus uid>/login -> 4xx page (CSRF first; with a valid CSRF for the bogus uid the interaction check refuses)', async () => {
    const { ua, csrf } = await startInteraction();
    await createsNothing(db, async () => {
      await expectPage(await ua.postForm(`${tb.base}/interaction/bogus-uid/login`, { upstream: 'demo', csrf }), 403);
      // Past the CSRF check (token derived for the bogus uid), the cookie-bound interaction does not match.
      const res = await ua.postForm(`${tb.base}/interaction/bogus-uid/login`, { upstream: 'demo', csrf: csrfFor('bogus-uid') });
      await expectPage(res, 400);
      // And without the interaction cookie at all.
      await expectPage(await postForm(`${tb.base}/interaction/bogus-uid/login`, { upstream: 'demo', csrf: csrfFor('bogus-uid') }), 400);
    });
  });

  it('[P] the CSRF derivation used above is the real one (a valid login POST redirects upstream)', async () => {
    const { ua, uid } = await startInteraction();
    const res = await ua.postForm(`${tb.base}/interaction/${uid}/login`, { upstream: 'demo', csrf: csrfFor(uid) });
    expect([302, 303]).toContain(res.status);
    expect(res.headers.get('location')).toMatch(/^\/upstream\/demo\/authorize\?/);
  });

  it('login POST with an unknown upstream, a duplicated upstream, JSON, or an oversized form -> 4xx page', async () => {
    const { ua, uid, csrf } = await startInteraction();
    await createsNothing(db, async () => {
      await expectPage(await ua.postForm(`${tb.base}/interaction/${uid}/login`, { upstream: 'nope', csrf }), 400);
      await expectPage(await ua.request(`${tb.base}/interaction/${uid}/login`, { method: 'POST', headers: { 'content-type': FORM }, body: `csrf=${encodeURIComponent(csrf)}&upstream=demo&upstream=demo` }), 400);
      await expectPage(await ua.request(`${tb.base}/interaction/${uid}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ csrf, upstream: 'demo' }) }), 400);
      const cookie = [...ua.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
      for (const isChunked of [false, true]) {
        const big = await raw(`/interaction/${uid}/login`, { headers: { 'content-type': FORM, cookie }, body: `csrf=${encodeURIComponent(csrf)}&upstream=demo&pad=${'a'.repeat(1024 * 1024)}`, chunked: isChunked });
        expect(big.status, `oversized form, chunked=${isChunked}`).toBe(413);
        expect(String(big.headers['content-type'])).toMatch(/^text\/html/);
      }
    });
  });

  it('GET /interaction/unknown and /interaction/<uid> from another browser -> 4xx page', async () => {
    const { uid } = await startInteraction();
    await createsNothing(db, async () => {
      await expectPage(await fetch(`${tb.base}/interaction/unknown`), 400);
      await expectPage(await fetch(`${tb.base}/interaction/${uid}`), 400);
    });
  });

  it('POST /upstream/demo/callback with a bogus, oversized or missing state -> 401 page, no login', async () => {
    const { ua } = await startInteraction();
    await createsNothing(db, async () => {
      for (const state of [randomBytes(24).toString('base64url'), 'x'.repeat(200), '']) {
        await expectPage(await ua.postForm(`${tb.base}/upstream/demo/callback`, { state, secret: 'x', persona: 'patient' }), 401);
      }
      await expectPage(await ua.get(`${tb.base}/upstream/demo/callback?state=bogus`), 401);
    });
    const unknownConnector = await ua.postForm(`${tb.base}/upstream/nope/callback`, { state: 'x' });
    expect(unknownConnector.status).toBe(404);
  });

  it('POST /upstream/demo/callback with a 1 MB body (declared or chunked) -> 413 page, no login', async () => {
    await createsNothing(db, async () => {
      for (const isChunked of [false, true]) {
        const res = await raw('/upstream/demo/callback', { headers: { 'content-type': FORM }, body: `state=x&secret=y&persona=patient&pad=${'a'.repeat(1024 * 1024)}`, chunked: isChunked });
        expect(res.status, `chunked=${isChunked}`).toBe(413);
        expect(res.headers.location).toBeUndefined();
      }
    });
  });

  it('replaying a demo callback that already logged in -> refused, no second login', async () => {
    const { url } = codeRequest(tb.base);
    const login = await driveLogin(url, tb.base);
    expect(login.back.searchParams.get('code')).toBeTruthy();
    await createsNothing(db, async () => {
      // Same browser, same form: the transaction was single-use.
      await expectPage(await login.ua.postForm(`${tb.base}/upstream/demo/callback`, login.callbackForm), 401);
      // Another browser replaying it fares no better.
      await expectPage(await postForm(`${tb.base}/upstream/demo/callback`, login.callbackForm), 401);
    });
  });

  it('a callback with a wrong secret fails and burns the transaction (the right secret is refused afterwards)', async () => {
    const { ua, uid, csrf } = await startInteraction();
    const toUpstream = await ua.postForm(`${tb.base}/interaction/${uid}/login`, { upstream: 'demo', csrf });
    const page = await (await ua.get(location(toUpstream, tb.base))).text();
    const form = { state: hiddenField(page, 'state'), secret: hiddenField(page, 'secret'), persona: 'patient' };
    await createsNothing(db, async () => {
      await expectPage(await ua.postForm(`${tb.base}/upstream/demo/callback`, { ...form, secret: `${form.secret.slice(0, -1)}A` === form.secret ? `${form.secret.slice(0, -1)}B` : `${form.secret.slice(0, -1)}A` }), 401);
      await expectPage(await ua.postForm(`${tb.base}/upstream/demo/callback`, form), 401);
    });
  });

  it('a callback from a browser that did not start the login (no interaction cookie) logs nobody in', async () => {
    const { ua, uid, csrf } = await startInteraction();
    const toUpstream = await ua.postForm(`${tb.base}/interaction/${uid}/login`, { upstream: 'demo', csrf });
    const page = await (await ua.get(location(toUpstream, tb.base))).text();
    const form = { state: hiddenField(page, 'state'), secret: hiddenField(page, 'secret'), persona: 'patient' };
    const before = db.snapshot();
    // The verified upstream answer is parked for the interaction (a short-lived hand-off record)...
    const res = await postForm(`${tb.base}/upstream/demo/callback`, form);
    expect(res.status).toBe(303);
    expect(res.headers.getSetCookie().some((c) => c.startsWith('_session='))).toBe(false);
    // ...but only the browser holding the interaction cookie can pick it up.
    const done = await fetch(new URL(res.headers.get('location')!, tb.base), { redirect: 'manual' });
    expect(done.status).toBe(400);
    expect(done.headers.get('location')).toBeNull();
    expect(done.headers.getSetCookie().some((c) => c.startsWith('_session='))).toBe(false);
    const after = db.snapshot();
    delete after['oidc:VerifiedUpstreamLogin'];
    delete before['oidc:VerifiedUpstreamLogin'];
    expect(after).toEqual(before);
  });
});

describe('CORS on the token and userinfo endpoints', () => {
  const cc = (origin: string, secret = CORS_SECRET) =>
    postForm(`${tb.base}/token`, { grant_type: 'client_credentials' }, { authorization: basic('cors-client', secret), origin });

  it('[P] the registered origin of the client gets CORS headers', async () => {
    const res = await cc(GOOD_ORIGIN);
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(GOOD_ORIGIN);
  });

  it('a foreign origin gets no Access-Control-Allow-Origin and no token', async () => {
    for (const [client, secret] of [['cors-client', CORS_SECRET], ['other', OTHER_SECRET], ['web', WEB_SECRET]]) {
      await createsNothing(db, async () => {
        const res = await postForm(`${tb.base}/token`, { grant_type: 'client_credentials' }, { authorization: basic(client, secret), origin: EVIL_ORIGIN });
        expect(res.headers.get('access-control-allow-origin')).not.toBe(EVIL_ORIGIN);
        expect(res.headers.get('access-control-allow-origin')).not.toBe('*');
        expect(res.headers.get('access-control-allow-credentials')).toBeNull();
        expect(res.status).toBeGreaterThanOrEqual(400);
      });
    }
  });

  it('userinfo called from a foreign origin does not expose claims to it', async () => {
    const req = codeRequest(tb.base);
    const { back } = await driveLogin(req.url, tb.base);
    const token = await postForm(`${tb.base}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: 'https://client.test/cb', code_verifier: req.verifier }, { authorization: basic('web', WEB_SECRET) });
    const { access_token } = (await token.json()) as { access_token: string };
    const res = await fetch(`${tb.base}/me`, { headers: { authorization: `Bearer ${access_token}`, origin: EVIL_ORIGIN } });
    expect(res.headers.get('access-control-allow-origin')).not.toBe(EVIL_ORIGIN);
    expect(res.headers.get('access-control-allow-origin')).not.toBe('*');
  });

  it('no answer from the token endpoint echoes a foreign origin, even an early error or a preflight', async () => {
    const early = await send('/token', { method: 'POST', headers: { 'content-type': 'application/json', origin: EVIL_ORIGIN }, body: '{}' });
    expect(early.status).toBe(400);
    expect.soft(early.headers.get('access-control-allow-origin'), 'early error').not.toBe(EVIL_ORIGIN);
    const unauthenticated = await postForm(`${tb.base}/token`, { grant_type: 'client_credentials' }, { origin: EVIL_ORIGIN });
    expect.soft(unauthenticated.headers.get('access-control-allow-origin'), 'no client').not.toBe(EVIL_ORIGIN);
    const preflight = await send('/token', { method: 'OPTIONS', headers: { origin: EVIL_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' } });
    expect.soft(preflight.headers.get('access-control-allow-origin'), 'preflight').not.toBe(EVIL_ORIGIN);
  });
});
