// Catalogue section 6A on a broker over plain HTTP (the demo upstream, a third-party client that gets
// the consent page): CSRF on consent and login (WS-01, WS-13), consent by GET or HEAD (WS-02), session
// fixation (WS-04), cookie attributes that hold without TLS (WS-05), Referrer-Policy and third-party
// content (WS-07), Host and X-Forwarded-* headers (WS-11), CORS on the broker's JSON APIs (WS-16).
import { request as httpRequest } from 'node:http';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { REDIRECT, clientKey, startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { UserAgent, hiddenField, location } from '../helpers/browser.ts';
import { accountSecret, signIn } from '../delegation/helpers.ts';
import { DbCounter, codeRequest, createsNothing, driveLogin } from '../oidc/hostile/support.ts';

let tb: TestBroker;
let proxied: TestBroker;
let db: DbCounter;

beforeAll(async () => {
  const svcKey = await clientKey();
  tb = await startTestBroker({ svcKey });
  proxied = await startTestBroker({ svcKey, extra: { trustProxy: true } });
  db = new DbCounter(tb);
}, 60_000);
afterAll(async () => {
  db?.close();
  await tb?.close();
  await proxied?.close();
});

/** A browser stopped on the consent page of a third-party client (public-app), with what it needs to answer. */
async function toConsent(ua = new UserAgent()) {
  const req = codeRequest(tb.base, { client_id: 'public-app', scope: 'openid profile' });
  let res = await ua.get(req.url);
  let url = location(res, tb.base);
  const chooser = await (await ua.get(url)).text();
  const uid = new URL(url).pathname.split('/').pop()!;
  res = await ua.postForm(`${tb.base}/interaction/${uid}/login`, { csrf: hiddenField(chooser, 'csrf'), upstream: 'demo' });
  const demo = await (await ua.get(location(res, tb.base))).text();
  res = await ua.postForm(`${tb.base}/upstream/demo/callback`, { state: hiddenField(demo, 'state'), secret: hiddenField(demo, 'secret'), persona: 'patient' });
  for (let i = 0; i < 6 && res.status !== 200; i++) {
    url = location(res, tb.base);
    res = await ua.get(url);
  }
  const html = await res.text();
  // The consent step is an interaction of its own (a new uid).
  const consentUid = /action="\/interaction\/([^/"]+)\/confirm"/.exec(html)?.[1];
  expect(consentUid, html.slice(0, 300)).toBeTruthy();
  return { ua, uid: consentUid!, csrf: hiddenField(html, 'csrf'), html, req };
}

/** The consent confirmed properly: the browser reaches the client with a code. */
async function confirm(c: Awaited<ReturnType<typeof toConsent>>): Promise<URL> {
  let res = await c.ua.postForm(`${tb.base}/interaction/${c.uid}/confirm`, { csrf: c.csrf });
  for (let i = 0; i < 6; i++) {
    const next = location(res, tb.base);
    if (next.startsWith(REDIRECT)) return new URL(next);
    res = await c.ua.get(next);
  }
  throw new Error('no client redirect');
}

async function expectPage(res: Response, status: number): Promise<string> {
  const body = await res.text();
  expect(res.status, body.slice(0, 200)).toBe(status);
  expect(res.headers.get('location')).toBeNull();
  return body;
}

describe('WS-01 CSRF on the consent step', () => {
  it('WS-01 the consent form without its token, with another interaction\'s token, for another interaction, or without the interaction cookie: refused, no grant, no code', async () => {
    const victim = await toConsent();
    const attacker = await toConsent();
    const confirmUrl = `${tb.base}/interaction/${victim.uid}/confirm`;
    await createsNothing(db, async () => {
      await expectPage(await victim.ua.postForm(confirmUrl, {}), 403);
      await expectPage(await victim.ua.postForm(confirmUrl, { csrf: attacker.csrf }), 403);
      await expectPage(await victim.ua.postForm(`${tb.base}/interaction/${attacker.uid}/confirm`, { csrf: attacker.csrf }), 400);
      // A cross-site POST: SameSite=Lax keeps the cookies home, so only the form arrives.
      await expectPage(await fetch(confirmUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' }, body: new URLSearchParams({ csrf: victim.csrf }), redirect: 'manual' }), 400);
      // The victim's whole cookie jar, but a form forged without the token.
      await expectPage(await victim.ua.postForm(confirmUrl, { csrf: '' }), 403);
    });
    // [P] the victim's own form still works once.
    expect((await confirm(victim)).searchParams.get('code')).toBeTruthy();
    expect((await confirm(attacker)).searchParams.get('code')).toBeTruthy();
  });
});

describe('WS-02 consent by GET or HEAD', () => {
  /** The answer to a method a POST-only route does not serve: 405 naming POST, no redirect. */
  async function expect405(res: Response, what: string): Promise<void> {
    await res.body?.cancel().catch(() => undefined);
    expect(res.status, what).toBe(405);
    expect(res.headers.get('allow'), what).toBe('POST');
    expect(res.headers.get('location'), what).toBeNull();
  }

  it('WS-02 GET and HEAD on the consent, login, role, act-as and abort endpoints never approve: 405 with Allow: POST, nothing created, and the consent is still pending', async () => {
    const c = await toConsent();
    await createsNothing(db, async () => {
      for (const step of ['confirm', 'login', 'role', 'act-as', 'abort']) {
        for (const method of ['GET', 'HEAD']) {
          await expect405(await c.ua.request(`${tb.base}/interaction/${c.uid}/${step}?csrf=${encodeURIComponent(c.csrf)}`, { method }), `${method} ${step}`);
        }
      }
    });
    expect((await confirm(c)).searchParams.get('code')).toBeTruthy();
  });

  it('WS-02 GET and HEAD on the account pages\' POST-only routes (sign-out, change, end, link add and remove): 405 with Allow: POST, and the account session is still signed in', async () => {
    const ua = new UserAgent();
    const login = location(await ua.get(`${tb.base}/account`), tb.base);
    await ua.get((await signIn(ua, tb, login, { persona: 'patient' }, `${tb.base}/account/callback`)).href);
    const home = await ua.get(`${tb.base}/account`);
    const csrf = hiddenField(await home.text(), 'csrf');
    expect(home.status).toBe(200);
    await createsNothing(db, async () => {
      for (const path of ['/account/logout', '/account/delegations/some-id/change', '/account/delegations/some-id/end', '/account/links/remove', '/account/links/add']) {
        for (const method of ['GET', 'HEAD']) await expect405(await ua.request(`${tb.base}${path}?csrf=${encodeURIComponent(csrf)}`, { method }), `${method} ${path}`);
      }
    });
    const after = await ua.get(`${tb.base}/account`);
    await after.body?.cancel();
    expect(after.status).toBe(200);
    // [P] the POST itself still signs out.
    await ua.postForm(`${tb.base}/account/logout`, { csrf });
    expect((await ua.get(`${tb.base}/account`)).status).toBe(302);
  });
});

describe('WS-04 session fixation', () => {
  it('WS-04 a planted session cookie (obtained by the attacker before login, or invented) is replaced at login and gives the attacker nothing', async () => {
    // The attacker's own, unauthenticated session: opened by an authorization request.
    const attacker = new UserAgent();
    await attacker.get(codeRequest(tb.base).url);
    const planted = new Map(attacker.cookies);
    for (const plantedSet of [planted, new Map([['_session', 'attacker-chosen-session-id'], ['_session.sig', 'x']])]) {
      const victim = new UserAgent();
      for (const [k, v] of plantedSet) if (k.startsWith('_session')) victim.cookies.set(k, v);
      const { back } = await driveLogin(codeRequest(tb.base).url, tb.base, 'patient', victim);
      expect(back.searchParams.get('code')).toBeTruthy();
      expect(victim.cookies.get('_session')).toBeTruthy();
      expect(victim.cookies.get('_session')).not.toBe(plantedSet.get('_session'));
      // The planted cookie does not ride the victim's login.
      const rider = new UserAgent();
      for (const [k, v] of plantedSet) rider.cookies.set(k, v);
      const silent = new URL(location(await rider.get(codeRequest(tb.base, { prompt: 'none' }).url), tb.base));
      expect(silent.searchParams.get('error')).toBe('login_required');
    }
  });
});

describe('WS-05 cookie attributes that hold on any transport', () => {
  it('WS-05 every cookie of a login and of the account app is HttpOnly, SameSite, host-only (no Domain) and under 4 KB', async () => {
    const { setCookies } = await driveLogin(codeRequest(tb.base).url, tb.base);
    const ua = new UserAgent();
    const seen: string[] = [...setCookies];
    const record = async (res: Response) => {
      seen.push(...res.headers.getSetCookie());
      return res;
    };
    const login = location(await record(await ua.get(`${tb.base}/account`)), tb.base);
    const loginRes = await record(await ua.get(login));
    const callback = await signIn(ua, tb, location(loginRes, tb.base), { persona: 'patient' }, `${tb.base}/account/callback`);
    await record(await ua.get(callback.href));
    const names = new Set(seen.map((c) => c.split('=')[0]));
    for (const n of ['_session', '_interaction', 'account_tx', 'account_session']) expect(names, n).toContain(n);
    for (const c of seen) {
      expect(c, c.slice(0, 60)).toMatch(/;\s*httponly/i);
      expect(c, c.slice(0, 60)).toMatch(/;\s*samesite=(lax|strict)/i);
      expect(c, c.slice(0, 60)).not.toMatch(/;\s*domain=/i);
      expect(Buffer.byteLength(c), c.slice(0, 60)).toBeLessThan(4096);
    }
  });
});

describe('WS-07 Referrer-Policy and third-party content', () => {
  /** Absolute URLs of resources a page would load (scripts, styles, images, fonts, frames), not links or form targets. */
  const loadedResources = (html: string): string[] => [
    ...[...html.matchAll(/<(?:script|img|iframe|frame|embed|source|audio|video|object)\b[^>]*\b(?:src|data)="([^"]+)"/gi)].map((m) => m[1]),
    ...[...html.matchAll(/<link\b[^>]*\bhref="([^"]+)"/gi)].map((m) => m[1]),
    ...[...html.matchAll(/url\(\s*['"]?([^'")]+)/gi)].map((m) => m[1]),
    ...[...html.matchAll(/@import\s+['"]([^'"]+)/gi)].map((m) => m[1]),
  ];

  it('WS-07 login, consent, upstream, account, sign-out and error pages: Referrer-Policy no-referrer, every resource from the broker itself, a CSP that loads nothing from elsewhere', async () => {
    const pages: Array<[string, Response]> = [];
    const c = await toConsent();
    const ua = new UserAgent();
    const interaction = location(await ua.get(codeRequest(tb.base).url), tb.base);
    pages.push(['chooser', await ua.get(interaction)]);
    pages.push(['consent', await c.ua.get(`${tb.base}/interaction/${c.uid}`)]);
    pages.push(['demo upstream', await fetch(`${tb.base}/upstream/demo/authorize?state=x&secret=y`)]);
    pages.push(['error page', await fetch(`${tb.base}/interaction/unknown`)]);
    pages.push(['authorization error page', await fetch(codeRequest(tb.base, { redirect_uri: 'https://evil.example/cb' }).url)]);
    pages.push(['sign-out page', await fetch(`${tb.base}/session/end`)]);
    const account = new UserAgent();
    const login = location(await account.get(`${tb.base}/account`), tb.base);
    await account.get((await signIn(account, tb, login, { persona: 'patient' }, `${tb.base}/account/callback`)).href);
    pages.push(['account', await account.get(`${tb.base}/account`)]);
    pages.push(['account links', await account.get(`${tb.base}/account/links`)]);
    pages.push(['account invite', await account.get(`${tb.base}/account/invite`)]);
    for (const [name, res] of pages) {
      const html = await res.text();
      expect(res.headers.get('content-type'), name).toMatch(/^text\/html/);
      expect(res.headers.get('referrer-policy'), name).toBe('no-referrer');
      for (const src of loadedResources(html)) {
        const target = new URL(src.replace(/&amp;/g, '&'), tb.base);
        expect(target.origin, `${name}: ${src}`).toBe(new URL(tb.base).origin);
      }
      const csp = res.headers.get('content-security-policy') ?? '';
      expect(csp, name).toMatch(/default-src 'none'/);
      for (const directive of csp.split(';').map((d) => d.trim()).filter((d) => /^(script|style|img|font|connect|frame|media|object)-src\b/.test(d))) {
        expect(directive, `${name}: ${directive}`).not.toMatch(/https?:|\*/);
      }
    }
  });
});

describe('WS-11 Host and X-Forwarded-* headers', () => {
  const poison = { host: 'evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', forwarded: 'host=evil.example;proto=https' };

  /** A request with exactly these headers (fetch would drop Host). */
  function raw(base: string, path: string, headers: Record<string, string>, method = 'GET', body?: string): Promise<{ status: number; location?: string; cookies: string[]; text: string }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: new URL(base).port, path, method, headers: { ...headers, ...(body ? { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(body)) } : {}) } }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, cookies: res.headers['set-cookie'] ?? [], text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  for (const [label, which] of [
    ['without trustProxy', () => tb],
    ['with trustProxy (reached without its proxy)', () => proxied],
  ] as const) {
    it(`WS-11 ${label}: the issuer, the login redirects and the cookies' Secure flag do not follow the request headers`, async () => {
      const t = which();
      const discovery = JSON.parse((await raw(t.base, '/.well-known/openid-configuration', poison)).text) as Record<string, string>;
      expect(discovery.issuer).toBe(t.base);
      const auth = await raw(t.base, new URL(codeRequest(t.base).url).pathname + new URL(codeRequest(t.base).url).search, poison);
      expect(auth.status).toBe(303);
      expect(new URL(auth.location!, t.base).origin).toBe(t.base);
      expect(auth.cookies.length).toBeGreaterThan(0);
      for (const c of auth.cookies) expect(c, c.slice(0, 40)).not.toMatch(/;\s*(secure|domain=)/i);
      const account = await raw(t.base, '/account/login', poison);
      const to = new URL(account.location!, t.base);
      expect(to.origin).toBe(t.base);
      expect(to.searchParams.get('redirect_uri')).toBe(`${t.base}/account/callback`);
      for (const c of account.cookies) expect(c, c.slice(0, 40)).not.toMatch(/;\s*(secure|domain=)/i);
      // The upstream's callback URL is built from the issuer too.
      const ua = new UserAgent();
      const interaction = location(await ua.get(codeRequest(t.base).url), t.base);
      const chooser = await (await ua.get(interaction)).text();
      const uid = new URL(interaction).pathname.split('/').pop()!;
      const cookie = [...ua.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
      const toUpstream = await raw(t.base, `/interaction/${uid}/login`, { ...poison, cookie }, 'POST', new URLSearchParams({ csrf: hiddenField(chooser, 'csrf'), upstream: 'demo' }).toString());
      expect([302, 303]).toContain(toUpstream.status);
      expect(new URL(toUpstream.location!, t.base).origin).toBe(t.base);
    });

    // oidc-provider builds these from the request; the broker pins Host (and X-Forwarded-*) to the issuer's.
    it(`WS-11 ${label}: discovery's endpoint URLs and the interaction's form actions do not follow Host or X-Forwarded-Host`, async () => {
      const t = which();
      for (const headers of [poison, { host: 'evil.example' }, { host: 'evil.example', 'x-forwarded-host': 'evil.example' }] as Array<Record<string, string>>) {
        const discovery = JSON.parse((await raw(t.base, '/.well-known/openid-configuration', headers)).text) as Record<string, string>;
        for (const k of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'end_session_endpoint', 'introspection_endpoint', 'revocation_endpoint']) {
          expect(new URL(discovery[k]).origin, `${k} ${JSON.stringify(headers)}`).toBe(t.base);
        }
      }
      // The sign-out page's form posts to the issuer too.
      const logout = await raw(t.base, '/session/end', poison);
      expect(logout.text).not.toContain('evil.example');
    });
  }

  it('WS-11 a trusted-proxy broker with an https issuer, reached without X-Forwarded-Proto: the issuer\'s scheme and host, Secure cookies, no 500', async () => {
    const t = await startTestBroker({ svcKey: await clientKey(), extra: { issuer: 'https://broker.example', trustProxy: true } });
    try {
      for (const headers of [{ host: 'evil.example' }, { 'x-forwarded-proto': 'http', 'x-forwarded-host': 'evil.example' }, {}] as Array<Record<string, string>>) {
        const discovery = JSON.parse((await raw(t.base, '/.well-known/openid-configuration', headers)).text) as Record<string, string>;
        expect(discovery.issuer).toBe('https://broker.example');
        expect(discovery.authorization_endpoint).toBe('https://broker.example/auth');
        const req = new URL(codeRequest('https://broker.example').url);
        const auth = await raw(t.base, req.pathname + req.search, headers);
        expect(auth.status, auth.text.slice(0, 200)).toBe(303);
        expect(new URL(auth.location!, 'https://broker.example').origin).toBe('https://broker.example');
        expect(auth.cookies.length).toBeGreaterThan(0);
        for (const c of auth.cookies) expect(c, c.slice(0, 40)).toMatch(/;\s*secure/i);
      }
    } finally {
      await t.close();
    }
  });
});

describe('WS-13 login CSRF', () => {
  it('WS-13 the login chooser posted without its token or cross-site, and an upstream answer delivered to a browser that did not start the login: nobody is signed in', async () => {
    const ua = new UserAgent();
    const interaction = location(await ua.get(codeRequest(tb.base).url), tb.base);
    const uid = new URL(interaction).pathname.split('/').pop()!;
    await createsNothing(db, async () => {
      await expectPage(await ua.postForm(`${tb.base}/interaction/${uid}/login`, { upstream: 'demo' }), 403);
      await expectPage(await fetch(`${tb.base}/interaction/${uid}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' }, body: 'upstream=demo', redirect: 'manual' }), 403);
    });
    // The attacker's finished upstream login pushed into the victim's browser (the attacker's callback form).
    const attacker = new UserAgent();
    const aInteraction = location(await attacker.get(codeRequest(tb.base).url), tb.base);
    const aChooser = await (await attacker.get(aInteraction)).text();
    const aUid = new URL(aInteraction).pathname.split('/').pop()!;
    const toDemo = await attacker.postForm(`${tb.base}/interaction/${aUid}/login`, { csrf: hiddenField(aChooser, 'csrf'), upstream: 'demo' });
    const demo = await (await attacker.get(location(toDemo, tb.base))).text();
    const victim = new UserAgent();
    await victim.get(codeRequest(tb.base).url);
    const posted = await victim.postForm(`${tb.base}/upstream/demo/callback`, { state: hiddenField(demo, 'state'), secret: hiddenField(demo, 'secret'), persona: 'carer' });
    expect(posted.status).toBe(303);
    const handoff = await victim.get(location(posted, tb.base));
    expect(handoff.status).toBe(400);
    expect(handoff.headers.getSetCookie().some((c) => c.startsWith('_session=') && !/expires=Thu, 01 Jan 1970/i.test(c))).toBe(false);
    const silent = new URL(location(await victim.get(codeRequest(tb.base, { prompt: 'none' }).url), tb.base));
    expect(silent.searchParams.get('error')).toBe('login_required');
  });
});

describe('WS-16 CORS on the broker\'s JSON APIs', () => {
  it('WS-16 a foreign origin with credentials (a valid bearer token, or the account cookie) gets no Access-Control-Allow-Origin from the delegation, links, who-acted-for-me, OpenAPI and consent-events APIs, nor from a preflight', async () => {
    const evil = 'https://evil.example';
    const account = await oc.discovery(new URL(tb.base), 'broker-account', undefined, oc.ClientSecretBasic(accountSecret()), { execute: [oc.allowInsecureRequests] });
    const verifier = oc.randomPKCECodeVerifier();
    const url = oc.buildAuthorizationUrl(account, { redirect_uri: `${tb.base}/account/callback`, scope: 'openid delegation.read account.links audit.read', resource: `${tb.base}/api`, code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const back = await signIn(new UserAgent(), tb, url.href, { persona: 'patient' }, `${tb.base}/account/callback`);
    const { access_token } = await oc.authorizationCodeGrant(account, back, { pkceCodeVerifier: verifier });
    const browser = new UserAgent();
    const login = location(await browser.get(`${tb.base}/account`), tb.base);
    await browser.get((await signIn(browser, tb, login, { persona: 'patient' }, `${tb.base}/account/callback`)).href);

    const answers: Array<[string, Response]> = [];
    for (const path of ['/api/delegations', '/api/account/links', '/api/who-acted-for-me', '/api/openapi.json']) {
      const res = await fetch(`${tb.base}${path}`, { headers: { origin: evil, authorization: `Bearer ${access_token}` } });
      expect(res.status, path).toBe(200);
      answers.push([path, res]);
    }
    const events = await fetch(`${tb.base}/api/consent-events`, { headers: { origin: evil, authorization: `Bearer ${access_token}` }, signal: AbortSignal.timeout(2000) }).catch(() => undefined);
    if (events) answers.push(['/api/consent-events', events]);
    answers.push(['/account (cookie)', await browser.request(`${tb.base}/account`, { headers: { origin: evil } })]);
    for (const path of ['/api/delegations', '/api/account/links', '/api/who-acted-for-me', '/api/consent-events', '/token', '/me']) {
      answers.push([`preflight ${path}`, await fetch(`${tb.base}${path}`, { method: 'OPTIONS', headers: { origin: evil, 'access-control-request-method': 'DELETE', 'access-control-request-headers': 'authorization' } })]);
    }
    for (const [what, res] of answers) {
      expect(res.headers.get('access-control-allow-origin'), what).toBeNull();
      expect(res.headers.get('access-control-allow-credentials'), what).toBeNull();
      await res.body?.cancel().catch(() => undefined);
    }
  });
});
