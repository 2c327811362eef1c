// Shared helpers for the hostile OAuth/OIDC tests (catalogue sections 1A-1E). Not a test file itself.
import { createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { expect } from 'vitest';
import { SignJWT, type CryptoKey } from 'jose';
import { REDIRECT, TEST_KEK, type ClientKey, type TestBroker } from '../../helpers/broker.ts';
import { UserAgent, hiddenField, location } from '../../helpers/browser.ts';

export const WEB_SECRET = 'web-secret-0123456789';
export const RS_SECRET = 'rs-secret-0123456789ab';
export const OTHER_SECRET = 'other-secret-0123456789';
export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const FORM = 'application/x-www-form-urlencoded';

export const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

export const s256 = (verifier: string): string => createHash('sha256').update(verifier).digest('base64url');
export const newVerifier = (): string => randomBytes(32).toString('base64url'); // 43 chars

/**
 * Row counts of everything a request could create: oidc-provider records per model, accounts and
 * links. Read from the broker's SQLite file through a separate read-only connection.
 */
export class DbCounter {
  private readonly db: DatabaseSync;
  constructor(tb: TestBroker) {
    const store = tb.broker.config.store;
    if (!store.startsWith('sqlite:')) throw new Error('DbCounter needs the sqlite backend');
    this.db = new DatabaseSync(store.slice('sqlite:'.length), { readOnly: true });
  }
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const row of this.db.prepare('SELECT model, COUNT(*) AS n FROM oidc_models GROUP BY model').all()) out[`oidc:${String(row.model)}`] = Number(row.n);
    out.accounts = Number(this.db.prepare('SELECT COUNT(*) AS n FROM accounts').get()!.n);
    out.links = Number(this.db.prepare('SELECT COUNT(*) AS n FROM links').get()!.n);
    return out;
  }
  close(): void {
    this.db.close();
  }
}

/** Runs `fn` and asserts that it created no oidc record, account or link. */
export async function createsNothing<T>(db: DbCounter, fn: () => Promise<T>): Promise<T> {
  const before = db.snapshot();
  const result = await fn();
  expect(db.snapshot()).toEqual(before);
  return result;
}

export async function postForm(url: string, form: Record<string, string> | URLSearchParams | string, headers: Record<string, string> = {}): Promise<Response> {
  const body = typeof form === 'string' ? form : new URLSearchParams(form).toString();
  return fetch(url, { method: 'POST', headers: { 'content-type': FORM, ...headers }, body, redirect: 'manual' });
}

/** Asserts a JSON OAuth error answer and returns it. */
export async function oauthError(res: Response, status: number | number[], errors: string | string[]): Promise<{ error: string; error_description?: string }> {
  const text = await res.text();
  const statuses = ([] as number[]).concat(status);
  expect(statuses, `status ${res.status}: ${text}`).toContain(res.status);
  expect(res.headers.get('content-type') ?? '').toMatch(/^application\/json/);
  const body = JSON.parse(text) as { error: string; error_description?: string; access_token?: unknown };
  expect(([] as string[]).concat(errors), text).toContain(body.error);
  expect(body.access_token).toBeUndefined();
  return body;
}

export function authorizeUrl(base: string, params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, v);
  return `${base}/auth?${q}`;
}

/** A well-formed authorization request for `web` (or another client), with PKCE S256. */
export function codeRequest(base: string, overrides: Record<string, string | undefined> = {}) {
  const verifier = overrides.verifier ?? newVerifier();
  const { verifier: _v, ...rest } = overrides;
  const state = randomBytes(12).toString('base64url');
  const nonce = randomBytes(12).toString('base64url');
  const params: Record<string, string | undefined> = {
    client_id: 'web',
    response_type: 'code',
    redirect_uri: REDIRECT,
    scope: 'openid profile',
    code_challenge: s256(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...rest,
  };
  return { url: authorizeUrl(base, params), verifier, state: params.state, nonce };
}

export interface DrivenLogin {
  back: URL;
  ua: UserAgent;
  /** Every response to a POST the browser made on the way, in order. */
  posts: Array<{ url: string; status: number; location: string | null }>;
  /** Every Set-Cookie header seen on the way. */
  setCookies: string[];
  /** The demo callback form that completed the login (for replay tests). */
  callbackForm: Record<string, string>;
}

/**
 * Like helpers/browser.ts loginThroughDemo, but records every POST response and every cookie so tests
 * can check redirect codes (never 307) and cookie attributes.
 */
export async function driveLogin(authorizationUrl: string, base: string, persona = 'patient', ua = new UserAgent()): Promise<DrivenLogin> {
  const posts: DrivenLogin['posts'] = [];
  const setCookies: string[] = [];
  const get = async (url: string) => {
    const res = await ua.get(url);
    setCookies.push(...res.headers.getSetCookie());
    return res;
  };
  const post = async (url: string, form: Record<string, string>) => {
    const res = await ua.postForm(url, form);
    setCookies.push(...res.headers.getSetCookie());
    posts.push({ url, status: res.status, location: res.headers.get('location') });
    return res;
  };
  let res = await get(authorizationUrl);
  let url = location(res, base);
  if (!url.startsWith(base)) return { back: new URL(url), ua, posts, setCookies, callbackForm: {} };
  res = await get(url);
  const chooser = await res.text();
  const uid = new URL(url).pathname.split('/').pop()!;
  res = await post(`${base}/interaction/${uid}/login`, { csrf: hiddenField(chooser, 'csrf'), upstream: 'demo' });
  url = location(res, base);
  res = await get(url);
  const page = await res.text();
  const callbackForm = { state: hiddenField(page, 'state'), secret: hiddenField(page, 'secret'), persona };
  res = await post(`${base}/upstream/demo/callback`, callbackForm);
  for (let i = 0; i < 6; i++) {
    url = location(res, base);
    if (!url.startsWith(base)) return { back: new URL(url), ua, posts, setCookies, callbackForm };
    res = await get(url);
    if (res.status === 200) {
      const html = await res.text();
      if (!html.includes('/confirm')) throw new Error(`unexpected page at ${url}: ${html.slice(0, 200)}`);
      const uid2 = new URL(url).pathname.split('/').pop()!;
      res = await post(`${base}/interaction/${uid2}/confirm`, { csrf: hiddenField(html, 'csrf') });
    }
  }
  throw new Error('too many redirects');
}

/** The CSRF token the broker would issue for an interaction uid (derived from the test KEK like src/server.ts does). */
export function csrfFor(uid: string): string {
  const key = Buffer.from(hkdfSync('sha256', Buffer.from(TEST_KEK, 'base64url'), Buffer.alloc(0), 'csrf', 32));
  return createHmac('sha256', key).update(`csrf:${uid}`).digest('base64url');
}

export function redeemCode(base: string, code: string, verifier: string | undefined, opts: { client?: [string, string] | string; redirectUri?: string; extra?: Record<string, string> } = {}): Promise<Response> {
  const form: Record<string, string> = { grant_type: 'authorization_code', code, redirect_uri: opts.redirectUri ?? REDIRECT, ...(verifier === undefined ? {} : { code_verifier: verifier }), ...opts.extra };
  const client = opts.client ?? ['web', WEB_SECRET];
  const headers: Record<string, string> = {};
  if (typeof client === 'string') form.client_id = client;
  else headers.authorization = basic(...client);
  return postForm(`${base}/token`, form, headers);
}

/** Introspects as the resource server `rs` (JWT/opaque tokens for its resources) or as the given client. */
export async function introspect(base: string, token: string, as: [string, string] = ['rs', RS_SECRET]): Promise<Record<string, unknown>> {
  const res = await postForm(`${base}/token/introspection`, { token }, { authorization: basic(...as) });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

export interface AssertionOptions {
  key?: CryptoKey | Uint8Array;
  alg?: string;
  kid?: string;
  claims?: Record<string, unknown>;
  omit?: string[];
}

/** A client assertion for `svc`; defaults are valid (aud = issuer, 2 min lifetime, fresh jti). */
export async function assertion(tb: TestBroker, svcKey: ClientKey, opts: AssertionOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { iss: 'svc', sub: 'svc', aud: tb.base, iat: now, exp: now + 120, jti: randomBytes(12).toString('hex'), ...opts.claims };
  for (const k of opts.omit ?? []) delete claims[k];
  return new SignJWT(claims).setProtectedHeader({ alg: opts.alg ?? 'ES256', kid: opts.kid ?? svcKey.jwk.kid }).sign(opts.key ?? svcKey.privateKey);
}

export function clientCredentials(tb: TestBroker, clientAssertion: string, extra: Record<string, string> = {}): Promise<Response> {
  return postForm(`${tb.base}/token`, {
    grant_type: 'client_credentials',
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: clientAssertion,
    scope: 'system/Patient.rs',
    resource: 'https://api.test',
    ...extra,
  });
}

/** Hand-built compact JWS from raw JSON text (to control whitespace and key order). */
export function b64(text: string | Buffer): string {
  return Buffer.from(text).toString('base64url');
}
