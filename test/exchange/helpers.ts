// Shared set-up for the token-exchange tests (not a test file): a broker with an exchange policy, a
// tiny JWKS host standing in for CIS2, NHS login and a partner issuer, logins through a scripted
// upstream, and openid-client's genericGrantRequest as the exchanging client.
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import * as oc from 'openid-client';
import pino from 'pino';
import { expect } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import type { Actor } from '../../src/delegation/service.ts';
import type { StoredEntry } from '../../src/audit/index.ts';
import { API, OPAQUE_API, REDIRECT, TEST_KEK, clientKey, type ClientKey } from '../helpers/broker.ts';
import { UserAgent, loginThrough, location } from '../helpers/browser.ts';
import { scriptedConnector } from '../helpers/scripted-connector.ts';
import { freePort } from '../peers/ports.ts';

export { API, OPAQUE_API };
export const API2 = 'https://api2.test';
export const ADMIN_API = 'https://admin.test';
export const API_B = 'https://api-b.test';
export const TE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const AT = 'urn:ietf:params:oauth:token-type:access_token';
export const IDT = 'urn:ietf:params:oauth:token-type:id_token';
export const JWT = 'urn:ietf:params:oauth:token-type:jwt';
export const ADMIN_TOKEN = 'explain-admin-token-0123456789abcdef';
export const CIS2_AUD = 'broker-cis2-client';
export const NHS_AUD = 'broker-nhs-login-client';

// ---------------------------------------------------------------------------------------------------
// External issuers: keys and a JWKS host

export interface IssuerKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

export async function issuerKey(alg: string, kid = `${alg}-${randomUUID().slice(0, 8)}`): Promise<IssuerKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg.startsWith('RS') || alg.startsWith('PS') ? { modulusLength: 2048 } : {}) });
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

/** Serves /<name>/jwks for each issuer; keys can be added (rotation) and fetches are counted. */
export class JwksHost {
  readonly published = new Map<string, JWK[]>();
  readonly fetches = new Map<string, number>();
  private server!: Server;
  base = '';

  async start(): Promise<void> {
    const port = await freePort();
    this.server = createServer((req, res) => {
      const m = /^\/([\w-]+)\/jwks$/.exec(req.url ?? '');
      const keys = m ? this.published.get(m[1]) : undefined;
      if (!m || !keys) {
        res.writeHead(404).end();
        return;
      }
      this.fetches.set(m[1], (this.fetches.get(m[1]) ?? 0) + 1);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  issuer(name: string): string {
    return `${this.base}/${name}`;
  }

  publish(name: string, ...keys: IssuerKey[]): void {
    this.published.set(name, [...(this.published.get(name) ?? []), ...keys.map((k) => k.jwk)]);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

export interface SignOptions {
  header?: Record<string, unknown>;
  /** Seconds from now. */
  expiresIn?: number;
  iatOffset?: number;
}

export async function signToken(key: IssuerKey, claims: JWTPayload, options: SignOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000) + (options.iatOffset ?? 0);
  const exp = Math.floor(Date.now() / 1000) + (options.expiresIn ?? 300);
  return new SignJWT({ iat: now, exp, jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...options.header })
    .sign(key.privateKey);
}

// ---------------------------------------------------------------------------------------------------
// The broker under test

export interface Fixture {
  broker: Broker;
  base: string;
  host: JwksHost;
  svcKey: ClientKey;
  keys: { cis2: IssuerKey; nhs: IssuerKey; partner: IssuerKey; tenantB: IssuerKey };
  upstream: ReturnType<typeof scriptedConnector>;
  web: oc.Configuration;
  close(): Promise<void>;
}

const P9 = { acr: 'P9.Cp.Cd', aal: 2, proofing: 'P9' as const };

/** `extra` overrides top-level config sections (rate limits, for instance). */
export async function startFixture(extra: Partial<ConfigInput> = {}): Promise<Fixture> {
  const host = new JwksHost();
  await host.start();
  const keys = { cis2: await issuerKey('RS256'), nhs: await issuerKey('RS512'), partner: await issuerKey('ES256'), tenantB: await issuerKey('ES256') };
  host.publish('cis2', keys.cis2);
  host.publish('nhslogin', keys.nhs);
  host.publish('partner', keys.partner);
  const svcKey = await clientKey('ES256');
  const svcJwks = { keys: [svcKey.jwk as { kty: string }] };
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const exchangeClient = (client_id: string, resources: string[], extra: Record<string, unknown> = {}) => ({
    client_id,
    token_endpoint_auth_method: 'private_key_jwt' as const,
    jwks: svcJwks,
    grant_types: [TE] as Array<'urn:ietf:params:oauth:grant-type:token-exchange'>,
    resources,
    ...extra,
  });

  const cfg: ConfigInput = {
    port,
    store: `sqlite:${join(mkdtempSync(join(tmpdir(), 'exchange-')), 'broker.db')}`,
    issuer,
    profile: 'demo',
    logLevel: 'silent',
    secrets: { keyEncryptionKey: TEST_KEK },
    upstreams: [{ id: 'nhs-login', type: 'oidc', displayName: 'NHS login', issuer: 'https://auth.login.nhs.uk', client_id: 'x', client_secret: 'not-used-0123456789' }] as ConfigInput['upstreams'],
    resources: [
      { identifier: API, scopes: ['patient/Patient.rs', 'patient/Observation.rs', 'user/Patient.rs', 'system/Patient.rs'], format: 'jwt', accessTokenTTL: 900, introspectionClients: ['rs'] },
      { identifier: OPAQUE_API, scopes: ['patient/Patient.rs', 'user/Patient.rs', 'system/Patient.rs'], format: 'opaque', accessTokenTTL: 300, introspectionClients: ['rs'] },
      { identifier: API2, scopes: ['patient/Patient.rs', 'user/Patient.rs', 'user/Patient.cruds', 'system/Patient.rs'], format: 'jwt', accessTokenTTL: 600, introspectionClients: ['rs'] },
      { identifier: ADMIN_API, scopes: ['admin'], format: 'jwt', accessTokenTTL: 300 },
      { identifier: API_B, scopes: ['system/Patient.rs'], format: 'jwt', accessTokenTTL: 300 },
    ],
    clients: [
      { client_id: 'web', client_secret: 'web-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [REDIRECT], resources: [API], firstParty: true, scope: 'openid profile offline_access patient/Patient.rs patient/Observation.rs user/Patient.rs' },
      { client_id: 'rs', client_secret: 'rs-secret-0123456789ab', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'] },
      { client_id: 'other', token_endpoint_auth_method: 'private_key_jwt', jwks: svcJwks, grant_types: ['client_credentials'], resources: [API], scope: 'system/Patient.rs' },
      exchangeClient('svc', [API, OPAQUE_API, API2, ADMIN_API], { grant_types: ['client_credentials', TE], scope: 'system/Patient.rs' }),
      exchangeClient('svc2', [API2]),
      exchangeClient('svc-dpop', [API2], { dpop_bound_access_tokens: true }),
      exchangeClient('nope', [API2]),
      exchangeClient('svc-b', [API_B]),
      { client_id: 'cc-b', token_endpoint_auth_method: 'private_key_jwt', jwks: svcJwks, grant_types: ['client_credentials'], resources: [API_B], scope: 'system/Patient.rs' },
    ],
    exchange: {
      adminToken: ADMIN_TOKEN,
      allowInsecureJwksUris: true,
      jwks: { timeoutMs: 2000, cooldownMs: 0 },
      issuers: [
        { id: 'cis2', kind: 'cis2', issuer: host.issuer('cis2'), jwks_uri: `${host.issuer('cis2')}/jwks`, algorithms: ['RS256', 'RS512'], audiences: [CIS2_AUD], tokenTypes: ['id_token'] },
        { id: 'nhs-login', kind: 'nhs-login', issuer: host.issuer('nhslogin'), jwks_uri: `${host.issuer('nhslogin')}/jwks`, algorithms: ['RS512'], audiences: [NHS_AUD], tokenTypes: ['id_token'], carryClaims: ['nhs_number'] },
        { id: 'partner', kind: 'generic', issuer: host.issuer('partner'), jwks_uri: `${host.issuer('partner')}/jwks`, algorithms: ['ES256'], audiences: [issuer], tokenTypes: ['jwt', 'access_token'] },
        { id: 'idp-b', kind: 'generic', issuer: 'https://idp-b.test', jwks: { keys: [keys.tenantB.jwk as { kty: string }] }, algorithms: ['ES256'], audiences: [issuer], tokenTypes: ['jwt'] },
      ],
      tenants: [
        { id: 'a', clients: ['web', 'svc', 'svc2', 'svc-dpop', 'other'], resources: [API, API2, OPAQUE_API] },
        { id: 'b', clients: ['cc-b', 'svc-b'], resources: [API_B], issuers: ['idp-b'] },
      ],
      rules: [
        // Broker tokens of web (and of svc itself) for API2 or the opaque API; delegated tokens allowed; an actor may join.
        { id: 'svc-self', clients: ['svc'], subjectIssuers: ['self'], subjectTokenTypes: ['access_token'], subjectClients: ['web', 'svc', 'other'], resources: [API2, OPAQUE_API], scopes: ['patient/Patient.rs', 'user/Patient.rs', 'system/Patient.rs'], delegated: 'allow', actor: 'optional', actorIssuers: ['self'], actorTokenTypes: ['access_token'], actorWithoutMayAct: true, maxActDepth: 3, tokenLifetime: 600 },
        // Staff from CIS2 at AAL3 for clinical writes.
        { id: 'svc-cis2-aal3', clients: ['svc'], subjectIssuers: ['cis2'], subjectTokenTypes: ['id_token'], resources: [API2], scopes: ['user/Patient.rs', 'user/Patient.cruds'], minimumAssurance: { aal: 3 } },
        // Patients from NHS login at P9, with the composite proxy form.
        { id: 'svc-nhs-p9', clients: ['svc'], subjectIssuers: ['nhs-login'], subjectTokenTypes: ['id_token'], resources: [API2], scopes: ['patient/Patient.rs'], minimumAssurance: { proofing: 'P9' }, tokenLifetime: 120 },
        // Partner JWTs, an actor required, named by may_act.
        { id: 'svc-partner', clients: ['svc'], subjectIssuers: ['partner'], subjectTokenTypes: ['jwt'], resources: [API2], scopes: ['system/Patient.rs'], actor: 'required', actorIssuers: ['partner'], actorTokenTypes: ['jwt'] },
        // Second hop: tokens of web or already exchanged by svc; no delegated ones; shallow chains; scope may widen.
        { id: 'svc2-chain', clients: ['svc2'], subjectIssuers: ['self'], subjectTokenTypes: ['access_token'], subjectClients: ['svc', 'svc2', 'web'], subjectAudiences: [API, API2], resources: [API2], scopes: ['patient/Patient.rs', 'user/Patient.rs', 'user/Patient.cruds'], maxActDepth: 2, downscopeOnly: false },
        { id: 'dpop-self', clients: ['svc-dpop'], subjectIssuers: ['self'], subjectTokenTypes: ['access_token'], resources: [API2], scopes: ['patient/Patient.rs', 'user/Patient.rs'] },
        { id: 'tenant-b', clients: ['svc-b'], subjectIssuers: ['self', 'idp-b'], subjectTokenTypes: ['access_token', 'jwt'], resources: [API_B], scopes: ['system/Patient.rs'] },
      ],
    },
    ...extra,
  };
  const upstream = scriptedConnector('nhs-login');
  const broker = await createBroker(parseConfig(cfg, {}), { log: pino({ level: 'silent' }), env: {}, connectors: [upstream.connector] });
  const server = await broker.listen(port, '127.0.0.1');
  const base = `http://localhost:${(server.address() as AddressInfo).port}`;
  const web = await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute: [oc.allowInsecureRequests] });
  return {
    broker,
    base,
    host,
    svcKey,
    keys,
    upstream,
    web,
    async close() {
      server.closeAllConnections();
      await broker.close();
      await host.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Clients and logins

const configs = new Map<string, oc.Configuration>();

export async function client(f: Fixture, clientId: string, options: { jti?: string } = {}): Promise<oc.Configuration> {
  const key = `${f.base}|${clientId}|${options.jti ?? ''}`;
  const cached = configs.get(key);
  if (cached) return cached;
  const auth = oc.PrivateKeyJwt(f.svcKey.privateKey, options.jti ? { [oc.modifyAssertion]: (_h, payload) => void (payload.jti = options.jti) } : undefined);
  const config = await oc.discovery(new URL(f.base), clientId, undefined, auth, { execute: [oc.allowInsecureRequests] });
  configs.set(key, config);
  return config;
}

export type Params = Record<string, string | string[]>;

function form(params: Params): URLSearchParams {
  const out = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const one of ([] as string[]).concat(v)) out.append(k, one);
  return out;
}

export async function exchange(f: Fixture, clientId: string, params: Params, options: { DPoP?: oc.DPoPHandle; jti?: string } = {}) {
  return oc.genericGrantRequest(await client(f, clientId, { jti: options.jti }), TE, form(params), { DPoP: options.DPoP });
}

export interface Refused {
  status: number;
  error: string;
  error_description: string;
}

/** Runs an exchange that must fail and returns the OAuth error. */
export async function refused(f: Fixture, clientId: string, params: Params, options: { DPoP?: oc.DPoPHandle; jti?: string } = {}): Promise<Refused> {
  try {
    const r = await exchange(f, clientId, params, options);
    throw new Error(`expected a refusal, got a token (${JSON.stringify(decodeJwt(r.access_token))})`);
  } catch (err) {
    if (err instanceof oc.ResponseBodyError) return { status: err.status, error: err.error, error_description: err.error_description ?? '' };
    // openid-client parses error bodies of 400/401 only; a 503 arrives as the raw response.
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof Response) {
      const body = (await cause.json()) as { error: string; error_description?: string };
      return { status: cause.status, error: body.error, error_description: body.error_description ?? '' };
    }
    throw err;
  }
}

export async function clientCredentialsToken(f: Fixture, clientId: string, resource: string, scope = 'system/Patient.rs'): Promise<string> {
  const r = await oc.clientCredentialsGrant(await client(f, clientId), { resource, scope });
  return r.access_token;
}

export async function login(f: Fixture, subject: string, actAs = 'self', scope = 'openid offline_access patient/Patient.rs patient/Observation.rs user/Patient.rs') {
  f.upstream.queue.push({ subject, claims: { nhs_number: `90000000${subject.length}9`, name: subject }, assurance: P9 });
  const verifier = oc.randomPKCECodeVerifier();
  const url = oc.buildAuthorizationUrl(f.web, { redirect_uri: REDIRECT, scope, resource: API, prompt: 'consent', code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
  const ua = new UserAgent();
  const back = await loginThrough(ua, url.href, 'nhs-login', f.base, async (res) => ua.get(location(res, f.base)), { actAs });
  const tokens = await oc.authorizationCodeGrant(f.web, back, { pkceCodeVerifier: verifier });
  return { sub: tokens.claims()!.sub, tokens, access: tokens.access_token };
}

export const person = (accountId: string): Actor => ({ accountId, assurance: { aal: 2, proofing: 'P9' } });

export async function delegate(f: Fixture, patient: string, carer: string, scopes: string[]) {
  const { code } = await f.broker.delegation.invite(person(patient), { access: { scopes }, period: { end: new Date(Date.now() + 30 * 86_400_000).toISOString() } });
  return f.broker.delegation.respond(person(carer), code, 'accept');
}

// ---------------------------------------------------------------------------------------------------
// Introspection and the audit ledger

export async function introspect(f: Fixture, token: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${f.base}/token/introspection`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('rs:rs-secret-0123456789ab').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }),
  });
  return (await res.json()) as Record<string, unknown>;
}

/** The newest token.exchanged entry written by the grant (details.decision set) matching `where`. */
export async function exchangeEntry(f: Fixture, where: (e: StoredEntry) => boolean): Promise<StoredEntry> {
  for (let i = 0; i < 50; i++) {
    const entries = await f.broker.ledger.query({ type: 'token.exchanged', order: 'desc', limit: 200 });
    const hit = entries.find((e) => typeof e.details.decision === 'string' && where(e));
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('no matching token.exchanged entry');
}

/** Asserts a refusal was audited as a deny with this check. */
export async function auditedDeny(f: Fixture, clientId: string, check: string, error?: string): Promise<StoredEntry> {
  const entry = await exchangeEntry(f, (e) => e.client === clientId && e.details.decision === 'deny' && e.details.check === check);
  expect(entry.outcome).toBe('failure');
  if (error) expect(entry.details.error).toBe(error);
  expect(JSON.stringify(entry)).not.toMatch(/eyJ[\w-]+\.eyJ/);
  return entry;
}

/** A token-exchange POST built by hand (own client assertion), for what openid-client will not send. */
export async function rawExchange(f: Fixture, clientId: string, params: Params, headers: Record<string, string> = {}): Promise<Response> {
  const assertion = await new SignJWT({ iss: clientId, sub: clientId, aud: f.base, jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuedAt()
    .setExpirationTime('60s')
    .sign(f.svcKey.privateKey);
  const body = form({ grant_type: TE, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion, ...params });
  return fetch(`${f.base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
}
