import { randomBytes } from 'node:crypto';
import { ISSUER, REDIRECT, WEB_CLIENT, WEB_SECRET } from '../servers/common.ts';
import { basic, parseForm, pkce, type Browser, type Page } from './http.ts';

// One brokered login as a browser and a client would do it: the client's authorization request
// (PKCE S256, state, nonce), the broker's chooser, the upstream (scripted, the fake CIS2 in its own
// process, or SimpleSAMLphp: its login form and auto-POST), the broker's act-as / role / consent
// steps, the client's redirect, and the code redeemed at the token endpoint with client_secret_basic.

export interface LoginOptions {
  upstream: string;
  scope?: string;
  resource?: string;
  loginHint?: string;
  prompt?: string;
  /** Whom to act for when the broker asks: a consent id, or `self`. */
  actAs?: string;
  /** Credentials at a SAML IdP's login form. */
  credentials?: { username: string; password: string };
}

export interface Tokens {
  access_token: string;
  id_token?: string;
  refresh_token?: string;
  token_type: string;
  expires_in: number;
  scope?: string;
  [k: string]: unknown;
}

const uidOf = (html: string, step: string): string => {
  const m = new RegExp(`action="/interaction/([^/"]+)/${step}"`).exec(html);
  if (!m) throw new Error(`no ${step} form`);
  return m[1];
};
const csrfOf = (html: string): string => {
  const m = /name="csrf" value="([^"]*)"/.exec(html);
  if (!m) throw new Error('no csrf field');
  return m[1];
};

function fail(step: string, page: Page): never {
  throw new Error(`login: ${step}: ${page.status} at ${page.url}: ${page.body.replace(/\s+/g, ' ').slice(0, 300)}`);
}

export async function login(browser: Browser, o: LoginOptions): Promise<Tokens> {
  const { verifier, challenge } = pkce();
  const auth = new URL('/auth', ISSUER);
  const params: Record<string, string> = {
    client_id: WEB_CLIENT,
    response_type: 'code',
    redirect_uri: REDIRECT,
    scope: o.scope ?? 'openid profile',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: randomBytes(12).toString('base64url'),
    nonce: randomBytes(12).toString('base64url'),
  };
  if (o.resource) params.resource = o.resource;
  if (o.loginHint) params.login_hint = o.loginHint;
  if (o.prompt) params.prompt = o.prompt;
  for (const [k, v] of Object.entries(params)) auth.searchParams.set(k, v);

  let page = await browser.get(auth.href);
  let code: string | undefined;
  for (let hops = 0; hops < 40 && code === undefined; hops++) {
    if (page.location) {
      if (page.location.startsWith(REDIRECT)) {
        const back = new URL(page.location);
        if (back.searchParams.get('state') !== params.state) throw new Error('login: state mismatch');
        const c = back.searchParams.get('code');
        if (!c) throw new Error(`login: the client got ${back.searchParams.get('error')}: ${back.searchParams.get('error_description')}`);
        code = c;
        break;
      }
      page = await browser.get(page.location);
      continue;
    }
    if (page.status !== 200) fail('unexpected answer', page);
    const html = page.body;
    if (html.includes('name="upstream"')) {
      page = await browser.post(`${ISSUER}/interaction/${uidOf(html, 'login')}/login`, { csrf: csrfOf(html), upstream: o.upstream });
    } else if (html.includes('/act-as"')) {
      page = await browser.post(`${ISSUER}/interaction/${uidOf(html, 'act-as')}/act-as`, { csrf: csrfOf(html), acting: o.actAs ?? 'self' });
    } else if (html.includes('/role"')) {
      const role = /name="role" type="radio" value="([^"]+)"/.exec(html)?.[1] ?? fail('role page without roles', page);
      page = await browser.post(`${ISSUER}/interaction/${uidOf(html, 'role')}/role`, { csrf: csrfOf(html), role });
    } else if (html.includes('/confirm"')) {
      page = await browser.post(`${ISSUER}/interaction/${uidOf(html, 'confirm')}/confirm`, { csrf: csrfOf(html) });
    } else if (/name="password"/.test(html)) {
      if (!o.credentials) fail('a password form but no credentials', page);
      const form = parseForm(html, page.url);
      page = await browser.post(form.action, { ...form.fields, username: o.credentials.username, password: o.credentials.password });
    } else if (html.includes('name="SAMLResponse"')) {
      const form = parseForm(html, page.url);
      page = await browser.post(form.action, form.fields);
    } else {
      fail('unknown page', page);
    }
  }
  if (code === undefined) throw new Error('login: too many hops');
  const token = await browser.post(`${ISSUER}/token`, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }, { authorization: basic(WEB_CLIENT, WEB_SECRET) });
  if (token.status !== 200) fail('code redemption', token);
  return token.json<Tokens>();
}

export function claimsOf(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()) as Record<string, unknown>;
}
