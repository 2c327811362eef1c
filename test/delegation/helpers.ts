import { hkdfSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import * as oc from 'openid-client';
import { decodeJwt, type JWTPayload } from 'jose';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import type { Connector } from '../../src/identity/upstream.ts';
import type { AuditEventType, StoredEntry } from '../../src/audit/index.ts';
import { clientKey, testConfig, TEST_KEK, API } from '../helpers/broker.ts';
import { UserAgent, hiddenField, location, type Choices } from '../helpers/browser.ts';
import { freePort } from '../peers/ports.ts';

// Shared by the delegation tests: a broker with the account app (and optional scripted upstreams),
// API tokens for the internal broker-account client, and small request helpers.

export interface DelegationBroker {
  broker: Broker;
  server: Server;
  base: string;
  account: oc.Configuration;
  web: oc.Configuration;
  close(): Promise<void>;
}

/** The broker-account client's secret, derived from the KEK exactly as server.ts does. */
export function accountSecret(kek = TEST_KEK): string {
  return Buffer.from(hkdfSync('sha256', Buffer.from(kek, 'base64url'), Buffer.alloc(0), 'account-client', 32)).toString('base64url');
}

export async function startDelegationBroker(options: { connectors?: Connector[]; delegation?: ConfigInput['delegation']; dir?: string } = {}): Promise<DelegationBroker> {
  const port = await freePort();
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'delegation-'));
  const cfg = testConfig(port, `sqlite:${join(dir, 'broker.db')}`, await clientKey());
  cfg.resources![0].scopes = ['patient/Patient.rs', 'patient/Observation.rs', 'system/Patient.rs', 'system/Observation.rs'];
  cfg.clients!.find((c) => c.client_id === 'web')!.scope = 'openid profile offline_access patient/Patient.rs patient/Observation.rs';
  if (options.delegation) cfg.delegation = options.delegation;
  const broker = await createBroker(parseConfig(cfg, {}), { log: pino({ level: 'silent' }), env: {}, connectors: options.connectors ?? [] });
  const server = await broker.listen(port, '127.0.0.1');
  const base = `http://localhost:${(server.address() as AddressInfo).port}`;
  const execute = [oc.allowInsecureRequests];
  const account = await oc.discovery(new URL(base), 'broker-account', undefined, oc.ClientSecretBasic(accountSecret()), { execute });
  const web = await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute });
  return {
    broker,
    server,
    base,
    account,
    web,
    async close() {
      server.closeAllConnections();
      await broker.close();
    },
  };
}

/** How the test signs in upstream: a demo persona, or a scripted connector (its identity queued by the test). */
export type Upstream = { persona: string } | { connector: string };

/**
 * Drives the broker's interaction from an authorization URL until the broker redirects to `stopAt`
 * (a URL prefix): chooser, upstream, role and act-as choices, consent. Returns that redirect URL.
 */
export async function signIn(ua: UserAgent, t: { base: string }, authorizationUrl: string, upstream: Upstream, stopAt: string, choices: Choices = {}): Promise<URL> {
  const { base } = t;
  let res = await ua.get(authorizationUrl);
  for (let i = 0; i < 12; i++) {
    if (res.status === 200) {
      const html = await res.text();
      const uid = /action="\/interaction\/([^/"]+)\//.exec(html)?.[1];
      if (html.includes('/upstream/demo/callback"')) {
        res = await ua.postForm(`${base}/upstream/demo/callback`, { state: hiddenField(html, 'state'), secret: hiddenField(html, 'secret'), persona: 'persona' in upstream ? upstream.persona : '' });
      } else if (uid && html.includes(`/interaction/${uid}/login"`)) {
        res = await ua.postForm(`${base}/interaction/${uid}/login`, { csrf: hiddenField(html, 'csrf'), upstream: 'persona' in upstream ? 'demo' : upstream.connector });
      } else if (uid && html.includes('/act-as"')) {
        res = await ua.postForm(`${base}/interaction/${uid}/act-as`, { csrf: hiddenField(html, 'csrf'), acting: choices.actAs ?? 'self' });
      } else if (uid && html.includes('/role"')) {
        const role = choices.role ?? /name="role" type="radio" value="([^"]+)"/.exec(html)![1];
        res = await ua.postForm(`${base}/interaction/${uid}/role`, { csrf: hiddenField(html, 'csrf'), role });
      } else if (uid && html.includes('/confirm"')) {
        res = await ua.postForm(`${base}/interaction/${uid}/confirm`, { csrf: hiddenField(html, 'csrf') });
      } else {
        throw new Error(`unexpected page: ${html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').slice(0, 400)}`);
      }
      continue;
    }
    const next = location(res, base);
    if (next.startsWith(stopAt)) return new URL(next);
    res = await ua.get(next);
  }
  throw new Error('too many steps');
}

export interface ApiLogin {
  token: string;
  claims: JWTPayload;
  accountId: string;
}

/** An access token for the broker's API (client broker-account), for the given upstream login. */
export async function apiToken(t: DelegationBroker, upstream: Upstream, choices: Choices = {}): Promise<ApiLogin> {
  const verifier = oc.randomPKCECodeVerifier();
  const state = oc.randomState();
  const url = oc.buildAuthorizationUrl(t.account, {
    redirect_uri: `${t.base}/account/callback`,
    scope: 'openid profile delegation.read delegation.write delegation.staff audit.read',
    resource: `${t.base}/api`,
    code_challenge: await oc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
  });
  const back = await signIn(new UserAgent(), t, url.href, upstream, `${t.base}/account/callback`, choices);
  const tokens = await oc.authorizationCodeGrant(t.account, back, { pkceCodeVerifier: verifier, expectedState: state });
  const claims = decodeJwt(tokens.access_token);
  return { token: tokens.access_token, claims, accountId: String(claims.sub) };
}

/** A token for the test client `web` (resource API), optionally acting for someone (act-as choice). */
export async function clientTokens(t: DelegationBroker, upstream: Upstream, actAs: string, scope = 'openid offline_access patient/Patient.rs') {
  const verifier = oc.randomPKCECodeVerifier();
  const url = oc.buildAuthorizationUrl(t.web, { redirect_uri: 'https://client.test/cb', scope, resource: API, prompt: 'consent', code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
  const back = await signIn(new UserAgent(), t, url.href, upstream, 'https://client.test/cb', { actAs });
  return oc.authorizationCodeGrant(t.web, back, { pkceCodeVerifier: verifier });
}

export interface ApiResult<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

export async function call<T = Record<string, unknown>>(t: { base: string }, token: string | undefined, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<ApiResult<T>> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = contentType;
  const res = await fetch(`${t.base}${path}`, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: left as text
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
}

export const introspect = async (t: { base: string }, token: string): Promise<Record<string, unknown>> =>
  (await (
    await fetch(`${t.base}/token/introspection`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from('rs:rs-secret-0123456789ab').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    })
  ).json()) as Record<string, unknown>;

/** Ledger entries are appended asynchronously by some emitters: waits briefly for a matching one. */
export async function auditEntry(broker: Broker, type: AuditEventType | AuditEventType[], match: (e: StoredEntry) => boolean, timeoutMs = 2000): Promise<StoredEntry> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await broker.ledger.query({ type, order: 'desc', limit: 200 })).find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no ${String(type)} audit entry matched`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function inDays(days: number): string {
  return new Date(Date.now() + days * 86_400_000).toISOString();
}
