// Lifetimes (catalogue OA-22 after 30 s, OA-26, OA-46, OA-49), tested by moving the clock of the
// in-process broker: Date.now is what oidc-provider, jose and the SQLite store read for every expiry
// (the same technique as test/peers/clock-skew.ts, which does it for a broker process).
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { API, REDIRECT, clientKey, startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { UserAgent } from '../helpers/browser.ts';
import { DbCounter, WEB_SECRET, basic, codeRequest, driveLogin, introspect, oauthError, postForm, redeemCode } from '../oidc/hostile/support.ts';

const REFRESH_TTL = 300; // the configuration minimum
const realNow = Date.now.bind(Date);

/** Moves the broker's clock (and the test's) forward by `seconds` from real time. */
function clockAt(seconds: number): void {
  Date.now = () => realNow() + seconds * 1000;
}

let tb: TestBroker;
let db: DbCounter;

beforeAll(async () => {
  tb = await startTestBroker({ svcKey: await clientKey('ES256'), extra: { tokens: { refreshTokenTTL: REFRESH_TTL } } });
  db = new DbCounter(tb);
});
afterEach(() => {
  Date.now = realNow;
});
afterAll(async () => {
  Date.now = realNow;
  db?.close();
  await tb?.close();
});

async function login(overrides: Record<string, string | undefined> = {}) {
  const req = codeRequest(tb.base, overrides);
  const { back } = await driveLogin(req.url, tb.base);
  const code = back.searchParams.get('code');
  expect(code, back.href).toBeTruthy();
  return { code: code!, verifier: req.verifier };
}

/** Token rows only: an expiry purge may remove old rows meanwhile, but nothing may be minted. */
function tokenRows(): number {
  const s = db.snapshot();
  return (s['oidc:AccessToken'] ?? 0) + (s['oidc:RefreshToken'] ?? 0);
}

function configProblems(input: unknown): string[] {
  try {
    parseConfig(input, {});
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('OA-26 authorization code lifetime', () => {
  it('OA-26 a code first used after its 60 s lifetime -> invalid_grant, nothing issued', async () => {
    const { code, verifier } = await login();
    clockAt(61);
    const before = tokenRows();
    await oauthError(await redeemCode(tb.base, code, verifier), 400, 'invalid_grant');
    expect(tokenRows()).toBe(before);
  });

  it('OA-26 [P] the same flow redeemed at 59 s succeeds', async () => {
    const { code, verifier } = await login();
    clockAt(59);
    const res = await redeemCode(tb.base, code, verifier);
    expect(res.status, await res.clone().text()).toBe(200);
  });

  it('OA-26 the lifetime is 60 s by default and cannot be configured beyond 10 minutes', () => {
    expect(parseConfig({}, {}).tokens.authorizationCodeTTL).toBe(60);
    expect(configProblems({ tokens: { authorizationCodeTTL: 601 } })).toEqual(['tokens.authorizationCodeTTL: Too big: expected number to be <=600']);
  });
});

describe('OA-22 code reuse after 30 s', () => {
  it('OA-22 a code redeemed again 30 s later -> invalid_grant, and the tokens of the first redemption are revoked', async () => {
    const { code, verifier } = await login({ scope: 'openid offline_access patient/Patient.rs', resource: API, prompt: 'consent' });
    const first = await redeemCode(tb.base, code, verifier);
    const tokens = (await first.json()) as { access_token: string; refresh_token: string };
    expect(first.status).toBe(200);
    clockAt(30);
    await oauthError(await redeemCode(tb.base, code, verifier), 400, 'invalid_grant');
    expect((await introspect(tb.base, tokens.access_token)).active).toBe(false);
    await oauthError(await postForm(`${tb.base}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, { authorization: basic('web', WEB_SECRET) }), 400, 'invalid_grant');
  });

  it('OA-22 userinfo with the first (opaque) access token answers 401 after the reuse 30 s later', async () => {
    const { code, verifier } = await login();
    const { access_token } = (await (await redeemCode(tb.base, code, verifier)).json()) as { access_token: string };
    expect((await fetch(`${tb.base}/me`, { headers: { authorization: `Bearer ${access_token}` } })).status).toBe(200);
    clockAt(30);
    await oauthError(await redeemCode(tb.base, code, verifier), 400, 'invalid_grant');
    const res = await fetch(`${tb.base}/me`, { headers: { authorization: `Bearer ${access_token}` } });
    expect(res.status).toBe(401);
  });
});

describe('OA-46 refresh token absolute lifetime', () => {
  const refresh = (rt: string) => postForm(`${tb.base}/token`, { grant_type: 'refresh_token', refresh_token: rt }, { authorization: basic('web', WEB_SECRET) });

  it('OA-46 rotation does not extend the grant: a refresh token minted at 290 s is refused at 310 s (lifetime 300 s from login)', async () => {
    const { code, verifier } = await login({ scope: 'openid offline_access patient/Patient.rs', resource: API, prompt: 'consent' });
    let tokens = (await (await redeemCode(tb.base, code, verifier)).json()) as { refresh_token: string; access_token: string };
    for (const at of [100, 200, 290]) {
      clockAt(at);
      const res = await refresh(tokens.refresh_token);
      expect(res.status, `refresh at ${at} s`).toBe(200);
      tokens = (await res.json()) as typeof tokens;
    }
    clockAt(REFRESH_TTL + 10);
    const before = tokenRows();
    await oauthError(await refresh(tokens.refresh_token), 400, 'invalid_grant');
    expect(tokenRows()).toBeLessThanOrEqual(before);
    // Later tries stay refused (no sliding window reopens).
    clockAt(REFRESH_TTL + 200);
    await oauthError(await refresh(tokens.refresh_token), 400, 'invalid_grant');
  });

  it('OA-46 the refresh lifetime cannot be configured beyond one year', () => {
    expect(configProblems({ tokens: { refreshTokenTTL: 31_536_001 } })).toEqual(['tokens.refreshTokenTTL: Too big: expected number to be <=31536000']);
  });
});

describe('OA-49 PAR request_uri lifetime', () => {
  async function push(): Promise<string> {
    const res = await postForm(
      `${tb.base}/request`,
      { client_id: 'web', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', state: 'par-state' },
      { authorization: basic('web', WEB_SECRET) },
    );
    const body = (await res.json()) as { request_uri: string; expires_in: number };
    expect(res.status).toBe(201);
    expect(body.expires_in).toBeLessThanOrEqual(60);
    return body.request_uri;
  }
  const use = (ua: UserAgent, requestUri: string) => ua.get(`${tb.base}/auth?${new URLSearchParams({ client_id: 'web', request_uri: requestUri })}`);

  it('OA-49 an expired request_uri -> invalid_request_uri, no login started', async () => {
    const requestUri = await push();
    clockAt(61);
    const ua = new UserAgent();
    const res = await use(ua, requestUri);
    const loc = new URL(res.headers.get('location')!);
    expect(`${loc.origin}${loc.pathname}`).toBe(REDIRECT);
    expect(loc.searchParams.get('error')).toBe('invalid_request_uri');
    expect(loc.searchParams.get('code')).toBeNull();
    expect(res.headers.getSetCookie().some((c) => c.startsWith('_interaction='))).toBe(false);
  });

  it('OA-49 [P] the same request_uri within its lifetime starts the login', async () => {
    const requestUri = await push();
    clockAt(50);
    const res = await use(new UserAgent(), requestUri);
    expect(res.headers.get('location')).toMatch(/^\/interaction\//);
  });
});
