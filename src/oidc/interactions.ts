import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { InteractionResults } from 'oidc-provider';
import type { Store } from '../store/contracts.ts';
import type { AccountService } from '../identity/accounts.ts';
import { UpstreamAuthError, type Connector, type LoginTransaction, type UpstreamIdentity } from '../identity/upstream.ts';
import { BadRequestError, LoginFailedError, NotFoundError } from '../web/errors.ts';
import { readForm, single } from '../web/form.ts';
import { chooserPage, consentPage } from '../web/views/interaction.ts';

// The broker's interaction pages: the login chooser, the hand-off to an upstream connector and back,
// and consent for third-party clients. Every POST carries a CSRF token bound to the interaction, and
// every step re-reads the interaction through its cookie, which binds the login transaction to the
// browser that started it.

const TX_MODEL = 'LoginTransaction';
const TX_TTL = 600;
const LAST_UPSTREAM_COOKIE = 'broker_last_upstream';

export interface InteractionEvents {
  loginSucceeded?(ctx: Context, identity: UpstreamIdentity, accountId: string, clientId: string | undefined): void | Promise<void>;
  loginFailed?(ctx: Context, connectorId: string, reason: string): void | Promise<void>;
}

export interface InteractionOptions {
  provider: () => Provider;
  store: Store;
  accounts: AccountService;
  connectors: Connector[];
  csrfKey: Buffer;
  /** Upstreams offered per client (undefined = all). */
  upstreamsFor: (clientId: string) => string[] | undefined;
  isFirstParty: (clientId: string) => boolean;
  secureCookies: boolean;
  events?: InteractionEvents;
}

export function interactionRoutes(options: InteractionOptions): Router {
  const router = new Router();
  const byId = new Map(options.connectors.map((c) => [c.id, c]));
  const { store } = options;

  const csrfFor = (uid: string): string => createHmac('sha256', options.csrfKey).update(`csrf:${uid}`).digest('base64url');
  function checkCsrf(uid: string, form: URLSearchParams): void {
    const given = Buffer.from(form.get('csrf') ?? '');
    const expected = Buffer.from(csrfFor(uid));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new BadRequestError('This form has expired. Go back to the service and start again.', 403);
  }

  async function details(ctx: Context, uid?: string) {
    let d;
    try {
      d = await options.provider().interactionDetails(ctx.req, ctx.res);
    } catch (err) {
      if (err instanceof Error && err.name === 'SessionNotFound') throw new BadRequestError('Your sign-in session has expired or was started in another browser. Go back to the service and start again.');
      throw err;
    }
    if (uid !== undefined && d.uid !== uid) throw new BadRequestError('Your sign-in session does not match this page. Go back to the service and start again.');
    return d;
  }

  function offered(clientId: string): Connector[] {
    const allow = options.upstreamsFor(clientId);
    return options.connectors.filter((c) => !allow || allow.includes(c.id));
  }

  async function finish(ctx: Context, result: InteractionResults): Promise<void> {
    const returnTo = await options.provider().interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
    // 303 so a browser never re-posts a form to the next hop (RFC 9700 4.12).
    ctx.status = 303;
    ctx.redirect(returnTo);
  }

  async function grantConsent(ctx: Context, d: Awaited<ReturnType<typeof details>>): Promise<void> {
    const provider = options.provider();
    const accountId = d.session?.accountId;
    if (!accountId) throw new BadRequestError('You need to sign in first.');
    const grant = d.grantId ? await provider.Grant.find(d.grantId) : new provider.Grant({ accountId, clientId: d.params.client_id as string });
    if (!grant) throw new BadRequestError('Your sign-in session has expired. Go back to the service and start again.');
    const missing = d.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
    const grantId = await grant.save();
    await finish(ctx, { consent: { grantId } });
  }

  router.get('/interaction/:uid', async (ctx) => {
    const d = await details(ctx, ctx.params.uid);
    const clientId = d.params.client_id as string;
    const client = await options.provider().Client.find(clientId);
    if (d.prompt.name === 'login') {
      const last = ctx.cookies.get(LAST_UPSTREAM_COOKIE);
      ctx.type = 'html';
      ctx.body = chooserPage({ uid: d.uid, csrf: csrfFor(d.uid), clientName: client?.clientName ?? clientId, connectors: offered(clientId), last });
      return;
    }
    if (d.prompt.name === 'consent') {
      if (options.isFirstParty(clientId)) return grantConsent(ctx, d);
      const missing = d.prompt.details as { missingOIDCScope?: string[]; missingResourceScopes?: Record<string, string[]> };
      ctx.type = 'html';
      ctx.body = consentPage({
        uid: d.uid,
        csrf: csrfFor(d.uid),
        clientName: client?.clientName ?? clientId,
        scopes: [...(missing.missingOIDCScope ?? []), ...Object.values(missing.missingResourceScopes ?? {}).flat()],
      });
      return;
    }
    throw new BadRequestError('This sign-in step is not supported.');
  });

  router.post('/interaction/:uid/login', async (ctx) => {
    const form = await readForm(ctx);
    checkCsrf(ctx.params.uid, form);
    const d = await details(ctx, ctx.params.uid);
    const connectorId = single(form, 'upstream');
    const connector = offered(d.params.client_id as string).find((c) => c.id === connectorId);
    if (!connector) throw new BadRequestError('Choose one of the listed ways to sign in.');
    const id = randomBytes(24).toString('base64url');
    const params = d.params as Record<string, unknown>;
    const state = await connector.begin(ctx, {
      callbackUrl: new URL(`/upstream/${connector.id}/callback`, options.provider().issuer).href,
      transactionId: id,
      acrValues: typeof params.acr_values === 'string' ? params.acr_values.split(' ') : undefined,
      maxAge: typeof params.max_age === 'number' ? params.max_age : undefined,
      prompt: typeof params.prompt === 'string' ? params.prompt : undefined,
      loginHint: typeof params.login_hint === 'string' ? params.login_hint : undefined,
    });
    const tx: LoginTransaction = { id, interactionUid: d.uid, connectorId: connector.id, createdAt: Math.floor(Date.now() / 1000), state };
    await store.oidc.upsert(TX_MODEL, id, { ...tx }, TX_TTL);
    ctx.cookies.set(LAST_UPSTREAM_COOKIE, connector.id, { httpOnly: true, sameSite: 'lax', secure: options.secureCookies, maxAge: 90 * 86_400_000, signed: false });
  });

  async function callback(ctx: Context): Promise<void> {
    const connector = byId.get(ctx.params.connector);
    if (!connector) throw new NotFoundError();
    let txId = typeof ctx.query.state === 'string' ? ctx.query.state : undefined;
    if (ctx.method === 'POST') {
      const form = await readForm(ctx, 512 * 1024);
      (ctx.state as { form?: URLSearchParams }).form = form;
      txId ??= form.get('state') ?? form.get('RelayState') ?? undefined;
    }
    if (!txId || txId.length > 100) throw new LoginFailedError(`${connector.id}: missing transaction`);
    const stored = await store.oidc.find(TX_MODEL, txId);
    // Single use: a replayed callback finds the transaction consumed.
    if (!stored || stored.connectorId !== connector.id || !(await store.oidc.consume(TX_MODEL, txId))) {
      throw new LoginFailedError(`${connector.id}: unknown, used or foreign transaction`);
    }
    const tx = stored as unknown as LoginTransaction;
    await details(ctx, tx.interactionUid);
    let identity: UpstreamIdentity;
    try {
      identity = await connector.complete(ctx, tx);
    } catch (err) {
      if (err instanceof UpstreamAuthError) {
        await options.events?.loginFailed?.(ctx, connector.id, err.reason);
        throw new LoginFailedError(err.reason);
      }
      throw err;
    }
    const resolved = await options.accounts.resolve(identity, { provision: true });
    if (!resolved) throw new LoginFailedError(`${connector.id}: no local account`);
    const d = await details(ctx, tx.interactionUid);
    await options.events?.loginSucceeded?.(ctx, identity, resolved.accountId, d.params.client_id as string | undefined);
    await finish(ctx, {
      login: { accountId: resolved.accountId, acr: identity.assurance.acr, amr: identity.assurance.amr, ts: identity.authTime, remember: true },
    });
  }
  router.get('/upstream/:connector/callback', callback);
  router.post('/upstream/:connector/callback', callback);

  router.post('/interaction/:uid/confirm', async (ctx) => {
    const form = await readForm(ctx);
    checkCsrf(ctx.params.uid, form);
    const d = await details(ctx, ctx.params.uid);
    if (d.prompt.name !== 'consent') throw new BadRequestError('There is nothing to agree to on this step.');
    await grantConsent(ctx, d);
  });

  router.post('/interaction/:uid/abort', async (ctx) => {
    const form = await readForm(ctx);
    checkCsrf(ctx.params.uid, form);
    await details(ctx, ctx.params.uid);
    await finish(ctx, { error: 'access_denied', error_description: 'the user cancelled the sign-in' });
  });

  for (const c of options.connectors) {
    for (const r of c.routes ?? []) {
      if (r.method === 'GET') router.get(r.path, r.handler);
      else router.post(r.path, r.handler);
    }
  }
  return router;
}
