import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { Context } from 'koa';
import pino from 'pino';
import * as oc from 'openid-client';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { ClientMetadata } from 'oidc-provider';
import { parseConfig } from '../../../src/config/load.ts';
import type { ConfigInput } from '../../../src/config/schema.ts';
import { oidcUpstreamSchema, type OidcUpstreamConfig, type OidcUpstreamInput } from '../../../src/config/upstream-oidc.ts';
import type { Broker } from '../../../src/server.ts';
import { openStore } from '../../../src/store/open.ts';
import type { Store } from '../../../src/store/contracts.ts';
import type { Connector, ConnectorDeps, LoginRequest, LoginTransaction, UpstreamIdentity } from '../../../src/identity/upstream.ts';
import { AccountService } from '../../../src/identity/accounts.ts';
import { createOidcConnector, type UpstreamClientOptions } from '../../../providers/oidc/index.ts';
import { clientKey, REDIRECT, testConfig } from '../../helpers/broker.ts';
import { freePort } from '../../peers/ports.ts';
import { CIS2_CLIENT_ID, startFakeCis2, type FakeCis2 } from '../../peers/fake-cis2.ts';
import { NHS_LOGIN_CLIENT_ID, startFakeNhsLogin } from '../../peers/fake-nhs-login.ts';
import type { FakeOp } from '../../peers/fake-oidc-op.ts';

// A broker with the OIDC connector for a CIS2-like and an NHS login-like upstream, both real
// oidc-provider instances on loopback, and a browser with one cookie jar per host, so the broker's and
// the upstreams' cookies stay apart as in a real browser.

export const WEB_SECRET = 'web-secret-0123456789';
export const APP_SECRET = 'app-secret-0123456789';
/** First-party clients that need a minimum assurance, so the broker asks the upstream for it. */
export const STAFF_APP = 'staff-app';
export const PATIENT_APP = 'patient-app';

export interface ClientKeyPair {
  privateJwk: JWK;
  publicJwk: JWK;
}

export async function rsaClientKey(kid: string): Promise<ClientKeyPair> {
  const { privateKey, publicKey } = await generateKeyPair('RS512', { modulusLength: 2048, extractable: true });
  return { privateJwk: { ...(await exportJWK(privateKey)), kid }, publicJwk: { ...(await exportJWK(publicKey)), kid, use: 'sig' } };
}

/** Maps a published origin (https://cis2.test:443) to the loopback port a fake listens on. */
export interface HostMapping {
  from: string;
  to: string;
}

function mapUrl(url: string, mappings: HostMapping[]): { url: string; headers: Record<string, string> } {
  const u = new URL(url);
  for (const m of mappings) {
    const from = new URL(m.from);
    if (u.origin === from.origin) {
      const target = new URL(u.pathname + u.search, m.to);
      return { url: target.href, headers: { 'x-forwarded-proto': from.protocol.slice(0, -1), 'x-forwarded-host': new URL(m.from).host || from.host } };
    }
  }
  return { url, headers: {} };
}

/** openid-client's fetch, routed through host mappings (the test stands in for DNS and TLS). */
export function mappedFetch(mappings: HostMapping[]): oc.CustomFetch {
  return (url, options) => {
    const m = mapUrl(url, mappings);
    return fetch(m.url, { ...options, body: options.body as BodyInit | null | undefined, headers: { ...options.headers, ...m.headers } });
  };
}

/** A cookie-keeping user agent with one jar per host name; it follows nothing by itself. */
export class Browser {
  readonly jars = new Map<string, Map<string, string>>();
  readonly mappings: HostMapping[];

  constructor(mappings: HostMapping[] = []) {
    this.mappings = mappings;
  }

  async request(url: string, init: RequestInit = {}): Promise<Response> {
    const host = new URL(url).hostname;
    const jar = this.jars.get(host) ?? new Map<string, string>();
    this.jars.set(host, jar);
    const m = mapUrl(url, this.mappings);
    const headers = new Headers(init.headers);
    for (const [k, v] of Object.entries(m.headers)) headers.set(k, v);
    if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(m.url, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) jar.delete(name);
      else jar.set(name, value);
    }
    return res;
  }

  get(url: string): Promise<Response> {
    return this.request(url);
  }

  postForm(url: string, form: Record<string, string>): Promise<Response> {
    return this.request(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
  }
}

export function hidden(html: string, name: string): string {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  if (!m) throw new Error(`no hidden field ${name} in ${html.slice(0, 300)}`);
  return m[1].replace(/&amp;/g, '&');
}

function locationOf(res: Response, base: string): string | undefined {
  const loc = res.headers.get('location');
  return loc ? new URL(loc, base).href : undefined;
}

export type LoginOutcome =
  | { kind: 'client'; url: URL; callback: string | undefined }
  | { kind: 'page'; status: number; html: string; url: string; callback: string | undefined; elapsedMs: number };

export interface LoginOptions {
  upstream: string;
  /** Rewrites the upstream's redirect to the broker's callback (state swap, code injection). */
  onCallback?: (url: URL) => URL | Promise<URL>;
  /** Stop at the broker's callback without following it. */
  stopAtCallback?: boolean;
}

export interface ClientLogin {
  authorizationUrl: string;
  verifier: string;
  state: string;
  nonce: string;
}

export interface Harness {
  broker: Broker;
  server: Server;
  base: string;
  store: Store;
  deps: ConnectorDeps;
  cis2: FakeCis2;
  nhs: FakeOp;
  cis2Key: ClientKeyPair;
  nhsKey: ClientKeyPair;
  web: oc.Configuration;
  client(id: string): oc.Configuration;
  connectors: Map<string, Connector>;
  logouts: Array<{ provider: string; subject?: string; sid?: string }>;
  /** The broker's log lines (JSON), for the refusal reasons that only go to the log and audit. */
  logs: Array<Record<string, unknown>>;
  /** Reasons of refused logins logged since `since` (an index into logs). */
  reasons(since: number): string[];
  cis2Config(extra?: Partial<OidcUpstreamInput>): OidcUpstreamConfig;
  nhsConfig(extra?: Partial<OidcUpstreamInput>): OidcUpstreamConfig;
  clientLogin(params?: Record<string, string>, clientId?: string): Promise<ClientLogin>;
  login(browser: Browser, authorizationUrl: string, options: LoginOptions): Promise<LoginOutcome>;
  /** Logs in through the broker and redeems the code as the `web` client. */
  fullLogin(upstream: string, persona: string, params?: Record<string, string>, clientId?: string): Promise<{ claims: oc.IDToken; outcome: LoginOutcome }>;
  /** Runs a login through the broker up to its answer (a client redirect or a page). */
  attempt(upstream: string, persona: string, options?: Omit<LoginOptions, 'upstream'> & { params?: Record<string, string>; clientId?: string; browser?: Browser }): Promise<LoginOutcome>;
  accounts(): AccountService;
  counts(): Promise<{ accounts: number; links: number }>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Start a broker too (default true); connector-level tests can do without. */
  broker?: boolean;
  /** Connector settings on top of the defaults (per upstream id). */
  cis2?: Partial<OidcUpstreamInput>;
  nhs?: Partial<OidcUpstreamInput>;
  /** Extra connectors built from the running fakes (more upstream ids on the same fakes). */
  extra?: (h: Pick<Harness, 'cis2' | 'nhs' | 'cis2Config' | 'nhsConfig' | 'deps'>) => Promise<Connector[]>;
  /** Changes to the broker's configuration before it starts (e.g. upstream entries with circuit breaker settings). */
  configure?: (input: ConfigInput, h: Pick<Harness, 'cis2Config' | 'nhsConfig'>) => void;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const port = await freePort();
  const base = `http://localhost:${port}`;
  const callback = (id: string) => `${base}/upstream/${id}/callback`;
  const cis2Key = await rsaClientKey('broker-cis2-1');
  const nhsKey = await rsaClientKey('broker-nhs-1');
  const ids = ['cis2', 'cis2-b', 'cis2-static'];
  const cis2Client: ClientMetadata = {
    client_id: CIS2_CLIENT_ID,
    redirect_uris: ids.map(callback),
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS512',
    id_token_signed_response_alg: 'RS256',
    // With a back-channel logout URI and session_required, the fake puts sid in its ID tokens.
    backchannel_logout_uri: `${base}/upstream/cis2/backchannel-logout`,
    backchannel_logout_session_required: true,
    jwks: { keys: [cis2Key.publicJwk as { kty: string }] } as ClientMetadata['jwks'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  };
  const nhsClient: ClientMetadata = {
    client_id: NHS_LOGIN_CLIENT_ID,
    redirect_uris: ['nhs-login', 'nhs-login-b'].map(callback),
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS512',
    id_token_signed_response_alg: 'RS512',
    backchannel_logout_uri: `${base}/upstream/nhs-login/backchannel-logout`,
    backchannel_logout_session_required: true,
    jwks: { keys: [nhsKey.publicJwk as { kty: string }] } as ClientMetadata['jwks'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  };
  const cis2 = await startFakeCis2({ clients: [cis2Client] });
  const nhs = await startFakeNhsLogin({ clients: [nhsClient] });

  const dir = mkdtempSync(join(tmpdir(), 'broker-oidc-'));
  const storeUrl = `sqlite:${join(dir, 'broker.db')}`;
  const store = openStore(storeUrl);
  const logouts: Harness['logouts'] = [];
  const logs: Array<Record<string, unknown>> = [];
  const deps: ConnectorDeps = {
    issuer: base,
    replay: store.replay,
    onUpstreamLogout: async (e) => {
      logouts.push(e);
    },
    allowInsecureUpstream: true,
  };

  const cis2Config = (extra: Partial<OidcUpstreamInput> = {}): OidcUpstreamConfig =>
    oidcUpstreamSchema.parse({
      id: 'cis2',
      displayName: 'NHS CIS2 (fake)',
      type: 'oidc',
      preset: 'cis2',
      issuer: cis2.issuer,
      client_id: CIS2_CLIENT_ID,
      private_key_jwk: cis2Key.privateJwk,
      timeoutMs: 1500,
      ...options.cis2,
      ...extra,
    });
  const nhsConfig = (extra: Partial<OidcUpstreamInput> = {}): OidcUpstreamConfig =>
    oidcUpstreamSchema.parse({
      id: 'nhs-login',
      displayName: 'NHS login (fake)',
      type: 'oidc',
      preset: 'nhs-login',
      issuer: nhs.issuer,
      client_id: NHS_LOGIN_CLIENT_ID,
      private_key_jwk: nhsKey.privateJwk,
      timeoutMs: 1500,
      ...options.nhs,
      ...extra,
    });

  const connectorList = [await createOidcConnector(cis2Config(), deps), await createOidcConnector(nhsConfig(), deps), ...((await options.extra?.({ cis2, nhs, cis2Config, nhsConfig, deps })) ?? [])];
  const connectors = new Map(connectorList.map((c) => [c.id, c]));

  let broker: Broker | undefined;
  let server: Server | undefined;
  const clients = new Map<string, oc.Configuration>();
  if (options.broker ?? true) {
    // Loaded here so connector-level tests do not depend on the composition root.
    const { createBroker } = await import('../../../src/server.ts');
    const svcKey = await clientKey('ES256');
    const input = testConfig(port, storeUrl, svcKey);
    const app = (client_id: string, minimumAssurance: { aal?: number; proofing?: 'P0' | 'P5' | 'P9' }) => ({ client_id, client_secret: APP_SECRET, token_endpoint_auth_method: 'client_secret_basic' as const, grant_types: ['authorization_code' as const], redirect_uris: [REDIRECT], firstParty: true, scope: 'openid profile', minimumAssurance });
    input.clients = [...(input.clients ?? []), app(STAFF_APP, { aal: 3 }), app(PATIENT_APP, { proofing: 'P9' })];
    options.configure?.(input, { cis2Config, nhsConfig });
    const config = parseConfig(input, {});
    const sink = { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) };
    broker = await createBroker(config, { log: pino({ level: 'info' }, sink), env: {}, store, connectors: connectorList });
    server = await broker.listen(port, '127.0.0.1');
    for (const [id, secret] of [['web', WEB_SECRET], [STAFF_APP, APP_SECRET], [PATIENT_APP, APP_SECRET]]) {
      clients.set(id, await oc.discovery(new URL(base), id, undefined, oc.ClientSecretBasic(secret), { execute: [oc.allowInsecureRequests] }));
    }
  }
  const need = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('this harness runs without a broker');
    return v;
  };

  async function clientLogin(params: Record<string, string> = {}, clientId = 'web'): Promise<ClientLogin> {
    const verifier = oc.randomPKCECodeVerifier();
    const state = oc.randomState();
    const nonce = oc.randomNonce();
    const url = oc.buildAuthorizationUrl(need(clients.get(clientId)), {
      redirect_uri: REDIRECT,
      scope: 'openid profile',
      code_challenge: await oc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...params,
    });
    return { authorizationUrl: url.href, verifier, state, nonce };
  }

  async function login(browser: Browser, authorizationUrl: string, o: LoginOptions): Promise<LoginOutcome> {
    const started = Date.now();
    let url = authorizationUrl;
    let res = await browser.get(url);
    let callback: string | undefined;
    for (let i = 0; i < 30; i++) {
      const next = locationOf(res, url);
      if (next) {
        if (next.startsWith(REDIRECT)) return { kind: 'client', url: new URL(next), callback };
        url = next;
        if (url.startsWith(`${base}/upstream/${o.upstream}/callback`)) {
          if (o.onCallback) url = (await o.onCallback(new URL(url))).href;
          callback = url;
          if (o.stopAtCallback) return { kind: 'page', status: res.status, html: '', url, callback, elapsedMs: Date.now() - started };
          const t0 = Date.now();
          res = await browser.get(url);
          if (!locationOf(res, url)) return { kind: 'page', status: res.status, html: await res.text(), url, callback, elapsedMs: Date.now() - t0 };
          continue;
        }
        res = await browser.get(url);
        continue;
      }
      const html = await res.text();
      if (res.status === 200 && url.startsWith(`${base}/interaction/`) && html.includes('name="upstream"')) {
        const uid = new URL(url).pathname.split('/').pop()!;
        const t0 = Date.now();
        res = await browser.postForm(`${base}/interaction/${uid}/login`, { csrf: hidden(html, 'csrf'), upstream: o.upstream });
        if (!locationOf(res, url)) return { kind: 'page', status: res.status, html: await res.text(), url, callback, elapsedMs: Date.now() - t0 };
        continue;
      }
      return { kind: 'page', status: res.status, html, url, callback, elapsedMs: Date.now() - started };
    }
    throw new Error('too many redirects');
  }

  async function attempt(upstream: string, persona: string, o: Omit<LoginOptions, 'upstream'> & { params?: Record<string, string>; clientId?: string; browser?: Browser } = {}): Promise<LoginOutcome> {
    // NHS login takes no login_hint (the connector drops it): the fake signs in its default persona.
    if (upstream.startsWith('nhs')) nhs.defaultPersona = persona;
    const c = await clientLogin({ login_hint: persona, ...o.params }, o.clientId);
    return login(o.browser ?? new Browser(), c.authorizationUrl, { upstream, onCallback: o.onCallback, stopAtCallback: o.stopAtCallback });
  }

  async function fullLogin(upstream: string, persona: string, params: Record<string, string> = {}, clientId = 'web') {
    if (upstream.startsWith('nhs')) nhs.defaultPersona = persona;
    const c = await clientLogin({ login_hint: persona, ...params }, clientId);
    const outcome = await login(new Browser(), c.authorizationUrl, { upstream });
    if (outcome.kind !== 'client') throw new Error(`login failed with ${outcome.status}: ${outcome.html.slice(0, 300)}`);
    const tokens = await oc.authorizationCodeGrant(need(clients.get(clientId)), outcome.url, { pkceCodeVerifier: c.verifier, expectedState: c.state, expectedNonce: c.nonce });
    return { claims: tokens.claims()!, outcome };
  }

  const accounts = () => new AccountService(store.accounts, need(broker).sealer);

  async function counts() {
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(storeUrl.slice('sqlite:'.length), { readOnly: true });
    try {
      return {
        accounts: Number(db.prepare('SELECT COUNT(*) AS n FROM accounts').get()!.n),
        links: Number(db.prepare('SELECT COUNT(*) AS n FROM links').get()!.n),
      };
    } finally {
      db.close();
    }
  }

  return {
    get broker() {
      return need(broker);
    },
    get server() {
      return need(server);
    },
    get web() {
      return need(clients.get('web'));
    },
    client: (id: string) => need(clients.get(id)),
    base,
    store,
    deps,
    cis2,
    nhs,
    cis2Key,
    nhsKey,
    connectors,
    logouts,
    logs,
    reasons: (since: number) => logs.slice(since).flatMap((l) => (typeof l.reason === 'string' ? [l.reason] : [])),
    cis2Config,
    nhsConfig,
    clientLogin,
    login,
    attempt,
    fullLogin,
    accounts,
    counts,
    async close() {
      server?.closeAllConnections();
      await broker?.close();
      await store.close();
      await cis2.close();
      await nhs.close();
    },
  };
}

/**
 * Drives one connector without the broker: begin() against a stub context, the browser through the
 * fake upstream, then complete() with the callback's query. For checks on the UpstreamIdentity itself.
 */
export async function driveConnector(connector: Connector, request: Partial<LoginRequest> & { loginHint?: string }, options: { browser?: Browser; base?: string; onCallback?: (url: URL) => URL } = {}): Promise<{ identity?: UpstreamIdentity; error?: unknown; authorize: URL; callback?: URL }> {
  const browser = options.browser ?? new Browser();
  const base = options.base ?? 'http://localhost:1';
  const transactionId = oc.randomState();
  let location = '';
  const beginCtx = {
    status: 200,
    redirect(url: string) {
      location = url;
    },
  } as unknown as Context;
  const state = await connector.begin(beginCtx, { callbackUrl: `${base}/upstream/${connector.id}/callback`, transactionId, ...request });
  const authorize = new URL(location);
  let url = authorize.href;
  let callback: URL | undefined;
  for (let i = 0; i < 10; i++) {
    const res = await browser.get(url);
    const loc = res.headers.get('location');
    if (!loc) return { authorize, error: new Error(`upstream page ${res.status}: ${(await res.text()).slice(0, 200)}`) };
    url = new URL(loc, url).href;
    if (url.startsWith(`${base}/upstream/`)) {
      callback = new URL(url);
      break;
    }
  }
  if (!callback) throw new Error('never reached the callback');
  if (options.onCallback) callback = options.onCallback(callback);
  const completeCtx = { method: 'GET', querystring: callback.search.slice(1), query: Object.fromEntries(callback.searchParams), state: {} } as unknown as Context;
  const tx: LoginTransaction = { id: transactionId, interactionUid: 'test', connectorId: connector.id, createdAt: Math.floor(Date.now() / 1000), state };
  try {
    return { identity: await connector.complete(completeCtx, tx), authorize, callback };
  } catch (error) {
    return { error, authorize, callback };
  }
}

export type { UpstreamClientOptions };
