// Catalogue 1H: unsigned ID tokens (OA-61), prompt=none (OA-62, OA-64), RP-initiated logout with an
// unregistered post_logout_redirect_uri (OA-65) and access tokens in the URL (OA-67).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { REDIRECT, clientKey, startTestBroker, testConfig, type TestBroker } from '../helpers/broker.ts';
import { UserAgent, hiddenField } from '../helpers/browser.ts';
import { DbCounter, codeRequest, createsNothing, driveLogin, redeemCode } from '../oidc/hostile/support.ts';

const BYE = 'https://client.test/bye';

let tb: TestBroker;
let db: DbCounter;

beforeAll(async () => {
  const svcKey = await clientKey('ES256');
  const clients = testConfig(0, 'sqlite::memory:', svcKey).clients!.map((c) => (c.client_id === 'web' ? { ...c, post_logout_redirect_uris: [BYE] } : c));
  tb = await startTestBroker({ svcKey, extra: { clients } });
  db = new DbCounter(tb);
});
afterAll(async () => {
  db?.close();
  await tb?.close();
});

/** A signed-in browser (SSO session at the broker) and the tokens `web` got for it. */
async function signedIn(persona: string) {
  const ua = new UserAgent();
  const req = codeRequest(tb.base);
  const { back } = await driveLogin(req.url, tb.base, persona, ua);
  const res = await redeemCode(tb.base, back.searchParams.get('code')!, req.verifier);
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return { ua, tokens: JSON.parse(text) as { id_token: string; access_token: string } };
}

/** Where an authorization request in this browser goes: the client (code or error) or the broker's login UI. */
async function authorize(ua: UserAgent, params: Record<string, string | undefined>) {
  const { url, state } = codeRequest(tb.base, params);
  const res = await ua.get(url);
  expect([302, 303]).toContain(res.status);
  return { loc: new URL(res.headers.get('location')!, tb.base), state, setCookies: res.headers.getSetCookie() };
}

describe('OA-61 unsigned ID tokens', () => {
  it('OA-61 a client cannot register id_token_signed_response_alg=none (or HS256); discovery offers neither', async () => {
    for (const alg of ['none', 'HS256']) {
      let problems: string[] = [];
      try {
        parseConfig({ clients: [{ client_id: 'a', token_endpoint_auth_method: 'none', redirect_uris: ['https://a.example/cb'], id_token_signed_response_alg: alg }] }, {});
      } catch (err) {
        if (err instanceof ConfigError) problems = err.problems;
      }
      expect(problems.join('\n')).toMatch(/^clients\[0\]\.id_token_signed_response_alg: /m);
    }
    const meta = (await (await fetch(`${tb.base}/.well-known/openid-configuration`)).json()) as Record<string, string[]>;
    expect(meta.id_token_signing_alg_values_supported).not.toContain('none');
    expect(meta.id_token_signing_alg_values_supported.every((a) => /^(ES|PS)256$/.test(a))).toBe(true);
    expect(meta.request_parameter_supported ?? false).toBe(false);
  });

  it('OA-61 every ID token the broker issues is signed (ES256 by default)', async () => {
    const { tokens } = await signedIn('patient');
    expect(decodeProtectedHeader(tokens.id_token).alg).toBe('ES256');
    expect(tokens.id_token.split('.')[2].length).toBeGreaterThan(0);
  });
});

describe('OA-62 / OA-64 prompt=none', () => {
  it('OA-62 prompt=none with no session: redirect with login_required, no login page, no interaction, nothing created', async () => {
    await createsNothing(db, async () => {
      const ua = new UserAgent();
      const { loc, state, setCookies } = await authorize(ua, { prompt: 'none' });
      expect(`${loc.origin}${loc.pathname}`).toBe(REDIRECT);
      expect(loc.searchParams.get('error')).toBe('login_required');
      expect(loc.searchParams.get('state')).toBe(state);
      expect(loc.searchParams.get('code')).toBeNull();
      expect(setCookies.some((c) => c.startsWith('_interaction='))).toBe(false);
    });
  });

  it('OA-64 prompt=none with an id_token_hint of another user: login_required, no code; [P] the matching hint signs in silently', async () => {
    const patient = await signedIn('patient');
    const carer = await signedIn('carer');
    await createsNothing(db, async () => {
      const { loc } = await authorize(patient.ua, { prompt: 'none', id_token_hint: carer.tokens.id_token });
      expect(`${loc.origin}${loc.pathname}`).toBe(REDIRECT);
      expect(['login_required', 'interaction_required']).toContain(loc.searchParams.get('error'));
      expect(loc.searchParams.get('code')).toBeNull();
    });
    // Without prompt=none the mismatch is a visible login, never a silent code for the session's user.
    const visible = await authorize(patient.ua, { id_token_hint: carer.tokens.id_token });
    expect(visible.loc.pathname).toMatch(/^\/interaction\//);
    expect(visible.loc.searchParams.get('code')).toBeNull();

    const silent = await authorize(patient.ua, { prompt: 'none', id_token_hint: patient.tokens.id_token });
    expect(`${silent.loc.origin}${silent.loc.pathname}`).toBe(REDIRECT);
    const code = silent.loc.searchParams.get('code');
    expect(code).toBeTruthy();
  });

  it('OA-64 the silent code is for the session user (same sub as the hint)', async () => {
    const patient = await signedIn('patient');
    const req = codeRequest(tb.base, { prompt: 'none', id_token_hint: patient.tokens.id_token });
    const res = await patient.ua.get(req.url);
    const back = new URL(res.headers.get('location')!);
    const tokens = (await (await redeemCode(tb.base, back.searchParams.get('code')!, req.verifier)).json()) as { id_token: string };
    expect(decodeJwt(tokens.id_token).sub).toBe(decodeJwt(patient.tokens.id_token).sub);
  });
});

describe('OA-65 RP-initiated logout', () => {
  const endSession = (ua: UserAgent, params: Record<string, string>) =>
    ua.request(`${tb.base}/session/end?${new URLSearchParams(params)}`, { headers: { accept: 'text/html' } });

  it.each([
    ['another host', 'https://evil.example/bye'],
    ['a path suffix', `${BYE}/x`],
    ['a trailing slash', `${BYE}/`],
    ['an added query', `${BYE}?next=https://evil.example`],
    ['userinfo pointing elsewhere', 'https://client.test@evil.example/bye'],
    ['the client\'s redirect URI (not a logout URI)', REDIRECT],
  ])('OA-65 an unregistered post_logout_redirect_uri (%s): error page, no redirect, the session survives', async (_label, uri) => {
    const { ua, tokens } = await signedIn('patient');
    await createsNothing(db, async () => {
      const res = await endSession(ua, { id_token_hint: tokens.id_token, post_logout_redirect_uri: uri, state: 'st' });
      const body = await res.text();
      expect(res.status, body.slice(0, 200)).toBe(400);
      expect(res.headers.get('location')).toBeNull();
      expect(res.headers.get('content-type') ?? '').toMatch(/^text\/html/);
      expect(body).not.toContain('evil.example');
      expect(body).not.toContain('logoutForm');
    });
    // Still signed in: prompt=none gets a code.
    const { loc } = await authorize(ua, { prompt: 'none' });
    expect(loc.searchParams.get('code')).toBeTruthy();
  });

  it('OA-65 [P] the registered post_logout_redirect_uri: a confirmation page first, then the redirect there, and the session is gone', async () => {
    const { ua, tokens } = await signedIn('patient');
    const page = await endSession(ua, { id_token_hint: tokens.id_token, post_logout_redirect_uri: BYE, state: 'st' });
    const html = await page.text();
    expect(page.status).toBe(200);
    expect(page.headers.get('location')).toBeNull();
    expect(html).toContain('Do you want to sign out?');
    const action = /<form[^>]*action="([^"]+)"/.exec(html)![1].replace(/&amp;/g, '&');
    const res = await ua.postForm(new URL(action, tb.base).href, { xsrf: hiddenField(html, 'xsrf'), logout: 'yes' });
    expect([302, 303]).toContain(res.status);
    const loc = new URL(res.headers.get('location')!);
    expect(`${loc.origin}${loc.pathname}`).toBe(BYE);
    expect(loc.searchParams.get('state')).toBe('st');
    const after = await authorize(ua, { prompt: 'none' });
    expect(after.loc.searchParams.get('error')).toBe('login_required');
  });
});

describe('OA-67 access tokens in the URL', () => {
  it('OA-67 userinfo refuses an access token in the query (GET and POST); [P] the same token in the header works', async () => {
    const { tokens } = await signedIn('patient');
    for (const method of ['GET', 'POST']) {
      const res = await fetch(`${tb.base}/me?access_token=${encodeURIComponent(tokens.access_token)}`, { method });
      const text = await res.text();
      expect(res.status, `${method}: ${text}`).toBe(400);
      expect(JSON.parse(text)).toMatchObject({ error: 'invalid_request' });
      expect(text).not.toContain('"sub"');
    }
    const ok = await fetch(`${tb.base}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { sub?: string }).sub).toBe(decodeJwt(tokens.id_token).sub);
  });

  it('OA-67 the broker API reads the Authorization header only: a token in the query is 401', async () => {
    const { tokens } = await signedIn('patient');
    const res = await fetch(`${tb.base}/api/delegations?access_token=${encodeURIComponent(tokens.access_token)}`, { headers: { accept: 'application/json' } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate') ?? '').toMatch(/^Bearer /);
  });
});

