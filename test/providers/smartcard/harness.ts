import { mkdtempSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import pino from 'pino';
import * as oc from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';
import { parseConfig } from '../../../src/config/load.ts';
import type { ConfigInput } from '../../../src/config/schema.ts';
import type { SmartcardUpstreamInput } from '../../../src/config/upstream-smartcard.ts';
import { createBroker, type Broker } from '../../../src/server.ts';
import { clientKey, REDIRECT, testConfig } from '../../helpers/broker.ts';
import { freePort } from '../../peers/ports.ts';
import { createTestPki, TEST_POLICY, type Issued, type TestPki } from '../../peers/pki.ts';
import { runNginx, startNginx, type Nginx } from '../../peers/nginx.ts';

// The smartcard test bed: a generated PKI, the broker listening on HTTPS with client certificates
// requested (for the proxy's mTLS and for direct logins), Debian's nginx in front of it as the
// smartcard proxy, and openid-client as the relying party talking to the broker through nginx.
// Browsers are undici clients presenting a chosen smartcard certificate, with one cookie jar per
// host name (as a browser: cookies for localhost go to nginx's port and the broker's alike).

export const WEB_SECRET = 'web-secret-0123456789';
export const HMAC_SECRET = 'hmac-shared-secret-0123456789-abcdef';
export const XFCC_BY = 'spiffe://broker.test/broker';
export const GENERIC = 'We could not verify your sign-in';

export type Outcome = { kind: 'client'; url: URL } | { kind: 'page'; status: number; html: string; url: string };

/** A cookie-keeping HTTPS user agent presenting (or not) a client certificate. It follows no redirects itself. */
export class TlsBrowser {
  readonly jar: Map<string, string>;
  readonly #agent: Agent;
  readonly #tls: { ca: string; cert?: Buffer; key?: Buffer };

  constructor(pki: TestPki, user?: Issued, options: { jar?: Map<string, string>; withChain?: boolean } = {}) {
    this.jar = options.jar ?? new Map();
    const client = user ? pki.clientFiles(user, options.withChain ?? false) : undefined;
    this.#tls = { ca: pki.serverCa.certPem, cert: client ? readFileSync(client.cert) : undefined, key: client ? readFileSync(client.key) : undefined };
    this.#agent = new Agent({
      connect: { ca: pki.serverCa.certPem, cert: client ? readFileSync(client.cert) : undefined, key: client ? readFileSync(client.key) : undefined },
      // A fresh connection per agent; no pooling across tests.
      connections: 4,
    });
  }

  async request(url: string, init: { method?: string; headers?: Record<string, string> | Array<[string, string]>; body?: string } = {}): Promise<Response> {
    const headers: Array<[string, string]> = Array.isArray(init.headers) ? [...init.headers] : Object.entries(init.headers ?? {});
    if (this.jar.size) headers.push(['cookie', [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ')]);
    const res = await undiciFetch(url, { method: init.method ?? 'GET', headers, body: init.body, redirect: 'manual', dispatcher: this.#agent });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) this.jar.delete(name);
      else this.jar.set(name, value);
    }
    return toGlobalResponse(res);
  }

  /** A GET with header lines exactly as given (duplicates kept apart), over node:https. */
  rawGet(url: string, rawHeaders: string[]): Promise<{ status: number; body: string }> {
    // An array value is sent as that many header lines.
    const headers: Record<string, string[]> = {};
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) (headers[rawHeaders[i]] ??= []).push(rawHeaders[i + 1]);
    if (this.jar.size) headers.cookie = [[...this.jar].map(([k, v]) => `${k}=${v}`).join('; ')];
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { method: 'GET', headers, ...this.#tls, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  get(url: string, headers?: Record<string, string> | Array<[string, string]>): Promise<Response> {
    return this.request(url, { headers });
  }

  postForm(url: string, form: Record<string, string>): Promise<Response> {
    return this.request(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}

async function toGlobalResponse(res: Awaited<ReturnType<typeof undiciFetch>>): Promise<Response> {
  const headers = new Headers();
  for (const [k, v] of res.headers) if (k !== 'set-cookie') headers.append(k, v);
  for (const c of res.headers.getSetCookie()) headers.append('set-cookie', c);
  const body = [101, 204, 205, 304].includes(res.status) ? null : await res.arrayBuffer();
  return new Response(body, { status: res.status, headers });
}

/** openid-client's fetch: undici trusting the test server CA. */
export function trustingFetch(pki: TestPki): oc.CustomFetch {
  const agent = new Agent({ connect: { ca: pki.serverCa.certPem } });
  return async (url, options) => {
    const res = await undiciFetch(url, { method: options.method, headers: options.headers as Record<string, string>, body: options.body as string | undefined, redirect: 'manual', dispatcher: agent, signal: options.signal });
    return toGlobalResponse(res);
  };
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

export interface Bed {
  pki: TestPki;
  issuer: string;
  /** The broker's own HTTPS origin (bypassing the proxy). */
  brokerUrl: string;
  nginx?: Nginx;
  broker: Broker;
  server: Server;
  client: oc.Configuration;
  logs: Array<Record<string, unknown>>;
  reasons(since: number): string[];
  counts(): Promise<{ accounts: number; links: number; codes: number }>;
  authorizationUrl(): Promise<{ url: string; verifier: string; state: string; nonce: string }>;
  /** From the authorization request to the redirect that sends the browser to `upstream`'s callback. */
  toCallback(browser: TlsBrowser, upstream: string): Promise<{ callback: URL; verifier: string; state: string; nonce: string }>;
  /** Follows broker redirects from `res` to the client redirect or a page. */
  follow(browser: TlsBrowser, res: Response, from: string): Promise<Outcome>;
  /** A whole login through the issuer: the browser fetches the callback itself unless `callback` is given. */
  login(browser: TlsBrowser, upstream: string, callback?: (url: URL) => Promise<Response>): Promise<{ outcome: Outcome; verifier: string; state: string; nonce: string }>;
  /** Redeems the code of a successful login; returns the ID token claims. */
  redeem(outcome: Outcome, login: { verifier: string; state: string; nonce: string }): Promise<oc.IDToken>;
  close(): Promise<void>;
}

export interface BedOptions {
  /**
   * Put nginx in front (the issuer is then nginx's URL): true for the test proxy configuration, or a
   * function giving http-context configuration (the deploy example); false: the issuer is the broker.
   */
  nginx: boolean | ((p: { port: number; brokerPort: number; pki: TestPki }) => string);
  upstreams: (pki: TestPki) => SmartcardUpstreamInput[];
  pki?: TestPki;
}

/** Upstream settings shared by the test upstreams: the test smartcard PKI, CRLs from a file, UID subjects, AAL3. */
export function baseUpstream(pki: TestPki, id: string, extra: Partial<SmartcardUpstreamInput>): SmartcardUpstreamInput {
  return {
    id,
    displayName: `Smartcard (${id})`,
    type: 'smartcard',
    trust: { caFile: pki.files.smartcardRoots, intermediatesFile: pki.files.smartcardIntermediates, policies: [TEST_POLICY] },
    revocation: { crl: { sources: [{ file: pki.files.crls }] } },
    subject: { from: 'uid', pattern: '^(\\d{12})$' },
    assurance: { acr: 'AAL3_SMARTCARD', aal: 3, amr: ['sc'] },
    ...extra,
  };
}

export async function startBed(options: BedOptions): Promise<Bed> {
  const pki = options.pki ?? (await createTestPki());
  const brokerPort = await freePort();
  const nginxPort = options.nginx ? await freePort() : undefined;
  const issuer = nginxPort ? `https://localhost:${nginxPort}` : `https://localhost:${brokerPort}`;
  const dir = mkdtempSync(join(tmpdir(), 'broker-smartcard-'));
  const storeUrl = `sqlite:${join(dir, 'broker.db')}`;
  const svcKey = await clientKey('ES256');
  const input: ConfigInput = testConfig(brokerPort, storeUrl, svcKey, {
    issuer,
    profile: 'none',
    tls: { certFile: pki.files.serverCert, keyFile: pki.files.serverKey, clientCaFile: pki.files.brokerClientCas, requestCert: true },
    upstreams: options.upstreams(pki),
  });
  const config = parseConfig(input, {});
  const logs: Array<Record<string, unknown>> = [];
  const sink = { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) };
  const broker = await createBroker(config, { log: pino({ level: 'info' }, sink), env: {} });
  const server = await broker.listen(brokerPort, '127.0.0.1');
  let nginx: Nginx | undefined;
  try {
    if (nginxPort && typeof options.nginx === 'function') {
      nginx = await runNginx(nginxPort, options.nginx({ port: nginxPort, brokerPort, pki }));
    } else if (nginxPort) {
      nginx = await startNginx({
        port: nginxPort,
        brokerPort,
        serverCert: pki.files.serverCert,
        serverKey: pki.files.serverKey,
        clientCa: pki.files.smartcardCaChain,
        crl: pki.files.crls,
        verifyClient: 'optional',
        proxyCert: pki.files.proxyCert,
        proxyKey: pki.files.proxyKey,
        brokerCa: pki.files.serverCa,
      });
    }
  } catch (err) {
    server.closeAllConnections();
    await broker.close();
    throw err;
  }
  const customFetch = trustingFetch(pki);
  const client = await oc.discovery(new URL(issuer), 'web', undefined, oc.ClientSecretBasic(WEB_SECRET), { [oc.customFetch]: customFetch });
  client[oc.customFetch] = customFetch;

  async function authorizationUrl() {
    const verifier = oc.randomPKCECodeVerifier();
    const state = oc.randomState();
    const nonce = oc.randomNonce();
    const url = oc.buildAuthorizationUrl(client, { redirect_uri: REDIRECT, scope: 'openid profile', code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state, nonce });
    return { url: url.href, verifier, state, nonce };
  }

  async function toCallback(browser: TlsBrowser, upstream: string) {
    const a = await authorizationUrl();
    let res = await browser.get(a.url);
    const interaction = locationOf(res, a.url);
    if (!interaction) throw new Error(`authorization request answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
    res = await browser.get(interaction);
    const chooser = await res.text();
    if (!chooser.includes('name="upstream"')) throw new Error(`no chooser at ${interaction}: ${chooser.slice(0, 300)}`);
    const uid = new URL(interaction).pathname.split('/').pop()!;
    res = await browser.postForm(`${issuer}/interaction/${uid}/login`, { csrf: hidden(chooser, 'csrf'), upstream });
    const callback = locationOf(res, issuer);
    if (!callback) throw new Error(`choosing ${upstream} answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
    return { callback: new URL(callback), verifier: a.verifier, state: a.state, nonce: a.nonce };
  }

  async function follow(browser: TlsBrowser, first: Response, from: string): Promise<Outcome> {
    let res = first;
    let url = from;
    for (let i = 0; i < 10; i++) {
      const next = locationOf(res, url);
      if (!next) return { kind: 'page', status: res.status, html: await res.text(), url };
      if (next.startsWith(REDIRECT)) return { kind: 'client', url: new URL(next) };
      url = next;
      res = await browser.get(url);
    }
    throw new Error('too many redirects');
  }

  async function login(browser: TlsBrowser, upstream: string, callback?: (url: URL) => Promise<Response>) {
    const c = await toCallback(browser, upstream);
    const res = callback ? await callback(c.callback) : await browser.get(c.callback.href);
    const outcome = await follow(browser, res, c.callback.href);
    return { outcome, verifier: c.verifier, state: c.state, nonce: c.nonce };
  }

  async function redeem(outcome: Outcome, l: { verifier: string; state: string; nonce: string }) {
    if (outcome.kind !== 'client') throw new Error(`login failed with ${outcome.status}: ${outcome.html.slice(0, 300)}`);
    const tokens = await oc.authorizationCodeGrant(client, outcome.url, { pkceCodeVerifier: l.verifier, expectedState: l.state, expectedNonce: l.nonce });
    return tokens.claims()!;
  }

  async function counts() {
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(storeUrl.slice('sqlite:'.length), { readOnly: true });
    try {
      const n = (sql: string) => Number((db.prepare(sql).get() as { n: number }).n);
      return { accounts: n('SELECT COUNT(*) AS n FROM accounts'), links: n('SELECT COUNT(*) AS n FROM links'), codes: n("SELECT COUNT(*) AS n FROM oidc_models WHERE model = 'AuthorizationCode'") };
    } finally {
      db.close();
    }
  }

  return {
    pki,
    issuer,
    brokerUrl: `https://localhost:${brokerPort}`,
    nginx,
    broker,
    server,
    client,
    logs,
    reasons: (since) => logs.slice(since).flatMap((l) => (typeof l.reason === 'string' ? [l.reason] : [])),
    counts,
    authorizationUrl,
    toCallback,
    follow,
    login,
    redeem,
    async close() {
      await nginx?.stop();
      server.closeAllConnections();
      await broker.close();
    },
  };
}
