import Router, { type RouterContext } from '@koa/router';
import type { Context } from 'koa';
import { consumeLinkIntent, createLinkIntent, findLinkIntent, LINK_DONE_PATH, linkProvedInSession, linkStartPath, PROVED_IN_SESSION, takeLinkedLogin } from '../../identity/link-intents.ts';
import type { Link } from '../../store/contracts.ts';
import type { ApiCaller } from '../api-auth.ts';
import { BadRequestError, BrokerHttpError, NotFoundError } from '../errors.ts';
import { readForm, single } from '../form.ts';
import type { AccountContext } from './context.ts';
import { ApiRequestError, refusalOf, sendRefusal } from './http.ts';
import { SignedOutError, type AccountSessions } from './session.ts';
import { linkRefusedPage, linksPage, type FieldError, type LinkRow } from './views.ts';

// "A user can see and remove their links", and "link another login by proving both identities in one
// session" (identity/link-intents.ts describes the hand-off). Pages and JSON API share one scope,
// account.links. Every change and every refused link is audited (account.linked / account.unlinked).

const SCOPE = 'account.links';

class LinkRefusedError extends BrokerHttpError {
  constructor(message: string) {
    super(403, 'This login cannot be added', message);
    this.name = 'LinkRefusedError';
  }
}

function requestIdOf(ctx: Context): string | undefined {
  const id = (ctx.state as { requestId?: unknown }).requestId;
  return typeof id === 'string' ? id : undefined;
}

function html(ctx: Context, body: string, status = 200): void {
  ctx.status = status;
  ctx.type = 'html';
  ctx.body = body;
}

type Removal = { result: 'removed'; link: Link } | { result: 'last' } | { result: 'not-found' };

export function linkRoutes(app: AccountContext, sessions: AccountSessions): Router {
  const router = new Router();
  const { accounts, ledger, log, linking } = app.deps;
  const upstreams = () => linking?.upstreams ?? [];
  const nameOf = (provider: string) => upstreams().find((u) => u.id === provider)?.displayName ?? provider;

  const append = async (event: Parameters<typeof ledger.append>[0]): Promise<void> => {
    try {
      await ledger.append(JSON.parse(JSON.stringify(event)) as typeof event);
    } catch (err) {
      log.error({ err }, 'audit append failed');
    }
  };

  async function rows(accountId: string): Promise<LinkRow[]> {
    const links = await accounts.links(accountId);
    return links
      .sort((a, b) => a.createdAt - b.createdAt || a.provider.localeCompare(b.provider))
      .map((l) => ({ provider: l.provider, providerName: nameOf(l.provider), subject: l.subject, evidence: l.evidence, linkedAt: new Date(l.createdAt * 1000).toISOString() }));
  }

  /** Removes one of the caller's own links; never the last one. Audited either way. */
  async function remove(ctx: Context, caller: ApiCaller, provider: string, subject: string): Promise<Removal> {
    const links = await accounts.links(caller.accountId);
    const link = links.find((l) => l.provider === provider && l.subject === subject);
    // Someone else's link, or none: the same answer, and nothing to record against this account.
    if (!link) return { result: 'not-found' };
    const base = { actor: caller.accountId, subject: caller.accountId, client: caller.clientId, requestId: requestIdOf(ctx) };
    if (links.length <= 1 || !(await accounts.unlink(caller.accountId, provider, subject))) {
      await append({ type: 'account.unlinked', outcome: 'failure', ...base, details: { provider, evidence: link.evidence, reason: 'the only way to sign in cannot be removed' } });
      return { result: 'last' };
    }
    await append({ type: 'account.unlinked', outcome: 'success', ...base, details: { provider, evidence: link.evidence } });
    return { result: 'removed', link };
  }

  async function renderPage(ctx: Context, accountId: string, csrf: string, errors: FieldError[] = [], status = 200): Promise<void> {
    const done = typeof ctx.query.done === 'string' ? ctx.query.done : undefined;
    html(ctx, linksPage({ csrf, links: await rows(accountId), upstreams: upstreams(), done: errors.length ? undefined : done, errors }), status);
  }

  // Pages ----------------------------------------------------------------------------------------------

  router.get('/account/links', async (ctx) => {
    const signed = await sessions.requirePage(ctx, SCOPE);
    if (!signed) return;
    await renderPage(ctx, signed.caller.accountId, sessions.csrfFor(signed.session));
  });

  router.post('/account/links/remove', async (ctx) => {
    const form = await readForm(ctx);
    const { caller, session } = await sessions.requirePost(ctx, SCOPE, form);
    const outcome = await remove(ctx, caller, single(form, 'provider'), single(form, 'subject'));
    if (outcome.result === 'not-found') throw new NotFoundError('That login is not linked to your account.');
    if (outcome.result === 'last') {
      return renderPage(ctx, caller.accountId, sessions.csrfFor(session), [{ field: 'links', message: 'You cannot remove your only way to sign in. Add another login first.' }], 409);
    }
    ctx.status = 303;
    ctx.redirect('/account/links?done=removed');
  });

  router.post('/account/links/add', async (ctx) => {
    const form = await readForm(ctx);
    const { caller, session } = await sessions.requirePost(ctx, SCOPE, form);
    const connectorId = single(form, 'upstream');
    if (!linking || !upstreams().some((u) => u.id === connectorId)) {
      return renderPage(ctx, caller.accountId, sessions.csrfFor(session), [{ field: 'upstream', message: 'Choose one of the listed logins' }], 400);
    }
    const intentId = await createLinkIntent(linking.store.oidc, { accountId: caller.accountId, sid: session.sid, connectorId });
    ctx.status = 303;
    ctx.redirect(linkStartPath(intentId));
  });

  router.get(LINK_DONE_PATH, async (ctx) => {
    if (!linking) throw new NotFoundError();
    const handoff = typeof ctx.query.login === 'string' ? ctx.query.login : '';
    // Single use: whatever happens next, this verified login cannot be presented again.
    const parked = await takeLinkedLogin(linking.store.oidc, handoff);
    if (!parked) throw new BadRequestError('This request to add a way to sign in has expired or was already used. Go to your account and start again.');
    const { identity } = parked;
    const refuse = async (accountId: string | undefined, reason: string) => {
      await append({ type: 'account.linked', outcome: 'failure', actor: accountId, subject: accountId, requestId: requestIdOf(ctx), details: { provider: identity.provider, evidence: PROVED_IN_SESSION, reason } });
    };
    const signed = await sessions.authorise(ctx, SCOPE);
    if (!signed) {
      await refuse(undefined, 'no account session in the browser that completed the login');
      throw new SignedOutError();
    }
    const { caller, session } = signed;
    const intent = await findLinkIntent(linking.store.oidc, parked.intentId);
    // Bound to the account AND the session that asked: another browser, or another account, links nothing.
    if (!intent || intent.accountId !== caller.accountId || intent.sid !== session.sid || intent.connectorId !== parked.connectorId || identity.provider !== intent.connectorId) {
      await refuse(caller.accountId, intent ? 'link intent belongs to another session' : 'link intent unknown, expired or used');
      throw new LinkRefusedError('This request to add a way to sign in was not started in this session, has expired or was already used. Nothing has been changed. Go to your account and start again.');
    }
    if (!(await consumeLinkIntent(linking.store.oidc, parked.intentId))) {
      await refuse(caller.accountId, 'link intent already used');
      throw new LinkRefusedError('This request to add a way to sign in was already used. Nothing has been changed.');
    }
    const outcome = await linkProvedInSession(linking.store.accounts, caller.accountId, identity);
    if (outcome.result === 'linked-elsewhere') {
      await refuse(caller.accountId, 'identity already linked to another account');
      return html(ctx, linkRefusedPage({ providerName: nameOf(identity.provider) }), 409);
    }
    if (outcome.result === 'linked') {
      await append({ type: 'account.linked', outcome: 'success', actor: caller.accountId, subject: caller.accountId, client: caller.clientId, requestId: requestIdOf(ctx), details: { provider: identity.provider, evidence: PROVED_IN_SESSION } });
    }
    ctx.status = 303;
    ctx.redirect(`/account/links?done=${outcome.result}`);
  });

  // JSON API -------------------------------------------------------------------------------------------

  function api(handler: (ctx: RouterContext, caller: ApiCaller) => Promise<void>) {
    return async (ctx: RouterContext): Promise<void> => {
      try {
        const caller = await app.deps.authenticateApi(ctx, SCOPE);
        await handler(ctx, caller);
        ctx.set('Cache-Control', 'no-store');
      } catch (err) {
        const refusal = refusalOf(err);
        if (!refusal) throw err;
        sendRefusal(ctx, refusal, 'json');
      }
    };
  }

  router.get(
    '/api/account/links',
    api(async (ctx, caller) => {
      ctx.body = { links: await rows(caller.accountId) };
    }),
  );

  router.delete(
    '/api/account/links/:provider/:subject',
    api(async (ctx, caller) => {
      const { provider, subject } = ctx.params;
      if (!provider || !subject || provider.length > 200 || subject.length > 1024) throw new ApiRequestError(400, 'invalid_request', 'provider and subject are required');
      const outcome = await remove(ctx, caller, provider, subject);
      if (outcome.result === 'not-found') throw new ApiRequestError(404, 'not_found', 'no such login is linked to this account', 'INVALIDATED_RESOURCE');
      if (outcome.result === 'last') throw new ApiRequestError(409, 'last_link', 'the only way to sign in cannot be removed; link another login first', 'INVALID_STATE_TRANSITION');
      ctx.status = 204;
    }),
  );

  return router;
}
