// The broker's JOSE inputs as "surfaces" for the JWT/JOSE catalogue rows (not a test file): each takes
// a token string and says whether the broker accepted it, and knows what a valid token for it looks
// like and, where the test holds the key, how to sign one. Built on the token-exchange fixture, which
// has a private_key_jwt client, CIS2- and partner-like issuers, a DPoP-bound exchange client, a
// resource server for introspection and a signed-in user.
import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, type JWK } from 'jose';
import { API2, AT, CIS2_AUD, IDT, JWT, OPAQUE_API, login, rawExchange, signToken, startFixture, type Fixture } from '../exchange/helpers.ts';
import { DbCounter } from '../oidc/hostile/support.ts';
import type { TestBroker } from '../helpers/broker.ts';
import { nowSeconds, signer, type Signer } from './jose-forge.ts';

export interface Template {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  /** The key that makes a token valid here, when the test holds it (not for the broker's own tokens). */
  signer?: Signer;
  /** The public key the input verifies with (for key-confusion attacks). */
  publicJwk: JWK;
}

export interface Outcome {
  accepted: boolean;
  status: number;
  body: string;
}

export interface Surface {
  name: string;
  template(): Promise<Template>;
  present(token: string): Promise<Outcome>;
}

export interface JoseBed {
  f: Fixture;
  db: DbCounter;
  /** A real access token of the broker (resource API) and the ID token of the same login. */
  webToken: string;
  idToken: string;
  surfaces: Surface[];
  byName(name: string): Surface;
  /** Presents the token and asserts a refusal that created nothing (and no 5xx). */
  refused(surface: Surface, token: string, what: string): Promise<Outcome>;
  accepted(surface: Surface, token: string, what: string): Promise<Outcome>;
  close(): Promise<void>;
}

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

async function clientAssertion(f: Fixture, clientId = 'svc'): Promise<string> {
  return new SignJWT({ iss: clientId, sub: clientId, aud: f.base, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', kid: String(f.svcKey.jwk.kid) }).setIssuedAt().setExpirationTime('60s').sign(f.svcKey.privateKey);
}

async function outcome(res: Response, ok: (status: number, body: string) => boolean): Promise<Outcome> {
  const body = await res.text();
  return { accepted: ok(res.status, body), status: res.status, body };
}

async function dpopTemplate(htu: string): Promise<Template> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { header: { typ: 'dpop+jwt', alg: 'ES256', jwk }, claims: { htm: 'POST', htu, iat: nowSeconds(), jti: randomUUID() }, signer: signer('ES256', privateKey), publicJwk: jwk };
}

export async function startJoseBed(): Promise<JoseBed> {
  const f = await startFixture();
  const db = new DbCounter({ broker: f.broker } as unknown as TestBroker);
  const user = await login(f, 'jose-user');
  const webToken = user.access;
  const idToken = user.tokens.id_token ?? '';
  const brokerKey = (kid: unknown): JWK => {
    const key = f.broker.publicJwks().keys.find((k) => k.kid === kid);
    if (!key) throw new Error(`no broker key ${String(kid)}`);
    return key;
  };
  const brokerTokenTemplate = async (): Promise<Template> => {
    const header = decodeProtectedHeader(webToken) as Record<string, unknown>;
    return { header, claims: { ...decodeJwt(webToken), jti: randomUUID() }, publicJwk: brokerKey(header.kid) };
  };
  const form = (params: Record<string, string>) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params).toString() });

  const surfaces: Surface[] = [
    {
      name: 'client_assertion (private_key_jwt at the token endpoint)',
      async template() {
        const iat = nowSeconds();
        return { header: { alg: 'ES256', kid: f.svcKey.jwk.kid }, claims: { iss: 'svc', sub: 'svc', aud: f.base, iat, exp: iat + 120, jti: randomUUID() }, signer: signer('ES256', f.svcKey.privateKey), publicJwk: f.svcKey.jwk };
      },
      async present(token) {
        const res = await fetch(`${f.base}/token`, form({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: token, scope: 'system/Patient.rs', resource: OPAQUE_API }));
        return outcome(res, (s) => s === 200);
      },
    },
    {
      name: 'subject_token (CIS2 ID token, token exchange)',
      async template() {
        const iat = nowSeconds();
        return {
          header: { alg: 'RS256', kid: f.keys.cis2.kid, typ: 'JWT' },
          claims: { iss: f.host.issuer('cis2'), aud: CIS2_AUD, sub: '555057896106', authentication_assurance_level: '3', acr: 'AAL3_ANY', amr: ['N3_SMARTCARD'], auth_time: iat - 60, iat, exp: iat + 300, jti: randomUUID() },
          signer: signer('RS256', f.keys.cis2.privateKey),
          publicJwk: f.keys.cis2.jwk,
        };
      },
      async present(token) {
        return outcome(await rawExchange(f, 'svc', { subject_token: token, subject_token_type: IDT, resource: API2, scope: 'user/Patient.rs' }), (s) => s === 200);
      },
    },
    {
      name: 'actor_token (partner JWT, token exchange)',
      async template() {
        const iat = nowSeconds();
        return { header: { alg: 'ES256', kid: f.keys.partner.kid, typ: 'JWT' }, claims: { iss: f.host.issuer('partner'), aud: f.base, sub: 'partner-actor', iat, exp: iat + 300, jti: randomUUID() }, signer: signer('ES256', f.keys.partner.privateKey), publicJwk: f.keys.partner.jwk };
      },
      async present(token) {
        const subject = await signToken(f.keys.partner, { iss: f.host.issuer('partner'), aud: f.base, sub: `partner-user-${randomUUID().slice(0, 6)}`, may_act: { sub: 'partner-actor' } });
        return outcome(await rawExchange(f, 'svc', { subject_token: subject, subject_token_type: JWT, actor_token: token, actor_token_type: JWT, resource: API2 }), (s) => s === 200);
      },
    },
    {
      name: 'subject_token (the broker’s own access token, token exchange)',
      template: brokerTokenTemplate,
      async present(token) {
        return outcome(await rawExchange(f, 'svc', { subject_token: token, subject_token_type: AT, resource: API2 }), (s) => s === 200);
      },
    },
    {
      name: 'DPoP proof (client_credentials at the token endpoint)',
      template: () => dpopTemplate(`${f.base}/token`),
      async present(token) {
        const res = await fetch(`${f.base}/token`, { ...form({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(f), scope: 'system/Patient.rs', resource: OPAQUE_API }), headers: { 'content-type': 'application/x-www-form-urlencoded', DPoP: token } });
        return outcome(res, (s, body) => s === 200 && /"token_type":"DPoP"/i.test(body));
      },
    },
    {
      name: 'DPoP proof (token exchange)',
      template: () => dpopTemplate(`${f.base}/token`),
      async present(token) {
        return outcome(await rawExchange(f, 'svc-dpop', { subject_token: webToken, subject_token_type: AT, resource: API2 }, { DPoP: token }), (s) => s === 200);
      },
    },
    {
      name: 'access token at the introspection endpoint',
      template: brokerTokenTemplate,
      async present(token) {
        const res = await fetch(`${f.base}/token/introspection`, { ...form({ token }), headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('rs:rs-secret-0123456789ab').toString('base64')}` } });
        return outcome(res, (s, body) => s === 200 && (JSON.parse(body) as { active?: boolean }).active === true);
      },
    },
    {
      name: 'access token at the broker’s JSON API',
      template: brokerTokenTemplate,
      async present(token) {
        const res = await fetch(`${f.base}/api/delegations`, { headers: { authorization: `Bearer ${token}` } });
        const out = await outcome(res, (s) => s !== 401);
        if (res.status === 401) expect(res.headers.get('www-authenticate') ?? '').toMatch(/^Bearer/);
        return out;
      },
    },
  ];

  async function refused(surface: Surface, token: string, what: string): Promise<Outcome> {
    const before = db.snapshot();
    const out = await surface.present(token);
    expect(out.accepted, `${surface.name} / ${what}: ${out.status} ${out.body.slice(0, 200)}`).toBe(false);
    expect(out.status, `${surface.name} / ${what}: never a 5xx`).toBeLessThan(500);
    expect(db.snapshot(), `${surface.name} / ${what}: nothing created`).toEqual(before);
    return out;
  }

  async function accepted(surface: Surface, token: string, what: string): Promise<Outcome> {
    const out = await surface.present(token);
    expect(out.accepted, `${surface.name} / ${what}: ${out.status} ${out.body.slice(0, 300)}`).toBe(true);
    return out;
  }

  return {
    f,
    db,
    webToken,
    idToken,
    surfaces,
    byName: (name) => {
      const s = surfaces.find((x) => x.name.startsWith(name));
      if (!s) throw new Error(`no surface ${name}`);
      return s;
    },
    refused,
    accepted,
    async close() {
      db.close();
      await f.close();
    },
  };
}
