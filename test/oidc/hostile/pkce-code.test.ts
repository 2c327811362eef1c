// Hostile tests for PKCE (catalogue 1B), the authorization code (1C) and refresh tokens (1E).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { API, OPAQUE_API, REDIRECT, clientKey, startTestBroker, testConfig, type TestBroker } from '../../helpers/broker.ts';
import { DbCounter, WEB_SECRET, basic, codeRequest, createsNothing, driveLogin, introspect, oauthError, postForm, redeemCode, s256 } from './support.ts';

const WEB2_SECRET = 'web2-secret-0123456789';

let tb: TestBroker;
let db: DbCounter;

beforeAll(async () => {
  const svcKey = await clientKey('ES256');
  // A second confidential code+refresh client, so a refresh token can be presented by "another client"
  // that is otherwise allowed the refresh_token grant.
  const clients = [
    ...testConfig(0, 'sqlite::memory:', svcKey).clients!,
    { client_id: 'web2', client_secret: WEB2_SECRET, token_endpoint_auth_method: 'client_secret_basic' as const, grant_types: ['authorization_code' as const, 'refresh_token' as const], redirect_uris: [REDIRECT], resources: [API], firstParty: true, scope: 'openid profile offline_access patient/Patient.rs' },
  ];
  tb = await startTestBroker({ svcKey, extra: { clients } });
  db = new DbCounter(tb);
});
afterAll(async () => {
  db?.close();
  await tb?.close();
});

/** Follows the authorization redirect of a request the broker must refuse; returns the error parameters. */
async function authorizeError(url: string): Promise<URLSearchParams> {
  const res = await fetch(url, { redirect: 'manual' });
  expect([302, 303]).toContain(res.status);
  const loc = new URL(res.headers.get('location')!);
  expect(`${loc.origin}${loc.pathname}`).toBe(REDIRECT);
  expect(loc.searchParams.get('code')).toBeNull();
  return loc.searchParams;
}

/** A full login through the demo upstream; returns the code and what is needed to redeem it. */
async function login(overrides: Record<string, string | undefined> = {}) {
  const req = codeRequest(tb.base, overrides);
  const { back } = await driveLogin(req.url, tb.base);
  const code = back.searchParams.get('code');
  expect(code, back.href).toBeTruthy();
  return { code: code!, verifier: req.verifier, state: req.state };
}

async function tokenJson(res: Response): Promise<Record<string, string>> {
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return JSON.parse(text) as Record<string, string>;
}

const userinfo = (token: string) => fetch(`${tb.base}/me`, { headers: { authorization: `Bearer ${token}` } });

describe('1B PKCE', () => {
  it.each([
    ['public client', 'public-app'],
    ['confidential client', 'web'],
  ])('OA-14: %s without code_challenge -> invalid_request redirect with state and iss, nothing created', async (_label, clientId) => {
    await createsNothing(db, async () => {
      const { url, state } = codeRequest(tb.base, { client_id: clientId, code_challenge: undefined, code_challenge_method: undefined });
      const params = await authorizeError(url);
      expect(params.get('error')).toBe('invalid_request');
      expect(params.get('state')).toBe(state);
      expect(params.get('iss')).toBe(tb.base);
    });
  });

  it('OA-16: code_challenge_method=plain is refused', async () => {
    await createsNothing(db, async () => {
      const verifier = randomBytes(32).toString('base64url');
      const params = await authorizeError(codeRequest(tb.base, { code_challenge: verifier, code_challenge_method: 'plain' }).url);
      expect(params.get('error')).toBe('invalid_request');
    });
  });

  it('code_challenge without code_challenge_method is refused (no silent fallback to plain)', async () => {
    await createsNothing(db, async () => {
      const verifier = randomBytes(32).toString('base64url');
      const params = await authorizeError(codeRequest(tb.base, { code_challenge: verifier, code_challenge_method: undefined }).url);
      expect(params.get('error')).toBe('invalid_request');
    });
  });

  it.each([
    ['too short', 'abc'],
    ['not base64url', `${'a'.repeat(42)}+`],
    ['too long', 'a'.repeat(129)],
  ])('a malformed code_challenge (%s) is refused', async (_label, challenge) => {
    await createsNothing(db, async () => {
      const params = await authorizeError(codeRequest(tb.base, { code_challenge: challenge }).url);
      expect(params.get('error')).toBe('invalid_request');
    });
  });

  it('OA-17: token request without code_verifier -> invalid_grant, nothing issued; [P] the right verifier then works', async () => {
    const { code, verifier } = await login();
    await createsNothing(db, async () => oauthError(await redeemCode(tb.base, code, undefined), 400, 'invalid_grant'));
    await createsNothing(db, async () => oauthError(await redeemCode(tb.base, code, randomBytes(32).toString('base64url')), 400, 'invalid_grant'));
    const tokens = await tokenJson(await redeemCode(tb.base, code, verifier));
    expect(tokens.access_token).toBeTruthy();
  });

  it('OA-19: downgrade is impossible: without a challenge no code is ever issued, so a verifier has nothing to bind to', async () => {
    await createsNothing(db, async () => {
      const { url } = codeRequest(tb.base, { code_challenge: undefined, code_challenge_method: undefined });
      const params = await authorizeError(url);
      expect(params.get('error')).toBe('invalid_request');
      expect(params.get('code')).toBeNull();
    });
  });

  it.each([
    ['42 characters', 'a'.repeat(42)],
    ['129 characters', 'b'.repeat(129)],
    ['a character outside the unreserved set', `${'c'.repeat(42)}+`],
    ['a space', `${'d'.repeat(21)} ${'d'.repeat(21)}`],
    ['a percent-encoded byte', `${'e'.repeat(40)}%41`],
  ])('OA-20: a malformed code_verifier (%s) is refused even when its S256 matches the challenge', async (_label, badVerifier) => {
    // The challenge is computed from the malformed verifier, so only the format check can reject it.
    const { code } = await login({ code_challenge: s256(badVerifier), verifier: badVerifier });
    await createsNothing(db, async () => oauthError(await redeemCode(tb.base, code, badVerifier), 400, ['invalid_grant', 'invalid_request']));
  });
});

describe('1C authorization code', () => {
  it('OA-22: reuse after success -> invalid_grant and every token of the first redemption is revoked', async () => {
    // Opaque access token (no resource) for userinfo, plus a JWT access token and refresh token from a second login.
    const first = await login();
    const opaque = await tokenJson(await redeemCode(tb.base, first.code, first.verifier));
    expect(opaque.access_token.split('.')).toHaveLength(1);
    expect((await userinfo(opaque.access_token)).status).toBe(200);
    // A token without a resource has no resource server: its own client introspects it.
    expect((await introspect(tb.base, opaque.access_token, ['web', WEB_SECRET])).active).toBe(true);

    await oauthError(await redeemCode(tb.base, first.code, first.verifier), 400, 'invalid_grant');

    const info = await userinfo(opaque.access_token);
    expect(info.status).toBe(401);
    expect(info.headers.get('www-authenticate') ?? '').toMatch(/^Bearer /);
    expect((await introspect(tb.base, opaque.access_token, ['web', WEB_SECRET])).active).toBe(false);
    // Reusing it again keeps failing (no resurrection).
    await oauthError(await redeemCode(tb.base, first.code, first.verifier), 400, 'invalid_grant');
  });

  it('OA-22: reuse also revokes the JWT access token and the refresh token of the grant', async () => {
    const { code, verifier } = await login({ scope: 'openid profile offline_access patient/Patient.rs', resource: API, prompt: 'consent' });
    const tokens = await tokenJson(await redeemCode(tb.base, code, verifier));
    expect(tokens.access_token.split('.')).toHaveLength(3);
    expect(tokens.refresh_token).toBeTruthy();
    expect((await introspect(tb.base, tokens.access_token)).active).toBe(true);
    const refreshRows = db.snapshot()['oidc:RefreshToken'];

    await oauthError(await redeemCode(tb.base, code, verifier), 400, 'invalid_grant');

    expect((await introspect(tb.base, tokens.access_token)).active).toBe(false);
    expect((await introspect(tb.base, tokens.refresh_token)).active).toBe(false);
    expect(db.snapshot()['oidc:RefreshToken'] ?? 0).toBe(refreshRows - 1);
    await oauthError(await postForm(`${tb.base}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, { authorization: basic('web', WEB_SECRET) }), 400, 'invalid_grant');
  });

  it('OA-25: token redirect_uri differs from the authorization request -> invalid_grant; [P] the matching one works', async () => {
    const { code, verifier } = await login();
    for (const other of ['https://client.test/cb/', 'https://client.test/other', 'https://evil.example/cb']) {
      await createsNothing(db, async () => oauthError(await redeemCode(tb.base, code, verifier, { redirectUri: other }), 400, 'invalid_grant'));
    }
    expect((await tokenJson(await redeemCode(tb.base, code, verifier))).access_token).toBeTruthy();
  });

  it('a code issued to one client cannot be redeemed by another (both directions)', async () => {
    const forWeb = await login();
    await createsNothing(db, async () => oauthError(await redeemCode(tb.base, forWeb.code, forWeb.verifier, { client: 'public-app' }), 400, 'invalid_grant'));
    await createsNothing(db, async () => oauthError(await redeemCode(tb.base, forWeb.code, forWeb.verifier, { client: ['web2', WEB2_SECRET] }), 400, 'invalid_grant'));

    const forPublic = await login({ client_id: 'public-app' });
    await createsNothing(db, async () => oauthError(await redeemCode(tb.base, forPublic.code, forPublic.verifier, { client: ['web', WEB_SECRET] }), 400, 'invalid_grant'));
    // [P] each owner can still redeem its own code.
    expect((await tokenJson(await redeemCode(tb.base, forWeb.code, forWeb.verifier))).access_token).toBeTruthy();
    expect((await tokenJson(await redeemCode(tb.base, forPublic.code, forPublic.verifier, { client: 'public-app' }))).access_token).toBeTruthy();
  });

  it('an unknown or garbage code -> invalid_grant', async () => {
    for (const code of ['nope', randomBytes(32).toString('base64url'), 'x'.repeat(4000), 'jwt:a.b.c']) {
      await createsNothing(db, async () => oauthError(await redeemCode(tb.base, code, randomBytes(32).toString('base64url')), 400, ['invalid_grant', 'invalid_request']));
    }
  });
});

describe('1E refresh tokens', () => {
  async function refreshable() {
    const { code, verifier } = await login({ scope: 'openid profile offline_access patient/Patient.rs', resource: API, prompt: 'consent' });
    const tokens = await tokenJson(await redeemCode(tb.base, code, verifier));
    expect(tokens.refresh_token).toBeTruthy();
    return tokens;
  }
  const refresh = (rt: string, headers: Record<string, string>, extra: Record<string, string> = {}) =>
    postForm(`${tb.base}/token`, { grant_type: 'refresh_token', refresh_token: rt, ...extra }, headers);

  it('OA-40: a refresh token presented by another client -> invalid_grant, nothing issued', async () => {
    const tokens = await refreshable();
    await createsNothing(db, async () => oauthError(await refresh(tokens.refresh_token, { authorization: basic('web2', WEB2_SECRET) }), 400, 'invalid_grant'));
    // A client that may not refresh at all is refused too.
    await createsNothing(db, async () => oauthError(await refresh(tokens.refresh_token, {}, { client_id: 'public-app' }), 400, ['invalid_grant', 'unauthorized_client', 'invalid_request']));
    // [P] the owner still can.
    expect((await tokenJson(await refresh(tokens.refresh_token, { authorization: basic('web', WEB_SECRET) }))).access_token).toBeTruthy();
  });

  it('OA-41: a confidential client refreshing without authentication -> 401 invalid_client', async () => {
    const tokens = await refreshable();
    await createsNothing(db, async () => {
      const res = await refresh(tokens.refresh_token, {}, { client_id: 'web' });
      await oauthError(res, 401, 'invalid_client');
    });
    await createsNothing(db, async () => oauthError(await refresh(tokens.refresh_token, { authorization: basic('web', 'wrong-secret-0123456789') }), 401, 'invalid_client'));
    // The failed attempts did not burn or revoke it.
    expect((await tokenJson(await refresh(tokens.refresh_token, { authorization: basic('web', WEB_SECRET) }))).refresh_token).toBeTruthy();
  });

  it('OA-47: refresh with a broader scope -> invalid_scope; [P] a narrower one is fine', async () => {
    const tokens = await refreshable();
    for (const scope of ['openid profile offline_access patient/Patient.rs email', 'openid nhs_number', 'openid profile system/Patient.rs']) {
      await createsNothing(db, async () => oauthError(await refresh(tokens.refresh_token, { authorization: basic('web', WEB_SECRET) }, { scope }), 400, 'invalid_scope'));
    }
    const narrower = await tokenJson(await refresh(tokens.refresh_token, { authorization: basic('web', WEB_SECRET) }, { scope: 'openid patient/Patient.rs' }));
    expect(narrower.scope).toBe('patient/Patient.rs');
    expect(narrower.refresh_token).toBeTruthy();
  });

  it.each([
    ['a resource the client is not allowed', { resource: OPAQUE_API }],
    ['an unknown resource', { resource: 'https://unknown.example' }],
  ])('refresh for %s -> invalid_target, and the rejected request neither burns the refresh token nor mints a new one', async (_label, extra) => {
    const tokens = await refreshable();
    const before = db.snapshot();
    await oauthError(await refresh(tokens.refresh_token, { authorization: basic('web', WEB_SECRET) }, extra), 400, 'invalid_target');
    // A refused request must not rotate: no orphan refresh token that nobody received...
    expect.soft(db.snapshot(), 'rows created by a rejected refresh').toEqual(before);
    // ...and the client's refresh token still works (a retry must not look like reuse and revoke the grant).
    const retry = await refresh(tokens.refresh_token, { authorization: basic('web', WEB_SECRET) });
    expect(retry.status, await retry.clone().text()).toBe(200);
  });

  it('a code redeemed with a resource the client is not allowed -> invalid_target, no token issued', async () => {
    const { code, verifier } = await login({ scope: 'openid profile patient/Patient.rs', resource: API });
    await createsNothing(db, async () => oauthError(await redeemCode(tb.base, code, verifier, { extra: { resource: OPAQUE_API } }), 400, 'invalid_target'));
  });
});
