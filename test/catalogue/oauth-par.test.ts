// Pushed authorization requests and request objects (catalogue 1F: OA-50, OA-52, OA-53; OA-19 for
// PAR). The broker offers PAR but not JAR: a `request` object is refused whatever it contains, at the
// authorization endpoint and at PAR; a pushed request is bound to its client and its values win over
// anything sent beside its request_uri.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { SignJWT, generateKeyPair, decodeJwt, type CryptoKey } from 'jose';
import { REDIRECT, clientKey, startTestBroker, testConfig, type ClientKey, type TestBroker } from '../helpers/broker.ts';
import { UserAgent } from '../helpers/browser.ts';
import { DbCounter, WEB_SECRET, b64, basic, codeRequest, createsNothing, driveLogin, newVerifier, postForm, redeemCode, s256 } from '../oidc/hostile/support.ts';

const JAR_SECRET = 'jar-app-secret-0123456789';

let tb: TestBroker;
let db: DbCounter;
let jarKey: ClientKey;

beforeAll(async () => {
  const svcKey = await clientKey('ES256');
  jarKey = await clientKey('ES256');
  const clients = [
    ...testConfig(0, 'sqlite::memory:', svcKey).clients!,
    // A client with a registered key, so its request objects are as well-signed as they can be.
    { client_id: 'jar-app', client_secret: JAR_SECRET, token_endpoint_auth_method: 'client_secret_basic' as const, jwks: { keys: [jarKey.jwk as { kty: string }] }, grant_types: ['authorization_code' as const], redirect_uris: [REDIRECT], firstParty: true, scope: 'openid profile' },
  ];
  tb = await startTestBroker({ svcKey, extra: { clients } });
  db = new DbCounter(tb);
});
afterAll(async () => {
  db?.close();
  await tb?.close();
});

const WEB = { authorization: basic('web', WEB_SECRET) };

function pushed(params: Record<string, string>, auth: Record<string, string> = WEB): Promise<Response> {
  return postForm(`${tb.base}/request`, params, auth);
}

function authParams(verifier: string, extra: Record<string, string> = {}): Record<string, string> {
  return { client_id: 'web', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid profile', code_challenge: s256(verifier), code_challenge_method: 'S256', ...extra };
}

async function push(verifier: string, extra: Record<string, string> = {}): Promise<string> {
  const res = await pushed(authParams(verifier, extra));
  const text = await res.text();
  expect(res.status, text).toBe(201);
  return (JSON.parse(text) as { request_uri: string }).request_uri;
}

/** Where the authorization endpoint sends the browser for this request_uri (and extra query params). */
async function useRequestUri(ua: UserAgent, clientId: string, requestUri: string, extra: Record<string, string> = {}): Promise<URL> {
  const res = await ua.get(`${tb.base}/auth?${new URLSearchParams({ client_id: clientId, request_uri: requestUri, ...extra })}`);
  expect([302, 303]).toContain(res.status);
  return new URL(res.headers.get('location')!, tb.base);
}

describe('OA-19 PKCE on pushed requests', () => {
  it('OA-19 a pushed request without code_challenge is refused: no request_uri, nothing stored', async () => {
    await createsNothing(db, async () => {
      const { code_challenge: _c, code_challenge_method: _m, ...withoutPkce } = authParams(newVerifier());
      const res = await pushed(withoutPkce);
      const body = (await res.json()) as { error?: string; request_uri?: string };
      expect(res.status).toBe(400);
      expect(body.error).toBe('invalid_request');
      expect(body.request_uri).toBeUndefined();
    });
  });
});

describe('OA-50 a request_uri belongs to the client that pushed it', () => {
  it('OA-50 the request_uri of web used with client_id=public-app -> error, no login, no code', async () => {
    const requestUri = await push(newVerifier());
    await createsNothing(db, async () => {
      const loc = await useRequestUri(new UserAgent(), 'public-app', requestUri);
      expect(loc.pathname).not.toMatch(/^\/interaction\//);
      expect(loc.searchParams.get('error')).toBe('invalid_request_object');
      expect(loc.searchParams.get('code')).toBeNull();
    });
  });

  it('OA-50 an unknown client or no client_id with a valid request_uri -> local error page', async () => {
    const requestUri = await push(newVerifier());
    await createsNothing(db, async () => {
      for (const q of [{ client_id: 'nobody', request_uri: requestUri }, { request_uri: requestUri }] as Array<Record<string, string>>) {
        const res = await fetch(`${tb.base}/auth?${new URLSearchParams(q)}`, { redirect: 'manual' });
        expect(res.status).toBe(400);
        expect(res.headers.get('location')).toBeNull();
      }
    });
  });

  it('OA-50 [P] the pushing client itself completes the flow with it, and only once', async () => {
    const verifier = newVerifier();
    const requestUri = await push(verifier, { state: 'own' });
    const { back } = await driveLogin(`${tb.base}/auth?${new URLSearchParams({ client_id: 'web', request_uri: requestUri })}`, tb.base);
    expect(back.searchParams.get('state')).toBe('own');
    expect((await redeemCode(tb.base, back.searchParams.get('code')!, verifier)).status).toBe(200);
    // Used up by the completed authorization (RFC 9126 one-time use; a reload before completion may repeat it).
    const again = await useRequestUri(new UserAgent(), 'web', requestUri);
    expect(again.searchParams.get('error')).toBe('invalid_request_uri');
    expect(again.searchParams.get('code')).toBeNull();
  });
});

describe('OA-52 request objects are not accepted in any form', () => {
  const now = () => Math.floor(Date.now() / 1000);
  function claims(tbBase: string, extra: Record<string, unknown> = {}, omit: string[] = []): Record<string, unknown> {
    const c: Record<string, unknown> = { iss: 'jar-app', aud: tbBase, client_id: 'jar-app', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', code_challenge: s256(newVerifier()), code_challenge_method: 'S256', state: 'inside', nonce: 'inside', iat: now(), nbf: now(), exp: now() + 300, jti: randomBytes(8).toString('hex'), ...extra };
    for (const k of omit) delete c[k];
    return c;
  }
  const sign = (c: Record<string, unknown>, key: CryptoKey = jarKey.privateKey, alg = 'ES256') => new SignJWT(c).setProtectedHeader({ alg, kid: jarKey.jwk.kid, typ: 'oauth-authz-req+jwt' }).sign(key);

  async function variants(): Promise<Array<[string, string]>> {
    const rsa = await generateKeyPair('RS256');
    const other = await generateKeyPair('ES256');
    const good = await sign(claims(tb.base));
    const [h, p, sig] = good.split('.');
    return [
      ['alg none', `${b64(JSON.stringify({ alg: 'none', typ: 'oauth-authz-req+jwt' }))}.${p}.`],
      ['a bad signature', `${h}.${p}.${sig.slice(0, -4)}${sig.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`],
      ['a key that is not registered', await sign(claims(tb.base), other.privateKey)],
      ['RS256', await sign(claims(tb.base), rsa.privateKey, 'RS256')],
      ['no exp', await sign(claims(tb.base, {}, ['exp']))],
      ['no nbf', await sign(claims(tb.base, {}, ['nbf']))],
      ['exp more than 60 minutes ahead', await sign(claims(tb.base, { exp: now() + 3700 }))],
      ['nbf more than 60 minutes old', await sign(claims(tb.base, { nbf: now() - 3700 }))],
      ['a wrong aud', await sign(claims(tb.base, { aud: 'https://other-as.example' }))],
      ['no redirect_uri', await sign(claims(tb.base, {}, ['redirect_uri']))],
      // The control: even a perfect one is refused, because the feature is off.
      ['a well-formed, correctly signed object', good],
    ];
  }

  it('OA-52 discovery does not offer request objects', async () => {
    const meta = (await (await fetch(`${tb.base}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(meta.request_parameter_supported ?? false).toBe(false);
    expect(meta.request_uri_parameter_supported ?? false).toBe(false);
    expect(meta.require_signed_request_object ?? false).toBe(false);
  });

  it('OA-52 every request object variant at the authorization endpoint -> request_not_supported, no login, nothing stored', async () => {
    for (const [label, request] of await variants()) {
      await createsNothing(db, async () => {
        const url = `${tb.base}/auth?${new URLSearchParams({ client_id: 'jar-app', response_type: 'code', scope: 'openid', request })}`;
        const res = await fetch(url, { redirect: 'manual' });
        const loc = new URL(res.headers.get('location') ?? `${tb.base}/no-redirect`, tb.base);
        expect(loc.pathname, label).not.toMatch(/^\/interaction\//);
        expect(loc.searchParams.get('code'), label).toBeNull();
        if (res.headers.get('location')) expect(loc.searchParams.get('error'), label).toBe('request_not_supported');
        else expect(res.status, label).toBe(400);
      });
    }
  });

  it('OA-52 every request object variant pushed to PAR -> 400 request_not_supported, no request_uri', async () => {
    for (const [label, request] of await variants()) {
      await createsNothing(db, async () => {
        const res = await pushed({ client_id: 'jar-app', request }, { authorization: basic('jar-app', JAR_SECRET) });
        const body = (await res.json()) as { error?: string; request_uri?: string };
        expect(res.status, label).toBe(400);
        expect(body.error, label).toBe('request_not_supported');
        expect(body.request_uri, label).toBeUndefined();
      });
    }
  });
});

describe('OA-53 only the authenticated request is used', () => {
  it('OA-53 state and nonce sent beside a request_uri are ignored: the pushed ones come back (callback and ID token)', async () => {
    const verifier = newVerifier();
    const requestUri = await push(verifier, { state: 'pushed-state', nonce: 'pushed-nonce' });
    const ua = new UserAgent();
    const url = `${tb.base}/auth?${new URLSearchParams({ client_id: 'web', request_uri: requestUri, state: 'outside-state', nonce: 'outside-nonce', redirect_uri: 'https://evil.example/cb', scope: 'openid profile email' })}`;
    const { back } = await driveLogin(url, tb.base, 'patient', ua);
    expect(`${back.origin}${back.pathname}`).toBe(REDIRECT);
    expect(back.searchParams.get('state')).toBe('pushed-state');
    const res = await redeemCode(tb.base, back.searchParams.get('code')!, verifier);
    const tokens = (await res.json()) as { id_token: string; scope?: string };
    expect(res.status).toBe(200);
    expect(decodeJwt(tokens.id_token).nonce).toBe('pushed-nonce');
    expect(tokens.scope?.split(' ')).not.toContain('email');
  });

  it('OA-53 a request object beside ordinary parameters is refused as a whole: no code carrying the outside state', async () => {
    await createsNothing(db, async () => {
      const { url } = codeRequest(tb.base, { client_id: 'jar-app', state: 'outside-only', request: await new SignJWT({ state: 'inside', nonce: 'inside' }).setProtectedHeader({ alg: 'ES256', kid: jarKey.jwk.kid }).sign(jarKey.privateKey) });
      const res = await fetch(url, { redirect: 'manual' });
      const loc = new URL(res.headers.get('location')!);
      expect(loc.searchParams.get('code')).toBeNull();
      expect(loc.searchParams.get('error')).toBe('request_not_supported');
    });
  });
});
