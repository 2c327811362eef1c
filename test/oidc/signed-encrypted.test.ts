import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { exportJWK, generateKeyPair, jwtVerify, createRemoteJWKSet, compactDecrypt, decodeProtectedHeader, type CryptoKey } from 'jose';
import { clientKey, startTestBroker, API, REDIRECT, type TestBroker } from '../helpers/broker.ts';
import { UserAgent, loginThroughDemo } from '../helpers/browser.ts';

// Signatures and encryption used together where a client registers for them: JARM (signed and
// encrypted authorization responses), encrypted ID tokens, signed+encrypted userinfo, and RFC 9701
// JWT introspection responses.

describe('signed and encrypted responses', () => {
  let tb: TestBroker;
  let encKey: CryptoKey;
  let app: oc.Configuration;

  beforeAll(async () => {
    const pair = await generateKeyPair('ECDH-ES', { extractable: true });
    encKey = pair.privateKey;
    const encJwk = { ...(await exportJWK(pair.publicKey)), kid: 'enc-1', use: 'enc', alg: 'ECDH-ES' };
    const extraClient = {
      client_id: 'secure-app',
      client_secret: 'secure-app-secret-0123456789',
      token_endpoint_auth_method: 'client_secret_basic' as const,
      grant_types: ['authorization_code' as const],
      redirect_uris: [REDIRECT],
      resources: [API],
      firstParty: true,
      scope: 'openid profile patient/Patient.rs',
      jwks: { keys: [encJwk as { kty: string }] },
      id_token_encrypted_response_alg: 'ECDH-ES' as const,
      id_token_encrypted_response_enc: 'A256GCM' as const,
      userinfo_signed_response_alg: 'ES256' as const,
      userinfo_encrypted_response_alg: 'ECDH-ES' as const,
      userinfo_encrypted_response_enc: 'A256GCM' as const,
      authorization_signed_response_alg: 'ES256' as const,
      authorization_encrypted_response_alg: 'ECDH-ES' as const,
      authorization_encrypted_response_enc: 'A256GCM' as const,
      introspection_signed_response_alg: 'ES256' as const,
    };
    const svcKey = await clientKey();
    const { testConfig } = await import('../helpers/broker.ts');
    const clients = testConfig(0, 'sqlite::memory:', svcKey).clients!;
    tb = await startTestBroker({ svcKey, extra: { clients: [...clients, extraClient] } });
    app = await oc.discovery(new URL(tb.base), 'secure-app', undefined, oc.ClientSecretBasic('secure-app-secret-0123456789'), { execute: [oc.allowInsecureRequests] });
    oc.enableDecryptingResponses(app, ['A256GCM'], { key: encKey, kid: 'enc-1' });
    oc.useJwtResponseMode(app);
  });
  afterAll(async () => {
    await tb?.close();
  });

  it('JARM (signed then encrypted), encrypted ID token, signed+encrypted userinfo', async () => {
    const verifier = oc.randomPKCECodeVerifier();
    const url = oc.buildAuthorizationUrl(app, { redirect_uri: REDIRECT, scope: 'openid profile', response_mode: 'jwt', code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const back = await loginThroughDemo(new UserAgent(), url.href, 'patient', tb.base);
    const response = back.searchParams.get('response')!;
    expect(decodeProtectedHeader(response)).toMatchObject({ alg: 'ECDH-ES', enc: 'A256GCM' });
    expect(back.searchParams.get('code')).toBeNull();
    const tokens = await oc.authorizationCodeGrant(app, back, { pkceCodeVerifier: verifier });
    // The ID token arrived encrypted (openid-client decrypted it); profile claims go to userinfo here.
    expect(tokens.claims()?.sub).toBeTruthy();
    expect(decodeProtectedHeader(tokens.id_token!)).toMatchObject({ alg: 'ECDH-ES', enc: 'A256GCM' });
    const raw = await fetch(`${tb.base}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(raw.headers.get('content-type')).toMatch(/application\/jwt/);
    const jwe = await raw.text();
    const { plaintext } = await compactDecrypt(jwe, encKey);
    const { payload } = await jwtVerify(new TextDecoder().decode(plaintext), createRemoteJWKSet(new URL('/jwks', tb.base)), { issuer: tb.base });
    expect(payload.name).toBe('Pat Patient');
  });

  it('introspection as a signed JWT (RFC 9701) when the client asks for it', async () => {
    const t = await fetch(`${tb.base}/token`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from('other:other-secret-0123456789').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', resource: API, scope: 'system/Patient.rs' }) });
    const { access_token } = (await t.json()) as { access_token: string };
    const res = await fetch(`${tb.base}/token/introspection`, { method: 'POST', headers: { accept: 'application/token-introspection+jwt', authorization: `Basic ${Buffer.from('secure-app:secure-app-secret-0123456789').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: access_token }) });
    expect(res.headers.get('content-type')).toMatch(/application\/token-introspection\+jwt/);
    const { payload, protectedHeader } = await jwtVerify(await res.text(), createRemoteJWKSet(new URL('/jwks', tb.base)), { issuer: tb.base });
    expect(protectedHeader.typ).toBe('token-introspection+jwt');
    // Not this client's token and not its resource: the signed answer says inactive.
    expect(payload.token_introspection).toEqual({ active: false });
  });
});
