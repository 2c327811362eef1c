import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import type { Context } from 'koa';
import { createOidcConnector, OidcConfigError } from '../../../providers/oidc/index.ts';
import { UpstreamAuthError, UpstreamUnavailableError, type UpstreamIdentity } from '../../../src/identity/upstream.ts';
import { CIS2_CLIENT_ID, CIS2_ISSUER_PATH, startFakeCis2, type FakeCis2 } from '../../peers/fake-cis2.ts';
import { Browser, driveConnector, mappedFetch, startHarness, type Harness } from './harness.ts';

// The connector on its own (begin, the fake upstream, complete): what it asks the upstream for, and
// the UpstreamIdentity it hands the broker: subject, claims, assurance, auth time, session.

function reasonOf(error: unknown): string {
  expect(error).toBeInstanceOf(UpstreamAuthError);
  return (error as UpstreamAuthError).reason;
}

describe('OIDC connector', () => {
  let h: Harness;
  const cis2 = () => h.connectors.get('cis2')!;
  const nhs = () => h.connectors.get('nhs-login')!;

  beforeAll(async () => {
    h = await startHarness({ broker: false });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function cis2Login(persona: string, request: Parameters<typeof driveConnector>[1] = {}) {
    return driveConnector(cis2(), { loginHint: persona, ...request }, { base: h.base });
  }
  async function nhsLogin(persona: string, request: Parameters<typeof driveConnector>[1] = {}) {
    h.nhs.defaultPersona = persona;
    return driveConnector(nhs(), request, { base: h.base });
  }
  function identity(r: { identity?: UpstreamIdentity; error?: unknown }): UpstreamIdentity {
    if (!r.identity) throw r.error instanceof UpstreamAuthError ? new Error(r.error.reason) : r.error;
    return r.identity;
  }

  describe('CIS2 preset', () => {
    it('a nurse with two roles: roles from userinfo, the picked role from the ID token, AAL3 from the string "3"', async () => {
      const id = identity(await cis2Login('nurse'));
      expect(id.provider).toBe('cis2');
      expect(id.subject).toBe('555057896106');
      expect(id.assurance).toEqual({ acr: 'AAL3_ANY', amr: ['N3_SMARTCARD'], aal: 3 });
      expect(id.claims.nhsid_nrbac_roles).toHaveLength(2);
      expect(id.claims.selected_roleid).toBe('555057996107');
      expect(id.claims.nhsid_useruid).toBe('555057896106');
      expect(id.claims.authentication_assurance_level).toBe('3');
      expect(id.sessionIndex).toEqual(expect.any(String));
      expect(Math.abs(id.authTime - Date.now() / 1000)).toBeLessThan(30);
      // Token and ForgeRock plumbing are not claims about the person; sub never leaks into the profile.
      for (const k of ['iss', 'aud', 'exp', 'iat', 'nonce', 'sub', 'sid', 'acr', 'amr', 'auditTrackingId', 'tokenName', 'realm', 'org.forgerock.openidconnect.ops']) expect(id.claims).not.toHaveProperty(k);
    });

    it('one role: auto-selected; no roles: no selected_roleid', async () => {
      const gp = identity(await cis2Login('gp'));
      expect(gp.claims.selected_roleid).toBe('555000000201');
      expect(gp.assurance.amr).toEqual(['FIDO2']);
      const none = identity(await cis2Login('noRoles'));
      expect(none.claims.nhsid_nrbac_roles).toEqual([]);
      expect(none.claims).not.toHaveProperty('selected_roleid');
    });

    it('assurance levels as numbers (APIM mocks) read the same', async () => {
      h.cis2.knobs.assuranceLevelsAs = 'number';
      try {
        const id = identity(await cis2Login('admin'));
        expect(id.claims.authentication_assurance_level).toBe(2);
        expect(id.assurance.aal).toBe(2);
      } finally {
        h.cis2.knobs.assuranceLevelsAs = 'string';
      }
    });

    it('without authentication_assurance_level the AAL comes from the acr prefix', async () => {
      h.cis2.tamper = { omit: ['authentication_assurance_level'] };
      expect(identity(await cis2Login('gp')).assurance.aal).toBe(3);
    });

    it('a selected_roleid the user does not hold is refused', async () => {
      h.cis2.knobs.selectRole = '999999999999';
      try {
        expect(reasonOf((await cis2Login('nurse')).error)).toMatch(/selected_roleid is not one of nhsid_nrbac_roles/);
      } finally {
        h.cis2.knobs.selectRole = undefined;
      }
    });

    it('minimumAssurance aal 3 -> acr_values=AAL3_ANY; aal 2 -> AAL2_OR_AAL3_ANY (what the fake received)', async () => {
      const three = identity(await cis2Login('gp', { minimumAssurance: { aal: 3 } }));
      expect(h.cis2.received.authorize.at(-1)!.get('acr_values')).toBe('AAL3_ANY');
      expect(three.assurance.aal).toBe(3);
      const two = identity(await cis2Login('admin', { minimumAssurance: { aal: 2 } }));
      expect(h.cis2.received.authorize.at(-1)!.get('acr_values')).toBe('AAL2_OR_AAL3_ANY');
      expect(two.assurance).toMatchObject({ acr: 'AAL2_OR_AAL3_ANY', aal: 2 });
    });

    it('an upstream that answers an AAL3 request with AAL2 is refused', async () => {
      h.cis2.tamper = { claims: { authentication_assurance_level: '2', acr: 'AAL2_ANY' } };
      expect(reasonOf((await cis2Login('gp', { minimumAssurance: { aal: 3 } })).error)).toMatch(/aal 2 is below the requested 3/);
    });

    it('max_age, prompt=login and login_hint pass through; a stale auth_time is refused', async () => {
      identity(await cis2Login('gp', { maxAge: 300, prompt: 'login consent' }));
      const sent = h.cis2.received.authorize.at(-1)!;
      expect(sent.get('max_age')).toBe('300');
      expect(sent.get('prompt')).toBe('login');
      expect(sent.get('login_hint')).toBe('gp');
      h.cis2.tamper = { claims: { auth_time: Math.floor(Date.now() / 1000) - 3600 } };
      expect(reasonOf((await cis2Login('gp', { maxAge: 300 })).error)).toMatch(/too much time has elapsed since the last End-User authentication/);
    });

    it('the broker\'s own prompts (consent, select_account) do not travel upstream', async () => {
      identity(await cis2Login('gp', { prompt: 'consent' }));
      expect(h.cis2.received.authorize.at(-1)!.has('prompt')).toBe(false);
    });

    it('an ID token that expired within the configured clock skew is still accepted', async () => {
      h.cis2.tamper = { exp: -10 };
      identity(await cis2Login('gp'));
    });

    it('a userinfo sub other than the ID token\'s is refused', async () => {
      h.cis2.tamperUserinfo = { sub: '555999999999' };
      expect(reasonOf((await cis2Login('gp')).error)).toMatch(/userinfo/);
    });

    it('an error answer from the upstream is refused with its error code as the reason', async () => {
      expect(reasonOf((await cis2Login('admin', { minimumAssurance: { aal: 3 } })).error)).toMatch(/access_denied/);
    });
  });

  describe('NHS login preset', () => {
    it('P9: vot, proofing, aal 2 from the credentials, acr = vot, NHS number', async () => {
      const id = identity(await nhsLogin('p9'));
      expect(id.assurance).toEqual({ acr: 'P9.Cp.Cd', vot: 'P9.Cp.Cd', proofing: 'P9', aal: 2 });
      expect(id.claims).toMatchObject({ nhs_number: '9912003071', identity_proofing_level: 'P9', vot: 'P9.Cp.Cd' });
      expect(id.claims).not.toHaveProperty('token_use');
    });

    it('minimumAssurance P9 -> vtr of P9 vectors; P5 -> P5 vectors (what the fake received)', async () => {
      identity(await nhsLogin('p9', { minimumAssurance: { proofing: 'P9' } }));
      expect(JSON.parse(h.nhs.received.authorize.at(-1)!.get('vtr')!)).toEqual(['P9.Cp.Cd', 'P9.Cp.Ck', 'P9.Cm']);
      const p5 = identity(await nhsLogin('p5', { minimumAssurance: { proofing: 'P5' } }));
      expect(JSON.parse(h.nhs.received.authorize.at(-1)!.get('vtr')!)).toEqual(['P5.Cp.Cd', 'P5.Cp.Ck', 'P5.Cm']);
      expect(p5.assurance).toMatchObject({ vot: 'P5.Cp.Cd', proofing: 'P5' });
    });

    it('a P9 person asked only for P5 counts as P5 in this login (the lower of vot and identity_proofing_level)', async () => {
      const id = identity(await nhsLogin('p9', { minimumAssurance: { proofing: 'P5' } }));
      expect(id.claims.identity_proofing_level).toBe('P9');
      expect(id.assurance.proofing).toBe('P5');
    });

    it('a vot that is not one of the requested vectors is refused', async () => {
      h.nhs.tamper = { claims: { vot: 'P5.Cp.Cd' } };
      expect(reasonOf((await nhsLogin('p9', { minimumAssurance: { proofing: 'P9' } })).error)).toMatch(/vot P5.Cp.Cd is not one of the requested vtr/);
    });

    it('no vot at all is refused', async () => {
      h.nhs.tamper = { omit: ['vot'] };
      expect(reasonOf((await nhsLogin('p9')).error)).toMatch(/no vot/);
    });

    it('NHS login has no max_age or login_hint: a fresh login is forced with prompt=login instead', async () => {
      identity(await nhsLogin('p9', { maxAge: 60, loginHint: 'someone' }));
      const sent = h.nhs.received.authorize.at(-1)!;
      expect(sent.has('max_age')).toBe(false);
      expect(sent.has('login_hint')).toBe(false);
      expect(sent.get('prompt')).toBe('login');
    });

    it('an RS256 ID token is refused where NHS login signs RS512', async () => {
      h.nhs.tamper = { alg: 'RS256' };
      expect(reasonOf((await nhsLogin('p9')).error)).toMatch(/"alg"/);
    });
  });

  describe('metadata and configuration', () => {
    it('static metadata from the CIS2 preset paths (no discovery)', async () => {
      const c = await createOidcConnector(h.cis2Config({ id: 'cis2-static', discovery: false }), h.deps);
      const id = identity(await driveConnector(c, { loginHint: 'gp' }, { base: h.base }));
      expect(id.assurance.aal).toBe(3);
      expect(h.cis2.received.token.at(-1)!.assertionClaims?.aud).toBe(`${h.cis2.issuer}/access_token`);
    });

    it('a discovery document naming another issuer stops the start-up (catalogue RP-08)', async () => {
      const issuer = h.nhs.issuer.replace('127.0.0.1', 'localhost');
      await expect(createOidcConnector(h.nhsConfig({ id: 'nhs-login-b', issuer }), h.deps)).rejects.toMatchObject({ code: 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED' });
    });

    it('plain http is refused unless the test-only allowInsecureUpstream is set', async () => {
      await expect(createOidcConnector(h.cis2Config({ id: 'cis2-b' }), { ...h.deps, allowInsecureUpstream: false })).rejects.toBeInstanceOf(OidcConfigError);
      await expect(createOidcConnector(h.cis2Config({ id: 'cis2-b', discovery: false }), { ...h.deps, allowInsecureUpstream: false })).rejects.toBeInstanceOf(OidcConfigError);
    });

    it('a client key that does not fit the algorithm stops the start-up', async () => {
      await expect(createOidcConnector(h.cis2Config({ id: 'cis2-b', signing_alg: 'ES256' }), h.deps)).rejects.toBeInstanceOf(OidcConfigError);
    });

    it('an upstream down at start-up: the connector is created, logins get 503 until it is back', async () => {
      await h.nhs.stop();
      let c;
      try {
        c = await createOidcConnector(h.nhsConfig({ id: 'nhs-login-b' }), h.deps);
        const ctx = { redirect() {}, status: 200 } as unknown as Context;
        const err = await c.begin(ctx, { callbackUrl: `${h.base}/upstream/nhs-login-b/callback`, transactionId: 'x'.repeat(32) }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(UpstreamUnavailableError);
        // Within the retry window it fails fast, without another attempt.
        const t0 = Date.now();
        await expect(c.begin(ctx, { callbackUrl: `${h.base}/upstream/nhs-login-b/callback`, transactionId: 'y'.repeat(32) })).rejects.toBeInstanceOf(UpstreamUnavailableError);
        expect(Date.now() - t0).toBeLessThan(50);
      } finally {
        await h.nhs.restart();
      }
    });

    it('an upstream down at start-up and back before the first login just works', async () => {
      await h.nhs.stop();
      const c = await createOidcConnector(h.nhsConfig({ id: 'nhs-login-b' }), h.deps).finally(() => h.nhs.restart());
      h.nhs.defaultPersona = 'p9';
      identity(await driveConnector(c, {}, { base: h.base }));
    });
  });

  describe('CIS2 issuer with an explicit ":443" (nhs-interfaces.md 1.1), over https', () => {
    const ISSUER = `https://cis2.test:443${CIS2_ISSUER_PATH}`;
    let fake443: FakeCis2;
    let mappings: Array<{ from: string; to: string }>;

    beforeAll(async () => {
      fake443 = await startFakeCis2({
        publicOrigin: 'https://cis2.test:443',
        clients: [{ client_id: CIS2_CLIENT_ID, redirect_uris: ['cis2-443', 'cis2-443-static', 'cis2-generic'].map((id) => `${h.base}/upstream/${id}/callback`), token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'RS512', jwks: { keys: [h.cis2Key.publicJwk as { kty: string }] }, grant_types: ['authorization_code'], response_types: ['code'] }],
      });
      mappings = [{ from: 'https://cis2.test:443', to: fake443.origin }];
    });
    afterAll(async () => {
      await fake443?.close();
    });

    it('the fake publishes the ":443" form in discovery and in iss', async () => {
      expect(fake443.issuer).toBe(ISSUER);
      const doc = (await (await mappedFetch(mappings)(`https://cis2.test${CIS2_ISSUER_PATH}/.well-known/openid-configuration`, { method: 'GET', headers: {}, redirect: 'manual', body: undefined })).json()) as { issuer: string; token_endpoint: string };
      expect(doc.issuer).toBe(ISSUER);
    });

    it('discovery: https only (no insecure allowance), iss matched exactly in the callback and the ID token', async () => {
      const c = await createOidcConnector(h.cis2Config({ id: 'cis2-443', issuer: ISSUER }), { ...h.deps, allowInsecureUpstream: false }, { fetch: mappedFetch(mappings) });
      const r = await driveConnector(c, { loginHint: 'gp' }, { base: h.base, browser: new Browser(mappings) });
      expect(r.callback?.searchParams.get('iss')).toBe(ISSUER);
      expect(identity(r).assurance.aal).toBe(3);
    });

    it('static metadata: the preset writes the issuer with ":443" even when configured without it', async () => {
      const c = await createOidcConnector(h.cis2Config({ id: 'cis2-443-static', issuer: `https://cis2.test${CIS2_ISSUER_PATH}`, discovery: false }), { ...h.deps, allowInsecureUpstream: false }, { fetch: mappedFetch(mappings) });
      const r = await driveConnector(c, { loginHint: 'gp' }, { base: h.base, browser: new Browser(mappings) });
      identity(r);
      expect(fake443.received.token.at(-1)!.assertionClaims?.aud).toBe(`https://cis2.test${CIS2_ISSUER_PATH}/access_token`);
    });

    it('without the preset, an issuer configured without ":443" does not match the upstream\'s iss', async () => {
      const path = `https://cis2.test${CIS2_ISSUER_PATH}`;
      const c = await createOidcConnector(
        h.cis2Config({ id: 'cis2-generic', preset: 'generic', issuer: path, authorization_endpoint: `${path}/authorize`, token_endpoint: `${path}/access_token`, jwks_uri: `${path}/connect/jwk_uri`, userinfo_endpoint: `${path}/userinfo`, id_token_signed_response_alg: 'RS256', signing_alg: 'RS512' }),
        { ...h.deps, allowInsecureUpstream: false },
        { fetch: mappedFetch(mappings) },
      );
      const r = await driveConnector(c, { loginHint: 'gp' }, { base: h.base, browser: new Browser(mappings) });
      expect(reasonOf(r.error)).toMatch(/iss/);
    });
  });
});
