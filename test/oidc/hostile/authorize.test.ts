// Hostile tests for the authorization endpoint (security catalogue 1A) and the browser-facing
// pages around it: redirect URI matching, response types, iss, state size, redirect codes after a
// POST, security headers and cookie attributes.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { REDIRECT, clientKey, startTestBroker, type TestBroker } from '../../helpers/broker.ts';
import { UserAgent } from '../../helpers/browser.ts';
import { DbCounter, codeRequest, createsNothing, driveLogin, redeemCode } from './support.ts';

let tb: TestBroker;
let db: DbCounter;

beforeAll(async () => {
  tb = await startTestBroker({ svcKey: await clientKey('ES256') });
  db = new DbCounter(tb);
});
afterAll(async () => {
  db?.close();
  await tb?.close();
});

/** The broker must answer with its own error page: 400, HTML, no Location, nothing issued. */
async function expectLocalErrorPage(res: Response): Promise<string> {
  const body = await res.text();
  expect(res.status, body.slice(0, 300)).toBe(400);
  expect(res.headers.get('location')).toBeNull();
  expect(res.headers.get('content-type') ?? '').toMatch(/^text\/html/);
  expect(body).toContain('There is a problem with this sign-in request');
  expect(body).not.toMatch(/[?&#]code=/);
  return body;
}

describe('1A redirect URI: exact match only, else a local error page and no redirect (OA-01, OA-02)', () => {
  const variants: Array<[string, string]> = [
    ['different host', 'https://evil.example/cb'],
    ['path suffix', 'https://client.test/cb/XYZ'],
    ['path suffix without slash', 'https://client.test/cbXYZ'],
    ['trailing slash', 'https://client.test/cb/'],
    ['host in upper case', 'https://CLIENT.TEST/cb'],
    ['path in upper case', 'https://client.test/CB'],
    ['added port', 'https://client.test:8443/cb'],
    ['explicit default port', 'https://client.test:443/cb'],
    ['userinfo pointing elsewhere', 'https://client.test@evil.example/cb'],
    ['userinfo on the registered host', 'https://evil.example@client.test/cb'],
    ['encoded dot-dot', 'https://client.test/cb/%2e%2e/cb'],
    ['encoded dot-dot from another path', 'https://client.test/evil/%2e%2e/cb'],
    ['dot-dot', 'https://client.test/evil/../cb'],
    ['dot-dot-semicolon', 'https://client.test/evil/..;/cb'],
    ['subdomain of the registered host', 'https://evil.client.test/cb'],
    ['registered host as a prefix', 'https://client.test.evil.example/cb'],
    ['added query', 'https://client.test/cb?next=https://evil.example'],
    ['added fragment', 'https://client.test/cb#x'],
    ['scheme downgrade', 'http://client.test/cb'],
    ['encoded NUL', 'https://client.test/cb%00'],
    ['javascript scheme', 'javascript:alert(1)//https://client.test/cb'],
  ];

  it.each(variants)('%s (%s)', async (_label, redirectUri) => {
    await createsNothing(db, async () => {
      const { url } = codeRequest(tb.base, { redirect_uri: redirectUri });
      await expectLocalErrorPage(await fetch(url, { redirect: 'manual' }));
    });
  });

  it('unknown client_id or no client_id: local error page, never a redirect', async () => {
    await createsNothing(db, async () => {
      await expectLocalErrorPage(await fetch(codeRequest(tb.base, { client_id: 'no-such-client' }).url, { redirect: 'manual' }));
      await expectLocalErrorPage(await fetch(codeRequest(tb.base, { client_id: undefined }).url, { redirect: 'manual' }));
    });
  });

  it('a client without the authorization_code grant cannot be used as an open redirector', async () => {
    await createsNothing(db, async () => {
      await expectLocalErrorPage(await fetch(codeRequest(tb.base, { client_id: 'svc', redirect_uri: REDIRECT }).url, { redirect: 'manual' }));
    });
  });

  it('the error page escapes what the request sent', async () => {
    const { url } = codeRequest(tb.base, { redirect_uri: 'https://evil.example/"><script>alert(1)</script>', client_id: 'web' });
    const body = await expectLocalErrorPage(await fetch(url, { redirect: 'manual' }));
    expect(body).not.toContain('<script>');
  });
});

describe('1A response types (OA-07): implicit and hybrid refused', () => {
  it.each(['token', 'code id_token', 'id_token', 'code token', 'code id_token token', 'none'])('response_type=%s', async (responseType) => {
    await createsNothing(db, async () => {
      const { url, state } = codeRequest(tb.base, { response_type: responseType });
      const res = await fetch(url, { redirect: 'manual' });
      // The redirect URI is registered and trusted, so the error goes back to it (RFC 6749 4.1.2.1).
      expect([302, 303]).toContain(res.status);
      const loc = new URL(res.headers.get('location')!);
      expect(`${loc.origin}${loc.pathname}`).toBe(REDIRECT);
      const params = new URLSearchParams(loc.hash ? loc.hash.slice(1) : loc.search);
      expect(params.get('error')).toBe('unsupported_response_type');
      expect(params.get('state')).toBe(state);
      for (const p of ['code', 'access_token', 'id_token']) expect(params.get(p)).toBeNull();
    });
  });

  it('discovery advertises only code and the iss response parameter', async () => {
    const meta = (await (await fetch(`${tb.base}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(meta.response_types_supported).toEqual(['code']);
    expect(meta.authorization_response_iss_parameter_supported).toBe(true);
  });
});

describe('1A positive controls and size limits (OA-10, OA-12, OA-13)', () => {
  it('[P] an unknown extra parameter is ignored and the flow succeeds, with iss in the response', async () => {
    const nonce = randomBytes(48).toString('base64url'); // 64 characters
    const { url, verifier, state } = codeRequest(tb.base, { foo: 'bar', 'x-unknown': '1', nonce });
    const { back } = await driveLogin(url, tb.base);
    expect(back.searchParams.get('error')).toBeNull();
    expect(back.searchParams.get('state')).toBe(state);
    expect(back.searchParams.get('iss')).toBe(tb.base);
    const res = await redeemCode(tb.base, back.searchParams.get('code')!, verifier);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { access_token?: string }).access_token).toBeTruthy();
  });

  it('[P] a 2 KB state round-trips unchanged', async () => {
    const longState = randomBytes(1536).toString('base64url'); // 2048 characters
    const { url } = codeRequest(tb.base, { state: longState });
    const { back } = await driveLogin(url, tb.base);
    expect(back.searchParams.get('code')).toBeTruthy();
    expect(back.searchParams.get('state')).toBe(longState);
  });

  it('an error response carries iss too', async () => {
    const { url, state } = codeRequest(tb.base, { code_challenge: undefined, code_challenge_method: undefined });
    const loc = new URL((await fetch(url, { redirect: 'manual' })).headers.get('location')!);
    expect(loc.searchParams.get('error')).toBeTruthy();
    expect(loc.searchParams.get('state')).toBe(state);
    expect(loc.searchParams.get('iss')).toBe(tb.base);
  });

  it('a 100 KB query is refused with a 4xx, not a 5xx, and creates nothing', async () => {
    await createsNothing(db, async () => {
      const { url } = codeRequest(tb.base, { state: 'x'.repeat(100 * 1024) });
      const res = await fetch(url, { redirect: 'manual' });
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(res.headers.get('location')).toBeNull();
    });
  });

  it('a 12 KB state (under the header limit) never causes a 5xx', async () => {
    const { url } = codeRequest(tb.base, { state: 's'.repeat(12 * 1024) });
    const res = await fetch(url, { redirect: 'manual' });
    expect(res.status).toBeLessThan(500);
  });
});

describe('1A redirects after a POST (OA-11) and interaction cookies', () => {
  it('every POST in the login (chooser, upstream callback, consent) answers 302/303, never 307/308', async () => {
    // public-app is third-party, so the consent form is posted too.
    const { url } = codeRequest(tb.base, { client_id: 'public-app' });
    const { back, posts } = await driveLogin(url, tb.base);
    expect(back.searchParams.get('code')).toBeTruthy();
    expect(posts.map((p) => new URL(p.url).pathname.split('/').pop())).toEqual(['login', 'callback', 'confirm']);
    for (const p of posts) {
      expect([302, 303], `${p.url} answered ${p.status}`).toContain(p.status);
      expect(p.location).toBeTruthy();
    }
    // The POSTs that hand the browser back towards the client use 303 explicitly.
    expect(posts.slice(1).map((p) => p.status)).toEqual([303, 303]);
  });

  it('every cookie set during the login is HttpOnly and SameSite', async () => {
    const { url } = codeRequest(tb.base);
    const { setCookies } = await driveLogin(url, tb.base);
    expect(setCookies.length).toBeGreaterThan(0);
    const names = new Set(setCookies.map((c) => c.split('=')[0]));
    expect(names).toContain('_interaction');
    expect(names).toContain('_session');
    for (const c of setCookies) {
      expect(c, c).toMatch(/;\s*httponly/i);
      expect(c, c).toMatch(/;\s*samesite=(lax|strict)/i);
    }
  });
});

describe('security headers on every HTML page', () => {
  function expectHardened(res: Response, what: string): void {
    expect(res.headers.get('x-content-type-options'), `${what}: X-Content-Type-Options`).toBe('nosniff');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp, `${what}: CSP`).toContain("frame-ancestors 'none'");
  }

  it("the broker's own pages (chooser, demo upstream, its error pages)", async () => {
    const { url } = codeRequest(tb.base);
    const ua = new UserAgent();
    const toInteraction = await ua.get(url);
    const interaction = new URL(toInteraction.headers.get('location')!, tb.base).href;
    const chooser = await ua.get(interaction);
    expect(chooser.headers.get('content-type')).toMatch(/^text\/html/);
    expectHardened(chooser, 'login chooser');
    const demo = await fetch(`${tb.base}/upstream/demo/authorize?state=x&secret=y`);
    expectHardened(demo, 'demo upstream page');
    const unknown = await fetch(`${tb.base}/interaction/unknown`);
    expectHardened(unknown, 'interaction error page');
  });

  it("oidc-provider's pages: the unregistered-redirect error page and the authorization redirect", async () => {
    const bad = await fetch(codeRequest(tb.base, { redirect_uri: 'https://evil.example/cb' }).url, { redirect: 'manual' });
    expect(bad.headers.get('content-type')).toMatch(/^text\/html/);
    expectHardened(bad, 'authorization error page');
    const ok = await fetch(codeRequest(tb.base).url, { redirect: 'manual' });
    expect(ok.status).toBe(303);
    expectHardened(ok, 'authorization redirect');
  });

  it('JSON endpoints are nosniff too', async () => {
    const res = await fetch(`${tb.base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });
});
