import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { CIS2_CLIENT_ID } from '../../peers/fake-cis2.ts';
import { NHS_LOGIN_CLIENT_ID } from '../../peers/fake-nhs-login.ts';
import { startHarness, type Harness } from './harness.ts';
import { LOGOUT_JWKS_COOLDOWN_MS, logoutVerifier } from '../../../providers/oidc/backchannel-logout.ts';

// Back-channel logout from the upstream, posted to the broker's /upstream/<id>/backchannel-logout
// (catalogue RP-13; CIS2's consumers' checks, nhs-interfaces.md 1.10). A valid token reaches the
// broker's onUpstreamLogout; anything else is a 400 and reaches nothing.

describe('upstream back-channel logout', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  async function post(id: string, body: string): Promise<Response> {
    return fetch(`${h.base}/upstream/${id}/backchannel-logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  }
  const form = (token: string) => new URLSearchParams({ logout_token: token }).toString();

  it('a valid CIS2 logout token ends the session it names (sid and sub) once; its replay is refused', async () => {
    const token = await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 'session-1', sub: '555057896106' });
    const before = h.logouts.length;
    const res = await post('cis2', form(token));
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(h.logouts.slice(before)).toEqual([{ provider: 'cis2', sid: 'session-1', subject: '555057896106' }]);
    const replay = await post('cis2', form(token));
    expect(replay.status).toBe(400);
    expect(h.logouts.length).toBe(before + 1);
  });

  it('a key rotated in at the upstream: refused during the JWKS cooldown, accepted after the refetch', async () => {
    expect((await post('cis2', form(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 'before-rotation' })))).status).toBe(200);
    await h.cis2.rotateKeys();
    const fetches = h.cis2.received.jwks;
    // Anyone can post here, so an unknown kid cannot make the broker refetch at will.
    expect((await post('cis2', form(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 'too-soon' })))).status).toBe(400);
    await new Promise((r) => setTimeout(r, LOGOUT_JWKS_COOLDOWN_MS + 100));
    expect((await post('cis2', form(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 'after-rotation' })))).status).toBe(200);
    expect(h.cis2.received.jwks).toBe(fetches + 1);
    expect(h.logouts.at(-1)).toEqual({ provider: 'cis2', sid: 'after-rotation', subject: undefined });
  });

  // Each refusal with the check that caught it (seen through the verifier the route uses).
  const refusals: Array<[string, () => Promise<string>, RegExp]> = [
    ['a nonce', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', claims: { nonce: 'n' } }), /nonce/],
    ['no events claim', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', omit: ['events'] }), /events/],
    ['another event', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', claims: { events: { 'http://schemas.openid.net/event/other': {} } } }), /no backchannel-logout event/],
    ['the wrong aud', () => h.cis2.logoutToken({ clientId: 'someone-else', sid: 's' }), /"aud"/],
    ['the wrong iss', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', claims: { iss: 'https://evil.example' } }), /"iss"/],
    ['alg none', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', sign: 'none' }), /verification failed/],
    ['an algorithm other than the ID token one', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', alg: 'RS512' }), /"alg"/],
    ['typ of another kind of JWT', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', typ: 'at+jwt' }), /typ at\+jwt/],
    ['a key not in the JWKS', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', sign: 'foreign' }), /no applicable key/],
    ['a forged signature under a known kid', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', sign: 'forged' }), /signature verification failed/],
    ['no jti', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', omit: ['jti'] }), /"jti"/],
    ['neither sub nor sid', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID }), /neither sub nor sid/],
    ['expired', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', claims: { iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 } }), /"exp"/],
    ['issued too long ago', () => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's', omit: ['exp'], claims: { iat: Math.floor(Date.now() / 1000) - 3600 } }), /"iat"/],
  ];
  for (const [name, make, reason] of refusals) {
    it(`refuses a logout token with ${name}`, async () => {
      const before = h.logouts.length;
      const token = await make();
      const res = await post('cis2', form(token));
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: 'invalid_request', error_description: 'the logout token is not valid' });
      expect(h.logouts.length).toBe(before);
      const verify = logoutVerifier({ id: 'cis2', clientId: CIS2_CLIENT_ID, algorithms: ['RS256'], typs: ['logout+jwt', 'JWT'], clockTolerance: 30, timeoutMs: 1500, deps: h.deps, metadata: async () => ({ issuer: h.cis2.issuer, jwks_uri: `${h.cis2.issuer}/connect/jwk_uri` }) });
      await expect(verify(token)).rejects.toThrow(reason);
    });
  }

  it('refuses no token, two tokens, or a non-form body', async () => {
    const token = await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 's' });
    expect((await post('cis2', '')).status).toBe(400);
    expect((await post('cis2', `${form(token)}&${form(token)}`)).status).toBe(400);
    const json = await fetch(`${h.base}/upstream/cis2/backchannel-logout`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ logout_token: token }) });
    expect(json.status).toBe(400);
  });

  it('typ "JWT" is accepted from CIS2 (ForgeRock) but not from NHS login, which must type its tokens', async () => {
    const cis2 = await post('cis2', form(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sub: '555000000001', typ: 'JWT' })));
    expect(cis2.status).toBe(200);
    const nhs = await post('nhs-login', form(await h.nhs.logoutToken({ clientId: NHS_LOGIN_CLIENT_ID, sub: 'x', typ: 'JWT' })));
    expect(nhs.status).toBe(400);
    const typed = await post('nhs-login', form(await h.nhs.logoutToken({ clientId: NHS_LOGIN_CLIENT_ID, sub: 'x' })));
    expect(typed.status).toBe(200);
  });

  it('a token from one upstream is refused at another\'s endpoint', async () => {
    const res = await post('nhs-login', form(await h.cis2.logoutToken({ clientId: NHS_LOGIN_CLIENT_ID, sid: 's' })));
    expect(res.status).toBe(400);
  });
});
