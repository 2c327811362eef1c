import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { createRemoteJWKSet, jwtVerify, SignJWT, decodeJwt } from 'jose';
import { randomBytes } from 'node:crypto';
import { API, OPAQUE_API, REDIRECT, clientKey, startTestBroker, type ClientKey, type TestBroker } from '../helpers/broker.ts';
import { UserAgent, loginThroughDemo } from '../helpers/browser.ts';

// The broker's OAuth/OIDC flows, driven by openid-client 6 as the relying party. Registered once per
// storage backend (test/oidc/flows-*.test.ts), so both backends are held to the same behaviour.

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

export function oidcFlows(backend: string, storeUrl: () => Promise<string | undefined>) {
  describe(`OIDC flows on ${backend}`, () => {
    let tb: TestBroker;
    let svcKey: ClientKey;
    let web: oc.Configuration;
    let svc: oc.Configuration;

    beforeAll(async () => {
      svcKey = await clientKey('ES256');
      tb = await startTestBroker({ store: await storeUrl(), svcKey });
      const insecure = { execute: [oc.allowInsecureRequests] };
      web = await oc.discovery(new URL(tb.base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), insecure);
      svc = await oc.discovery(new URL(tb.base), 'svc', undefined, oc.PrivateKeyJwt({ key: svcKey.privateKey, kid: svcKey.jwk.kid }), insecure);
    });
    afterAll(async () => {
      await tb?.close();
    });

    async function codeFor(persona: string, extra: Record<string, string> = {}) {
      const verifier = oc.randomPKCECodeVerifier();
      const state = oc.randomState();
      const nonce = oc.randomNonce();
      const url = oc.buildAuthorizationUrl(web, {
        redirect_uri: REDIRECT,
        scope: 'openid profile offline_access patient/Patient.rs',
        resource: API,
        code_challenge: await oc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        nonce,
        // OIDC only grants offline_access with prompt=consent.
        prompt: 'consent',
        ...extra,
      });
      const ua = new UserAgent();
      const back = await loginThroughDemo(ua, url.href, persona, tb.base);
      return { back, verifier, state, nonce, ua };
    }

    async function tokensFor(persona: string) {
      const { back, verifier, state, nonce } = await codeFor(persona);
      return oc.authorizationCodeGrant(web, back, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
    }

    it('discovery advertises S256 only, iss in responses, code only', () => {
      const m = web.serverMetadata();
      expect(m.code_challenge_methods_supported).toEqual(['S256']);
      expect(m.authorization_response_iss_parameter_supported).toBe(true);
      expect(m.response_types_supported).toEqual(['code']);
      expect(m.pushed_authorization_request_endpoint).toBeTruthy();
      expect(m.dpop_signing_alg_values_supported).toContain('ES256');
    });

    it('authorization code + PKCE: ID token, RFC 9068 access token verified against the JWKS, iss in the response', async () => {
      const { back, verifier, state, nonce } = await codeFor('patient');
      expect(back.searchParams.get('iss')).toBe(tb.base);
      const tokens = await oc.authorizationCodeGrant(web, back, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
      const claims = tokens.claims()!;
      expect(claims.acr).toBe('P9.Cp.Cd');
      expect(claims.name).toBe('Pat Patient');
      const jwks = createRemoteJWKSet(new URL('/jwks', tb.base));
      const { payload, protectedHeader } = await jwtVerify(tokens.access_token, jwks, { issuer: tb.base, audience: API, typ: 'at+jwt' });
      expect(protectedHeader.alg).toBe('ES256');
      expect(payload.sub).toBe(claims.sub);
      expect(payload.client_id).toBe('web');
      expect(payload.scope).toBe('patient/Patient.rs');
      expect(payload.acr).toBe('P9.Cp.Cd');
      expect(tokens.refresh_token).toBeTruthy();
    });

    it('prompt=login (forced re-authentication) completes instead of looping', async () => {
      const { back } = await codeFor('patient', { prompt: 'login consent' });
      expect(back.searchParams.get('code')).toBeTruthy();
    });

    it('refresh tokens rotate on every use, and reuse revokes the whole grant', async () => {
      const first = await tokensFor('carer');
      const second = await oc.refreshTokenGrant(web, first.refresh_token!);
      expect(second.refresh_token).toBeTruthy();
      expect(second.refresh_token).not.toBe(first.refresh_token);
      await expect(oc.refreshTokenGrant(web, first.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
      // The grant is gone: the rotated token and the access tokens die with it.
      await expect(oc.refreshTokenGrant(web, second.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
      const intro = await introspect(second.access_token);
      expect(intro.active).toBe(false);
    });

    async function introspect(token: string, as: [string, string] = ['rs', 'rs-secret-0123456789ab']) {
      const res = await fetch(`${tb.base}/token/introspection`, { method: 'POST', headers: { authorization: basic(...as), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }) });
      expect(res.status).toBe(200);
      return (await res.json()) as Record<string, unknown>;
    }

    it('client_credentials with private_key_jwt; JWT introspects active, then inactive once revoked', async () => {
      const t = await oc.clientCredentialsGrant(svc, { scope: 'system/Patient.rs', resource: API });
      const payload = decodeJwt(t.access_token);
      expect(payload.aud).toBe(API);
      expect(payload.client_id).toBe('svc');
      const before = await introspect(t.access_token);
      expect(before).toMatchObject({ active: true, client_id: 'svc', aud: API, scope: 'system/Patient.rs' });
      // Only the token's own client may revoke it.
      const foreign = await fetch(`${tb.base}/token/revocation`, { method: 'POST', headers: { authorization: basic('other', 'other-secret-0123456789'), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: t.access_token }) });
      expect(foreign.status).toBe(200);
      expect((await introspect(t.access_token)).active).toBe(true);
      await oc.tokenRevocation(svc, t.access_token);
      expect((await introspect(t.access_token)).active).toBe(false);
    });

    it('opaque tokens for resources that ask for them, introspected and revoked', async () => {
      const t = await oc.clientCredentialsGrant(svc, { scope: 'system/Patient.rs', resource: OPAQUE_API });
      expect(t.access_token.split('.').length).toBe(1);
      expect(await introspect(t.access_token)).toMatchObject({ active: true, aud: OPAQUE_API });
      await oc.tokenRevocation(svc, t.access_token);
      expect((await introspect(t.access_token)).active).toBe(false);
    });

    it('a client that is neither the token client nor its resource server learns nothing', async () => {
      const t = await oc.clientCredentialsGrant(svc, { scope: 'system/Patient.rs', resource: API });
      expect(await introspect(t.access_token, ['other', 'other-secret-0123456789'])).toEqual({ active: false });
    });

    it('userinfo with an opaque access token from a code flow without resource', async () => {
      const { back, verifier, state, nonce } = await (async () => {
        const verifier = oc.randomPKCECodeVerifier();
        const state = oc.randomState();
        const nonce = oc.randomNonce();
        const url = oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid profile', code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state, nonce });
        return { back: await loginThroughDemo(new UserAgent(), url.href, 'nurse', tb.base), verifier, state, nonce };
      })();
      const tokens = await oc.authorizationCodeGrant(web, back, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
      const info = await oc.fetchUserInfo(web, tokens.access_token, tokens.claims()!.sub);
      expect(info.name).toBe('Flo Nurse');
    });

    it('50 parallel redemptions of one authorization code: exactly one succeeds', async () => {
      const { back, verifier } = await codeFor('patient');
      const code = back.searchParams.get('code')!;
      const results = await Promise.all(
        Array.from({ length: 50 }, () =>
          fetch(`${tb.base}/token`, { method: 'POST', headers: { authorization: basic('web', 'web-secret-0123456789'), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }) }),
        ),
      );
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(1);
      expect(statuses.filter((s) => s === 400)).toHaveLength(49);
    });

    it('50 parallel uses of one refresh token: exactly one succeeds', async () => {
      const t = await tokensFor('patient');
      const results = await Promise.all(
        Array.from({ length: 50 }, () =>
          fetch(`${tb.base}/token`, { method: 'POST', headers: { authorization: basic('web', 'web-secret-0123456789'), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: t.refresh_token! }) }),
        ),
      );
      expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    });

    it('50 parallel uses of one client assertion (same jti): exactly one succeeds', async () => {
      const assertion = await new SignJWT({ jti: randomBytes(12).toString('hex') })
        .setProtectedHeader({ alg: 'ES256', kid: svcKey.jwk.kid })
        .setIssuer('svc')
        .setSubject('svc')
        .setAudience(tb.base)
        .setIssuedAt()
        .setExpirationTime('2m')
        .sign(svcKey.privateKey);
      const results = await Promise.all(
        Array.from({ length: 50 }, () =>
          fetch(`${tb.base}/token`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'svc', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion, resource: API, scope: 'system/Patient.rs' }),
          }),
        ),
      );
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(1);
      expect(statuses.filter((s) => s === 401)).toHaveLength(49);
    });
  });
}
