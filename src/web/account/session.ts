import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import * as client from 'openid-client';
import { z } from 'zod';
import { createSealer } from '../../crypto/seal.ts';
import { ApiAuthError, apiResource, type ApiCaller, type ApiScope } from '../api-auth.ts';
import { BadRequestError, BrokerHttpError, ForbiddenError } from '../errors.ts';
import { withBearer } from './caller.ts';
import type { AccountContext } from './context.ts';

// The account pages' own sign-in: the broker is a relying party of itself (client broker-account,
// authorization code + PKCE, state and nonce), exactly as an external app would be. The session is the
// access token for the broker's API, sealed (AES-256-GCM) in an HttpOnly cookie that lives no longer
// than the token; every page authorises from that token with the checks the JSON API applies.

export const ACCOUNT_CLIENT = 'broker-account';
/** Seal purposes of the two cookies (also their names on plain HTTP). */
const SESSION_COOKIE = 'account_session';
const TX_COOKIE = 'account_tx';
const COOKIE_PATH = '/account';
const TX_TTL_MS = 10 * 60_000;
const SCOPE = 'openid profile delegation.read delegation.write delegation.staff audit.read account.links';

const sessionSchema = z.strictObject({ sid: z.string().min(16), token: z.string().min(20), exp: z.number().int(), name: z.string().max(200).optional() });
export type AccountSession = z.infer<typeof sessionSchema>;
const txSchema = z.strictObject({ verifier: z.string(), state: z.string(), nonce: z.string(), returnTo: z.string(), exp: z.number() });

/** Where to go after sign-in: only the account app's own paths (no open redirect). */
export function safeReturn(value: unknown): string {
  if (typeof value !== 'string' || value.length > 512) return '/account';
  return /^\/account(\/[A-Za-z0-9._~\/-]*)?(\?[A-Za-z0-9._~=&%+-]*)?$/.test(value) && !value.includes('//') && !value.includes('/..') ? value : '/account';
}

export class SignedOutError extends BrokerHttpError {
  constructor() {
    super(401, 'You are signed out', 'Your session has ended. Sign in again at /account and repeat what you were doing.');
    this.name = 'SignedOutError';
  }
}

export interface Signed {
  session: AccountSession;
  caller: ApiCaller;
}

export function accountSessions(app: AccountContext) {
  const { deps } = app;
  const subkey = (info: string) => Buffer.from(hkdfSync('sha256', deps.cookieKey, Buffer.alloc(0), info, 32));
  const sealer = createSealer([subkey('account-session-seal')]);
  const csrfKey = subkey('account-csrf');
  const redirectUri = new URL('/account/callback', deps.issuer).href;
  // Over HTTPS the cookies carry the __Host- prefix: the browser then refuses one set by a sibling
  // subdomain or over plain HTTP (no planted session), which needs Path=/ and no Domain.
  const names = deps.secureCookies ? { session: `__Host-${SESSION_COOKIE}`, tx: `__Host-${TX_COOKIE}` } : { session: SESSION_COOKIE, tx: TX_COOKIE };
  const cookieOptions = { httpOnly: true, sameSite: 'lax' as const, secure: deps.secureCookies, path: deps.secureCookies ? '/' : COOKIE_PATH, signed: false, overwrite: true };
  let rp: Promise<client.Configuration> | undefined;

  function configuration(): Promise<client.Configuration> {
    rp ??= client
      .discovery(new URL(deps.issuer), ACCOUNT_CLIENT, undefined, client.ClientSecretBasic(deps.clientSecret), {
        execute: deps.issuer.startsWith('http:') ? [client.allowInsecureRequests] : [],
      })
      .catch((err: unknown) => {
        rp = undefined;
        throw err;
      });
    return rp;
  }

  function readSealed<T>(ctx: Context, name: string, purpose: string, schema: z.ZodType<T>): T | undefined {
    const raw = ctx.cookies.get(name);
    if (!raw || raw.length > 8192) return undefined;
    try {
      const parsed = schema.safeParse(JSON.parse(sealer.open(raw, purpose)));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  function read(ctx: Context): AccountSession | undefined {
    const s = readSealed(ctx, names.session, SESSION_COOKIE, sessionSchema);
    return s && s.exp * 1000 > Date.now() ? s : undefined;
  }

  function clear(ctx: Context): void {
    ctx.cookies.set(names.session, null, cookieOptions);
  }

  const csrfFor = (session: AccountSession): string => createHmac('sha256', csrfKey).update(`csrf:${session.sid}`).digest('base64url');

  function checkCsrf(session: AccountSession, form: URLSearchParams): void {
    const given = Buffer.from(form.get('csrf') ?? '');
    const expected = Buffer.from(csrfFor(session));
    if (form.getAll('csrf').length !== 1 || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new BadRequestError('This form has expired or was not sent from this page. Go back, reload the page and try again.', 403);
    }
  }

  /** The signed-in caller with the scope a page needs; undefined when nobody is signed in (or the token ended). */
  async function authorise(ctx: Context, scope: ApiScope): Promise<Signed | undefined> {
    const session = read(ctx);
    if (!session) return undefined;
    try {
      return { session, caller: await deps.authenticateApi(withBearer(ctx, session.token), scope) };
    } catch (err) {
      if (!(err instanceof ApiAuthError)) throw err;
      if (err.status === 401) {
        clear(ctx);
        return undefined;
      }
      throw new ForbiddenError('Your sign-in does not allow this.');
    }
  }

  /** For pages: the caller, or a redirect to sign in that comes back here. */
  async function requirePage(ctx: Context, scope: ApiScope): Promise<Signed | undefined> {
    const signed = await authorise(ctx, scope);
    if (!signed) ctx.redirect(`/account/login?return=${encodeURIComponent(safeReturn(ctx.originalUrl))}`);
    return signed;
  }

  /** For form posts: the caller with a valid CSRF token, or an error (a redirect would lose the form). */
  async function requirePost(ctx: Context, scope: ApiScope, form: URLSearchParams): Promise<Signed> {
    const signed = await authorise(ctx, scope);
    if (!signed) throw new SignedOutError();
    checkCsrf(signed.session, form);
    return signed;
  }

  function routes(): Router {
    const router = new Router();

    router.get('/account/login', async (ctx) => {
      const returnTo = safeReturn(ctx.query.return);
      if (read(ctx)) return ctx.redirect(returnTo);
      const verifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const nonce = client.randomNonce();
      ctx.cookies.set(names.tx, sealer.seal(JSON.stringify({ verifier, state, nonce, returnTo, exp: Date.now() + TX_TTL_MS }), TX_COOKIE), { ...cookieOptions, maxAge: TX_TTL_MS });
      const url = client.buildAuthorizationUrl(await configuration(), {
        redirect_uri: redirectUri,
        scope: SCOPE,
        resource: apiResource(deps.issuer),
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        nonce,
      });
      ctx.redirect(url.href);
    });

    router.get('/account/callback', async (ctx) => {
      const tx = readSealed(ctx, names.tx, TX_COOKIE, txSchema);
      ctx.cookies.set(names.tx, null, cookieOptions);
      if (!tx || tx.exp < Date.now()) throw new BadRequestError('This sign-in was not started here, or it took too long. Go to /account and sign in again.');
      if (typeof ctx.query.error === 'string') throw new BadRequestError(ctx.query.error === 'access_denied' ? 'You cancelled signing in.' : 'Signing in did not complete. Go to /account and try again.');
      let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
      try {
        tokens = await client.authorizationCodeGrant(await configuration(), new URL(ctx.originalUrl, deps.issuer), { pkceCodeVerifier: tx.verifier, expectedState: tx.state, expectedNonce: tx.nonce, idTokenExpected: true });
      } catch (err) {
        deps.log.warn({ err, requestId: (ctx.state as { requestId?: string }).requestId }, 'account sign-in: code exchange failed');
        throw new BadRequestError('Signing in did not complete. Go to /account and try again.');
      }
      let caller: ApiCaller;
      try {
        caller = await (deps.verifyApiToken ?? deps.authenticateApi)(withBearer(ctx, tokens.access_token), 'delegation.read');
      } catch (err) {
        if (err instanceof ApiAuthError) throw new BadRequestError('Your sign-in did not give access to your account pages.');
        throw err;
      }
      const exp = typeof caller.claims.exp === 'number' ? caller.claims.exp : Math.floor(Date.now() / 1000) + 300;
      const name = tokens.claims()?.name;
      const session: AccountSession = { sid: randomBytes(18).toString('base64url'), token: tokens.access_token, exp, ...(typeof name === 'string' ? { name: name.slice(0, 200) } : {}) };
      ctx.cookies.set(names.session, sealer.seal(JSON.stringify(session), SESSION_COOKIE), { ...cookieOptions, maxAge: Math.max(0, exp * 1000 - Date.now()) });
      ctx.status = 303;
      ctx.redirect(tx.returnTo);
    });

    return router;
  }

  /** Ends the local session and asks the broker to end its own (RP-initiated logout). */
  async function logout(ctx: Context): Promise<void> {
    const session = read(ctx);
    clear(ctx);
    // The session is the access token itself: revoked here, a copy of the cookie (another tab, a backup,
    // a request to another instance) stops working now rather than when the token expires.
    if (session) {
      try {
        await client.tokenRevocation(await configuration(), session.token, { token_type_hint: 'access_token' });
      } catch (err) {
        deps.log.warn({ err, requestId: (ctx.state as { requestId?: string }).requestId }, 'account sign-out: the session token could not be revoked');
      }
    }
    let target = '/account';
    try {
      target = client.buildEndSessionUrl(await configuration(), { client_id: ACCOUNT_CLIENT, post_logout_redirect_uri: new URL('/account', deps.issuer).href }).href;
    } catch {
      // No end-session endpoint: the local session is gone, which is what the user asked for here.
    }
    ctx.status = 303;
    ctx.redirect(target);
  }

  return { routes, authorise, requirePage, requirePost, csrfFor, checkCsrf, logout, read };
}

export type AccountSessions = ReturnType<typeof accountSessions>;
