// Sender-constrained tokens (catalogue 1G): the DPoP battery (OA-55), its positive controls (OA-56),
// a client that must use DPoP (OA-58), and mTLS-bound tokens, which the broker does not issue (OA-59).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { parseConfig } from '../../src/config/load.ts';
import { API, OPAQUE_API, REDIRECT, clientKey, startTestBroker, testConfig, type TestBroker } from '../helpers/broker.ts';
import { DbCounter, OTHER_SECRET, WEB_SECRET, b64, basic, codeRequest, createsNothing, driveLogin, introspect, oauthError, postForm } from '../oidc/hostile/support.ts';

const DPOP_SECRET = 'dpop-only-secret-0123456789';
const HOLDER_SECRET = 'holder-secret-0123456789';
const PROXY = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'broker.example' };

let tb: TestBroker;
/** The same broker (its store) as a second instance whose issuer is https://broker.example, behind a TLS-terminating proxy. */
let behind: TestBroker;
let db: DbCounter;
let holder: { privateKey: CryptoKey; jwk: JWK };

beforeAll(async () => {
  const svcKey = await clientKey('ES256');
  const clients = [
    ...testConfig(0, 'sqlite::memory:', svcKey).clients!,
    { client_id: 'holder', client_secret: HOLDER_SECRET, token_endpoint_auth_method: 'client_secret_basic' as const, grant_types: ['client_credentials' as const], resources: [OPAQUE_API, API], scope: 'system/Patient.rs' },
    { client_id: 'dpop-only', client_secret: DPOP_SECRET, token_endpoint_auth_method: 'client_secret_basic' as const, grant_types: ['client_credentials' as const], resources: [OPAQUE_API], scope: 'system/Patient.rs', dpop_bound_access_tokens: true },
    { client_id: 'dpop-web', client_secret: DPOP_SECRET, token_endpoint_auth_method: 'client_secret_basic' as const, grant_types: ['authorization_code' as const], redirect_uris: [REDIRECT], firstParty: true, scope: 'openid profile', dpop_bound_access_tokens: true },
  ];
  tb = await startTestBroker({ svcKey, extra: { clients } });
  // OA-56 controls on an issuer at the default https port: the URL a TLS-terminating proxy is asked for.
  behind = await startTestBroker({ svcKey, store: tb.broker.config.store, extra: { clients, trustProxy: true, issuer: 'https://broker.example' } });
  db = new DbCounter(tb);
  const pair = await generateKeyPair('ES256', { extractable: true });
  holder = { privateKey: pair.privateKey, jwk: await exportJWK(pair.publicKey) };
});
afterAll(async () => {
  db?.close();
  await behind?.close();
  await tb?.close();
});

const now = () => Math.floor(Date.now() / 1000);
const athOf = (token: string) => createHash('sha256').update(token).digest('base64url');

interface ProofOptions {
  htm?: string;
  htu?: string;
  claims?: Record<string, unknown>;
  omit?: string[];
  header?: Record<string, unknown>;
  omitHeader?: string[];
  key?: CryptoKey;
  alg?: string;
}

/** A DPoP proof for the holder key; defaults are valid for POST /token on the direct URL. */
async function proof(o: ProofOptions = {}): Promise<string> {
  const claims: Record<string, unknown> = { htm: o.htm ?? 'POST', htu: o.htu ?? `${tb.base}/token`, jti: randomBytes(12).toString('hex'), iat: now(), ...o.claims };
  for (const k of o.omit ?? []) delete claims[k];
  const header: Record<string, unknown> = { alg: o.alg ?? 'ES256', typ: 'dpop+jwt', jwk: holder.jwk, ...o.header };
  for (const k of o.omitHeader ?? []) delete header[k];
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(o.key ?? holder.privateKey);
}

/** client_credentials for an opaque (stored) token, so "nothing created" also means "no token". */
const tokenRequest = (headers: Record<string, string>, client: [string, string] = ['holder', HOLDER_SECRET]) =>
  postForm(`${tb.base}/token`, { grant_type: 'client_credentials', scope: 'system/Patient.rs', resource: OPAQUE_API }, { authorization: basic(...client), ...headers });

/** A DPoP-bound opaque access token for userinfo (code flow of `web`, no resource). */
async function boundUserToken(): Promise<string> {
  const req = codeRequest(tb.base);
  const { back } = await driveLogin(req.url, tb.base);
  const res = await postForm(`${tb.base}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: REDIRECT, code_verifier: req.verifier }, { authorization: basic('web', WEB_SECRET), dpop: await proof() });
  const body = (await res.json()) as { access_token: string; token_type: string };
  expect(res.status).toBe(200);
  expect(body.token_type).toBe('DPoP');
  return body.access_token;
}

const userinfo = (headers: Record<string, string>) => fetch(`${tb.base}/me`, { headers });

describe('OA-55 DPoP proofs at the token endpoint', () => {
  it('[P] a valid proof gets a DPoP-bound token whose cnf.jkt is the holder key', async () => {
    const res = await tokenRequest({ dpop: await proof() });
    const body = (await res.json()) as { access_token: string; token_type: string };
    expect(res.status).toBe(200);
    expect(body.token_type).toBe('DPoP');
    const info = await introspect(tb.base, body.access_token);
    expect((info.cnf as { jkt?: string } | undefined)?.jkt).toBeTruthy();
  });

  async function badProofs(): Promise<Array<[string, () => Promise<string>]>> {
    const rsa = await generateKeyPair('RS256', { extractable: true });
    const es384 = await generateKeyPair('ES384', { extractable: true });
    const other = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey);
    const unsigned = async (header: Record<string, unknown>) => `${b64(JSON.stringify(header))}.${b64(JSON.stringify({ htm: 'POST', htu: `${tb.base}/token`, jti: randomBytes(8).toString('hex'), iat: now() }))}.`;
    const withoutAlg = async () => {
      const good = await proof();
      const [, p, s] = good.split('.');
      return `${b64(JSON.stringify({ typ: 'dpop+jwt', jwk: holder.jwk }))}.${p}.${s}`;
    };
    return [
      ['no typ', () => proof({ omitHeader: ['typ'] })],
      ['no alg', withoutAlg],
      ['no jwk', () => proof({ omitHeader: ['jwk'] })],
      ['no jti', () => proof({ omit: ['jti'] })],
      ['no htm', () => proof({ omit: ['htm'] })],
      ['no htu', () => proof({ omit: ['htu'] })],
      ['no iat', () => proof({ omit: ['iat'] })],
      ['typ JWT', () => proof({ header: { typ: 'JWT' } })],
      ['typ at+jwt', () => proof({ header: { typ: 'at+jwt' } })],
      ['alg none', () => unsigned({ alg: 'none', typ: 'dpop+jwt', jwk: holder.jwk })],
      ['a disallowed alg (RS256)', async () => new SignJWT({ htm: 'POST', htu: `${tb.base}/token`, jti: randomBytes(8).toString('hex'), iat: now() }).setProtectedHeader({ alg: 'RS256', typ: 'dpop+jwt', jwk: await exportJWK(rsa.publicKey) }).sign(rsa.privateKey)],
      ['a disallowed alg (ES384)', async () => new SignJWT({ htm: 'POST', htu: `${tb.base}/token`, jti: randomBytes(8).toString('hex'), iat: now() }).setProtectedHeader({ alg: 'ES384', typ: 'dpop+jwt', jwk: await exportJWK(es384.publicKey) }).sign(es384.privateKey)],
      ['HS256', async () => new SignJWT({ htm: 'POST', htu: `${tb.base}/token`, jti: randomBytes(8).toString('hex'), iat: now() }).setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: holder.jwk }).sign(new TextEncoder().encode(JSON.stringify(holder.jwk)))],
      ['a bad signature', async () => {
        const [h, p, s] = (await proof()).split('.');
        return `${h}.${p}.${s.slice(0, 10)}${s[10] === 'A' ? 'B' : 'A'}${s.slice(11)}`;
      }],
      ['a jwk with private key members', () => proof({ header: { jwk: privateJwk } })],
      ['a proof signed by another key than its jwk', () => proof({ key: other.privateKey })],
      ['htm GET', () => proof({ htm: 'GET' })],
      ['htm post (lower case)', () => proof({ htm: 'post' })],
      ['htu of another URL on this server', () => proof({ htu: `${tb.base}/token/introspection` })],
      ['htu of another server', () => proof({ htu: 'https://other-as.example/token' })],
      ['htu without the path', () => proof({ htu: tb.base })],
      ['iat one hour ago', () => proof({ claims: { iat: now() - 3600 } })],
      ['iat one hour ahead', () => proof({ claims: { iat: now() + 3600 } })],
      ['iat as a string', () => proof({ claims: { iat: String(now()) } })],
      ['an unrequested nonce', () => proof({ claims: { nonce: 'made-up' } })],
    ];
  }

  it('OA-55 each malformed, wrongly signed or wrongly bound proof -> 400 invalid_dpop_proof, nothing issued', async () => {
    for (const [label, make] of await badProofs()) {
      await createsNothing(db, async () => {
        const res = await tokenRequest({ dpop: await make() });
        const body = await oauthError(res, [400, 401], ['invalid_dpop_proof', 'use_dpop_nonce', 'invalid_request']);
        expect(body.error, label).toBe('invalid_dpop_proof');
      });
    }
  });

  it('OA-55 a replayed proof (same jti) is refused the second time', async () => {
    const p = await proof();
    expect((await tokenRequest({ dpop: p })).status).toBe(200);
    await createsNothing(db, async () => oauthError(await tokenRequest({ dpop: p }), [400, 401], ['invalid_dpop_proof', 'invalid_grant']));
  });

  it('OA-55 two DPoP headers -> 400, nothing issued', async () => {
    await createsNothing(db, async () => {
      const headers = new Headers({ authorization: basic('holder', HOLDER_SECRET), 'content-type': 'application/x-www-form-urlencoded' });
      headers.append('dpop', await proof());
      headers.append('dpop', await proof());
      const res = await fetch(`${tb.base}/token`, { method: 'POST', headers, body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'system/Patient.rs', resource: OPAQUE_API }) });
      await oauthError(res, 400, ['invalid_dpop_proof', 'invalid_request']);
    });
  });
});

describe('OA-55 DPoP-bound tokens at userinfo', () => {
  it('[P] the bound token with a proof carrying its ath is accepted', async () => {
    const token = await boundUserToken();
    const res = await userinfo({ authorization: `DPoP ${token}`, dpop: await proof({ htm: 'GET', htu: `${tb.base}/me`, claims: { ath: athOf(token) } }) });
    expect(res.status).toBe(200);
  });

  it('OA-55 the bound token as Bearer, without a proof, with a wrong or missing ath, another key, a replayed proof, or two proofs -> 400/401, no claims', async () => {
    const token = await boundUserToken();
    const other = await generateKeyPair('ES256', { extractable: true });
    const good = () => proof({ htm: 'GET', htu: `${tb.base}/me`, claims: { ath: athOf(token) } });
    const replayed = await good();
    expect((await userinfo({ authorization: `DPoP ${token}`, dpop: replayed })).status).toBe(200);
    const cases: Array<[string, () => Promise<Headers>]> = [
      ['as Bearer with no proof', async () => new Headers({ authorization: `Bearer ${token}` })],
      ['as Bearer with a valid proof', async () => new Headers({ authorization: `Bearer ${token}`, dpop: await good() })],
      ['no proof', async () => new Headers({ authorization: `DPoP ${token}` })],
      ['a wrong ath', async () => new Headers({ authorization: `DPoP ${token}`, dpop: await proof({ htm: 'GET', htu: `${tb.base}/me`, claims: { ath: athOf(`${token}x`) } }) })],
      ['no ath', async () => new Headers({ authorization: `DPoP ${token}`, dpop: await proof({ htm: 'GET', htu: `${tb.base}/me` }) })],
      ['a proof from another key', async () => {
        const foreign = await new SignJWT({ htm: 'GET', htu: `${tb.base}/me`, jti: randomBytes(8).toString('hex'), iat: now(), ath: athOf(token) }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await exportJWK(other.publicKey) }).sign(other.privateKey);
        return new Headers({ authorization: `DPoP ${token}`, dpop: foreign });
      }],
      ['htm POST for a GET', async () => new Headers({ authorization: `DPoP ${token}`, dpop: await proof({ htm: 'POST', htu: `${tb.base}/me`, claims: { ath: athOf(token) } }) })],
      ['htu of the token endpoint', async () => new Headers({ authorization: `DPoP ${token}`, dpop: await proof({ htm: 'GET', claims: { ath: athOf(token) } }) })],
      ['a replayed proof', async () => new Headers({ authorization: `DPoP ${token}`, dpop: replayed })],
      ['two proofs', async () => {
        const h = new Headers({ authorization: `DPoP ${token}` });
        h.append('dpop', await good());
        h.append('dpop', await good());
        return h;
      }],
    ];
    for (const [label, make] of cases) {
      const res = await fetch(`${tb.base}/me`, { headers: await make() });
      const text = await res.text();
      expect([400, 401], `${label}: ${res.status} ${text}`).toContain(res.status);
      expect(text, label).not.toContain('"sub"');
      expect(res.headers.get('www-authenticate') ?? '', label).toMatch(/^(DPoP|Bearer) /);
    }
    // The token itself still works with a proper proof: the refusals were about the proofs.
    expect((await userinfo({ authorization: `DPoP ${token}`, dpop: await good() })).status).toBe(200);
  });
});

describe('OA-56 DPoP positive controls (URL normalisation, extra members)', () => {
  // The broker's own URL for the token endpoint is its issuer's, https://broker.example/token (the proxy
  // forwards the headers it would; the broker pins them to the issuer anyway, WS-11).
  const proxied = (dpop: string) => postForm(`${behind.base}/token`, { grant_type: 'client_credentials', scope: 'system/Patient.rs', resource: OPAQUE_API }, { authorization: basic('holder', HOLDER_SECRET), ...PROXY, dpop });

  it.each([
    ['the exact URL', 'https://broker.example/token'],
    ['scheme and host in upper case', 'HTTPS://BROKER.EXAMPLE/token'],
    ['the default port written out', 'https://broker.example:443/token'],
    ['a query', 'https://broker.example/token?x=1'],
    ['a fragment', 'https://broker.example/token#frag'],
  ])('OA-56 [P] htu with %s is accepted', async (_label, htu) => {
    const res = await proxied(await proof({ htu }));
    expect(res.status, await res.clone().text()).toBe(200);
    expect(((await res.json()) as { token_type: string }).token_type).toBe('DPoP');
  });

  it('OA-56 [P] extra header members and extra claims are accepted', async () => {
    const res = await proxied(await proof({ htu: 'https://broker.example/token', header: { kid: 'holder-1', 'x-extra': 'yes' }, claims: { extra: { nested: true }, purpose: 'test' } }));
    expect(res.status, await res.clone().text()).toBe(200);
  });

  it('OA-56 the controls are not blanket acceptance: another port, another host or another path is refused', async () => {
    for (const htu of ['https://broker.example:8443/token', 'https://evil.example/token', 'http://broker.example/token', 'https://broker.example/token/']) {
      await createsNothing(db, async () => oauthError(await proxied(await proof({ htu })), 400, 'invalid_dpop_proof'));
    }
  });

  it('OA-56 [P] at userinfo too: upper-case host, default port and query in htu', async () => {
    const token = await boundUserToken();
    for (const htu of ['HTTPS://Broker.Example/me', 'https://broker.example:443/me', 'https://broker.example/me?a=b#c']) {
      const res = await fetch(`${behind.base}/me`, { headers: { ...PROXY, authorization: `DPoP ${token}`, dpop: await proof({ htm: 'GET', htu, claims: { ath: athOf(token) } }) } });
      expect(res.status, htu).toBe(200);
    }
  });
});

describe('OA-58 a client registered for DPoP-bound tokens', () => {
  it('OA-58 client_credentials without a proof -> refused, nothing issued; [P] with a proof -> a DPoP token', async () => {
    await createsNothing(db, async () => oauthError(await tokenRequest({}, ['dpop-only', DPOP_SECRET]), 400, ['invalid_grant', 'invalid_request', 'invalid_dpop_proof']));
    const ok = await tokenRequest({ dpop: await proof() }, ['dpop-only', DPOP_SECRET]);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { token_type: string }).token_type).toBe('DPoP');
  });

  it('OA-58 a code redemption without a proof -> refused, no token; [P] the same code with a proof works', async () => {
    const req = codeRequest(tb.base, { client_id: 'dpop-web' });
    const { back } = await driveLogin(req.url, tb.base);
    const form = { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: REDIRECT, code_verifier: req.verifier };
    const auth = { authorization: basic('dpop-web', DPOP_SECRET) };
    await oauthError(await postForm(`${tb.base}/token`, form, auth), 400, ['invalid_grant', 'invalid_request', 'invalid_dpop_proof']);
    const ok = await postForm(`${tb.base}/token`, form, { ...auth, dpop: await proof() });
    expect(ok.status, await ok.clone().text()).toBe(200);
    expect(((await ok.json()) as { token_type: string }).token_type).toBe('DPoP');
  });

  it('OA-58 discovery advertises the DPoP algorithms the broker verifies', async () => {
    const meta = (await (await fetch(`${tb.base}/.well-known/openid-configuration`)).json()) as Record<string, string[]>;
    expect(meta.dpop_signing_alg_values_supported).toEqual(expect.arrayContaining(['ES256']));
    expect(meta.dpop_signing_alg_values_supported).not.toContain('none');
    expect(meta.dpop_signing_alg_values_supported).not.toContain('HS256');
  });
});

describe('OA-59 certificate-bound (mTLS) tokens', () => {
  it('OA-59 the broker issues no certificate-bound tokens: discovery offers none, a tls_client_auth client is refused at configuration load, and certificate headers authenticate no client', async () => {
    const meta = (await (await fetch(`${tb.base}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(meta.tls_client_certificate_bound_access_tokens ?? false).toBe(false);
    expect(meta.mtls_endpoint_aliases).toBeUndefined();
    expect(meta.token_endpoint_auth_methods_supported).not.toContain('tls_client_auth');
    expect(meta.token_endpoint_auth_methods_supported).not.toContain('self_signed_tls_client_auth');
    // A client asking for certificate authentication (and so certificate-bound tokens) never starts.
    const svcKey = await clientKey('ES256');
    const tlsBound = { client_id: 'tls-bound', token_endpoint_auth_method: 'tls_client_auth' as const, grant_types: ['client_credentials' as const], resources: [OPAQUE_API], scope: 'system/Patient.rs' };
    const base = testConfig(0, 'sqlite::memory:', svcKey);
    expect(() => parseConfig({ ...base, clients: [...base.clients!, tlsBound] }, {})).toThrow(/token_endpoint_auth_method: tls_client_auth is not supported/);
    // Client certificate headers a proxy might forward (RFC 9440, nginx, XFCC) authenticate nobody.
    const certHeaders = { 'client-cert': ':MIIB:', 'x-ssl-client-cert': '-----BEGIN CERTIFICATE-----', 'x-forwarded-client-cert': 'Hash=abc' };
    await createsNothing(db, async () => {
      const res = await postForm(`${tb.base}/token`, { grant_type: 'client_credentials', client_id: 'holder', scope: 'system/Patient.rs', resource: OPAQUE_API }, certHeaders);
      expect(res.status).toBe(401);
      const body = await res.text();
      expect(body).toContain('invalid_client');
      expect(body).not.toContain('access_token');
    });
  });

  it('OA-59 an ordinary token obtained with injected certificate headers carries no x5t#S256 binding', async () => {
    const res = await postForm(`${tb.base}/token`, { grant_type: 'client_credentials', scope: 'system/Patient.rs', resource: API }, { authorization: basic('other', OTHER_SECRET), 'client-cert': ':MIIB:', 'x-ssl-client-cert': 'x' });
    const { access_token } = (await res.json()) as { access_token: string };
    const info = await introspect(tb.base, access_token);
    expect(info.active).toBe(true);
    expect((info.cnf as Record<string, unknown> | undefined)?.['x5t#S256']).toBeUndefined();
  });
});
