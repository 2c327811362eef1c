import type autocannon from 'autocannon';
import { request } from 'undici';
import {
  BASIC_CLIENT,
  BASIC_SECRET,
  CLIENT_ID,
  ISSUER,
  OPAQUE_RESOURCE,
  PATIENT_SCOPES,
  RESOURCE,
  RESOURCE2,
  RS_CLIENT,
  RS_SECRET,
  SCOPE,
  USER_SCOPE,
  WEB_CLIENT,
  WEB_SECRET,
} from '../servers/common.ts';
import { agent, basic } from './http.ts';
import { claimsOf } from './login.ts';
import type { AssertionPool } from './pool.ts';

// The single-request scenarios of `npm run bench`: what each sends, how one response is checked
// before and after the load, and the signatures each costs the server (for its crypto ceiling).

export type Backend = 'sqlite' | 'redis';
export type Kind = 'broker' | 'bare' | 'provider';
export type Unit = 'es256Sign' | 'es256Verify' | 'rs256Verify' | 'rsSign';

/** Per-server data the scenarios need, made by fixture logins just before they run. */
export interface Fixtures {
  opaqueToken?: string;
  /** A user's access token of the web client (subject of the broker-AT exchange). */
  userToken?: string;
  /** A carer's access token acting for a patient (sub = patient, act.sub = carer, consent_id). */
  delegatedToken?: string;
  patient?: string;
  carer?: string;
  consentId?: string;
  /** Length of the real consent's stored (sealed, signed) record: seeded ones match it. */
  recordLength?: number;
  /** Seeded consents so far. */
  seeded?: number;
  /** The current refresh token of each chain (one chain per connection), and spares. */
  refresh: string[];
  spareRefresh: string[];
}

export interface Target {
  name: string;
  kind: Kind;
  backend: Backend;
  port: number;
  fx: Fixtures;
}

export interface Env {
  pool: AssertionPool;
  /** An RS256 ID token of the external CIS2-like issuer (AAL3). */
  externalIdToken: string;
}

export interface Check {
  ok: boolean;
  detail: string;
}

export interface TokenScenario {
  id: string;
  title: string;
  /** Short label for the chart. */
  short: string;
  kinds: Kind[];
  /** Signatures made or checked per request by the server (the crypto ceiling's recipe). */
  crypto: Partial<Record<Unit, number>>;
  /** Stateful chains: driven by virtual users (load.ts, flows) instead of autocannon; `vu` < connections. */
  flow?: (t: Target, vu: number) => Promise<number>;
  /** What must be ready before the scenario runs on a server. */
  needs?: Array<'opaque' | 'user' | 'delegated' | 'refresh'>;
  requests(t: Target, env: Env): autocannon.Request[];
  check(t: Target, env: Env): Promise<Check[]>;
  /** One request as path, headers and body, for the paced (open-loop) latency run. */
  one?: (t: Target, env: Env) => { path: string; headers: Record<string, string>; body: string };
  /** A response body every request must get back exactly (counted as mismatches otherwise). */
  expectBody?: (t: Target) => string | undefined;
}

const FORM = 'application/x-www-form-urlencoded';
const TE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const IDT_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
const ASSERTION = `client_assertion_type=${encodeURIComponent('urn:ietf:params:oauth:client-assertion-type:jwt-bearer')}&client_assertion=`;
const form = (o: Record<string, string>) => new URLSearchParams(o).toString();

export async function post(port: number, path: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; body: Record<string, unknown> }> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { dispatcher: agent, method: 'POST', headers: { 'content-type': FORM, ...headers }, body });
  const text = await res.body.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { raw: text.slice(0, 200) };
  }
  return { status: res.statusCode, text, body: parsed };
}

const brief = (r: { status: number; body: Record<string, unknown> }) => `${r.status} ${JSON.stringify(r.body).slice(0, 240)}`;

function isJwt(t: unknown): t is string {
  return typeof t === 'string' && t.split('.').length === 3;
}

function fixed(path: string, headers: Record<string, string>, body: string): autocannon.Request[] {
  return [{ method: 'POST', path, headers: { 'content-type': FORM, ...headers }, body }];
}

function withAssertion(t: Target, env: Env, prefix: string): autocannon.Request[] {
  return [
    {
      method: 'POST',
      path: '/token',
      headers: { 'content-type': FORM },
      setupRequest: (req) => {
        req.body = prefix + env.pool.next(t.name);
        return req;
      },
    },
  ];
}

const ccBasic = (resource: string) => form({ grant_type: 'client_credentials', resource, scope: SCOPE });
const CC_PKJWT = `${form({ grant_type: 'client_credentials', resource: RESOURCE, scope: SCOPE })}&${ASSERTION}`;
const basicSvc = { authorization: basic(BASIC_CLIENT, BASIC_SECRET) };
const basicRs = { authorization: basic(RS_CLIENT, RS_SECRET) };
const basicWeb = { authorization: basic(WEB_CLIENT, WEB_SECRET) };

const exchangeBody = (subject: string, type: string, scope: string) => `${form({ grant_type: TE, subject_token: subject, subject_token_type: type, resource: RESOURCE2, scope })}&${ASSERTION}`;

async function checkJwtGrant(port: number, body: string, headers: Record<string, string>, aud: string): Promise<Check> {
  const r = await post(port, '/token', body, headers);
  if (r.status !== 200 || !isJwt(r.body.access_token)) return { ok: false, detail: `grant: ${brief(r)}` };
  const header = JSON.parse(Buffer.from(r.body.access_token.split('.')[0], 'base64url').toString()) as Record<string, unknown>;
  const claims = claimsOf(r.body.access_token);
  const ok = header.alg === 'ES256' && header.typ === 'at+jwt' && claims.aud === aud && claims.iss === ISSUER;
  return { ok, detail: `grant: ${r.status} ${String(header.alg)} ${String(header.typ)} aud=${String(claims.aud)} scope=${String(claims.scope)}` };
}

function checkExchange(r: { status: number; body: Record<string, unknown> }, expectActor?: string): Check {
  if (r.status !== 200 || r.body.issued_token_type !== AT_TYPE || !isJwt(r.body.access_token)) return { ok: false, detail: `exchange: ${brief(r)}` };
  const claims = claimsOf(r.body.access_token);
  const act = claims.act as { sub?: string; act?: { sub?: string } } | undefined;
  let ok = claims.aud === RESOURCE2 && act?.sub === CLIENT_ID;
  if (expectActor) ok &&= act?.act?.sub === expectActor && typeof claims.consent_id === 'string';
  return { ok, detail: `exchange: ${r.status} aud=${String(claims.aud)} sub=${String(claims.sub).slice(0, 12)}… act=${JSON.stringify(act)}` };
}

export const TOKEN_SCENARIOS: TokenScenario[] = [
  {
    id: 'cc-basic-jwt',
    title: 'client_credentials, client_secret_basic, JWT AT (ES256)',
    short: 'cc basic JWT',
    kinds: ['broker', 'bare', 'provider'],
    crypto: { es256Sign: 1 },
    requests: () => fixed('/token', basicSvc, ccBasic(RESOURCE)),
    one: () => ({ path: '/token', headers: { 'content-type': FORM, ...basicSvc }, body: ccBasic(RESOURCE) }),
    check: async (t) => [await checkJwtGrant(t.port, ccBasic(RESOURCE), basicSvc, RESOURCE)],
  },
  {
    id: 'cc-pkjwt-jwt',
    title: 'client_credentials, private_key_jwt (ES256), JWT AT (ES256)',
    short: 'cc private_key_jwt JWT',
    kinds: ['broker', 'bare', 'provider'],
    crypto: { es256Verify: 1, es256Sign: 1 },
    requests: (t, env) => withAssertion(t, env, CC_PKJWT),
    one: (t, env) => ({ path: '/token', headers: { 'content-type': FORM }, body: CC_PKJWT + env.pool.next(t.name) }),
    check: async (t, env) => {
      const assertion = env.pool.next(t.name);
      const first = await checkJwtGrant(t.port, CC_PKJWT + assertion, {}, RESOURCE);
      const replay = await post(t.port, '/token', CC_PKJWT + assertion);
      return [first, { ok: replay.status === 401 && replay.body.error === 'invalid_client', detail: `replayed assertion: ${replay.status} ${String(replay.body.error)}` }];
    },
  },
  {
    id: 'cc-basic-opaque',
    title: 'client_credentials, client_secret_basic, opaque AT (stored)',
    short: 'cc basic opaque',
    kinds: ['broker', 'bare'],
    crypto: {},
    requests: () => fixed('/token', basicSvc, ccBasic(OPAQUE_RESOURCE)),
    check: async (t) => {
      const r = await post(t.port, '/token', ccBasic(OPAQUE_RESOURCE), basicSvc);
      const ok = r.status === 200 && typeof r.body.access_token === 'string' && !isJwt(r.body.access_token);
      return [{ ok, detail: `grant: ${r.status} opaque=${ok}` }];
    },
  },
  {
    id: 'refresh',
    title: 'refresh_token rotation (web, client_secret_basic; new RT + JWT AT + ID token each)',
    short: 'refresh rotation',
    kinds: ['broker'],
    crypto: { es256Sign: 2 },
    needs: ['refresh'],
    requests: () => [],
    // One chain per virtual user (see load.ts, flows): each request sends the token the last one rotated in.
    flow: async (t, vu) => {
      const rt = t.fx.refresh[vu];
      const r = await post(t.port, '/token', `grant_type=refresh_token&refresh_token=${encodeURIComponent(rt)}`, basicWeb);
      if (r.status === 200 && typeof r.body.refresh_token === 'string') {
        t.fx.refresh[vu] = r.body.refresh_token;
        return 1;
      }
      // A broken chain continues on a spare grant.
      const spare = t.fx.spareRefresh.pop();
      if (spare) t.fx.refresh[vu] = spare;
      throw new Error(`refresh: ${brief(r)}`);
    },
    check: async (t) => {
      const rt = t.fx.spareRefresh.pop();
      if (!rt) return [{ ok: false, detail: 'no spare refresh token' }];
      const r = await post(t.port, '/token', form({ grant_type: 'refresh_token', refresh_token: rt }), basicWeb);
      const ok = r.status === 200 && typeof r.body.refresh_token === 'string' && r.body.refresh_token !== rt && isJwt(r.body.access_token) && isJwt(r.body.id_token);
      // Reusing the rotated-out token must fail (and revokes that grant: it is not put back).
      const reuse = ok ? await post(t.port, '/token', form({ grant_type: 'refresh_token', refresh_token: rt }), basicWeb) : undefined;
      return [
        { ok, detail: `refresh: ${ok ? `${r.status} rotated, AT + ID token` : brief(r)}` },
        ...(reuse ? [{ ok: reuse.status === 400 && reuse.body.error === 'invalid_grant', detail: `rotated-out token reused: ${reuse.status} ${String(reuse.body.error)}` }] : []),
      ];
    },
  },
  {
    id: 'exchange-at',
    title: 'token exchange: broker access token (user) → API2, private_key_jwt',
    short: 'exchange broker AT',
    kinds: ['broker'],
    crypto: { es256Verify: 2, es256Sign: 1 },
    needs: ['user'],
    requests: (t, env) => withAssertion(t, env, exchangeBody(t.fx.userToken!, AT_TYPE, PATIENT_SCOPES[0])),
    check: async (t, env) => [checkExchange(await post(t.port, '/token', exchangeBody(t.fx.userToken!, AT_TYPE, PATIENT_SCOPES[0]) + env.pool.next(t.name)))],
  },
  {
    id: 'exchange-idt',
    title: 'token exchange: external ID token (CIS2-like, RS256, AAL3) → API2, private_key_jwt',
    short: 'exchange external IDT',
    kinds: ['broker'],
    crypto: { es256Verify: 1, rs256Verify: 1, es256Sign: 1 },
    requests: (t, env) => withAssertion(t, env, exchangeBody(env.externalIdToken, IDT_TYPE, USER_SCOPE)),
    check: async (t, env) => [checkExchange(await post(t.port, '/token', exchangeBody(env.externalIdToken, IDT_TYPE, USER_SCOPE) + env.pool.next(t.name)))],
  },
  {
    id: 'exchange-delegated',
    title: 'token exchange: delegated token (sub = patient, act = carer) → API2, act nested',
    short: 'exchange delegated',
    kinds: ['broker'],
    // assertion, subject token, the consent record's signature; then the new token.
    crypto: { es256Verify: 3, es256Sign: 1 },
    needs: ['delegated'],
    requests: (t, env) => withAssertion(t, env, exchangeBody(t.fx.delegatedToken!, AT_TYPE, PATIENT_SCOPES[0])),
    check: async (t, env) => [checkExchange(await post(t.port, '/token', exchangeBody(t.fx.delegatedToken!, AT_TYPE, PATIENT_SCOPES[0]) + env.pool.next(t.name)), t.fx.carer)],
  },
  {
    id: 'introspect-opaque',
    title: 'introspection of an opaque AT (resource server, client_secret_basic)',
    short: 'introspect opaque',
    kinds: ['broker', 'bare'],
    crypto: {},
    needs: ['opaque'],
    requests: (t) => fixed('/token/introspection', basicRs, form({ token: t.fx.opaqueToken! })),
    expectBody: (t) => introspectionBodies.get(`${t.name}|${t.fx.opaqueToken}`),
    check: async (t) => {
      const r = await post(t.port, '/token/introspection', form({ token: t.fx.opaqueToken! }), basicRs);
      const ok = r.status === 200 && r.body.active === true && r.body.aud === OPAQUE_RESOURCE;
      if (ok) introspectionBodies.set(`${t.name}|${t.fx.opaqueToken}`, r.text);
      return [{ ok, detail: `introspection: ${brief(r)}` }];
    },
  },
  {
    id: 'introspect-delegated',
    title: 'introspection of a delegated JWT AT (signature, grant, consent still active)',
    short: 'introspect delegated',
    kinds: ['broker'],
    // the token, then the consent record's signature.
    crypto: { es256Verify: 2 },
    needs: ['delegated'],
    requests: (t) => fixed('/token/introspection', basicRs, form({ token: t.fx.delegatedToken! })),
    expectBody: (t) => introspectionBodies.get(`${t.name}|${t.fx.delegatedToken}`),
    check: async (t) => {
      const r = await post(t.port, '/token/introspection', form({ token: t.fx.delegatedToken! }), basicRs);
      const act = r.body.act as { sub?: string } | undefined;
      const ok = r.status === 200 && r.body.active === true && act?.sub === t.fx.carer && r.body.consent_id === t.fx.consentId && r.body.sub === t.fx.patient;
      if (ok) introspectionBodies.set(`${t.name}|${t.fx.delegatedToken}`, r.text);
      return [{ ok, detail: `introspection: ${r.status} active=${String(r.body.active)} act=${JSON.stringify(act)} consent_status=${String(r.body.consent_status)}` }];
    },
  },
];

/** The exact body an introspection answered in its check: every response under load must match it. */
const introspectionBodies = new Map<string, string>();

/** Crypto recipes of the flows (per login, at the broker). */
export const LOGIN_CRYPTO: Record<string, Partial<Record<Unit, number>>> = {
  // client assertion to CIS2 (RS512), its ID token (RS256), our ID token and access token (ES256).
  'login-oidc': { rsSign: 1, rs256Verify: 1, es256Sign: 2 },
  // signed AuthnRequest (redirect binding, RSA-SHA256), signed Response and Assertion, our two tokens.
  'login-saml': { rsSign: 1, rs256Verify: 2, es256Sign: 2 },
};

export function ceilingFor(recipe: Partial<Record<Unit, number>>, unitUs: Record<string, number>): number | undefined {
  let us = 0;
  for (const [unit, n] of Object.entries(recipe)) us += (unitUs[unit] ?? NaN) * (n ?? 0);
  return us > 0 && Number.isFinite(us) ? 1e6 / us : undefined;
}
