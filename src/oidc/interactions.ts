import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { InteractionResults } from 'oidc-provider';
import type { Store } from '../store/contracts.ts';
import type { AccountService } from '../identity/accounts.ts';
import { UpstreamAuthError, UpstreamUnavailableError, type Connector, type LoginRequest, type LoginTransaction, type UpstreamIdentity } from '../identity/upstream.ts';
import { BadRequestError, ForbiddenError, LoginFailedError, NotFoundError, UpstreamNotRespondingError } from '../web/errors.ts';
import { readForm, single } from '../web/form.ts';
import { actAsPage, chooserPage, consentPage, rolePage } from '../web/views/interaction.ts';
import { mapIdentity, MappingError } from '../identity/mapping.ts';
import { meetsAssurance, type MinimumAssurance } from '../identity/assurance.ts';
import { preselectedRole, rolesOf, toSelected, type SelectedRole } from '../identity/roles.ts';
import { entitledClaims, keepEntitled } from '../identity/entitlements.ts';
import type { RecheckOnReuse } from '../identity/session-recheck.ts';
import type { MappingConfig, LinkableConfig } from '../config/upstream-common.ts';
import { saveGrantContext, type GrantContext } from './grant-context.ts';
import { rememberGrant } from './account-grants.ts';
import { findLinkIntent, LINK_DONE_PATH, parkLinkedLogin } from '../identity/link-intents.ts';
import { isGuarded } from '../identity/circuit-breaker.ts';

// The broker's interaction pages: the login chooser, the hand-off to an upstream connector and back,
// and consent for third-party clients. Every POST carries a CSRF token bound to the interaction, and
// every step re-reads the interaction through its cookie, which binds the login transaction to the
// browser that started it.

const TX_MODEL = 'LoginTransaction';
/** A signed-in user who still has to choose (a staff role, or whom to act for) before the login finishes. */
const PENDING_MODEL = 'PendingLoginChoice';
/** A verified upstream identity between the callback and the interaction's own path (single use, 2 minutes). */
const VERIFIED_MODEL = 'VerifiedUpstreamLogin';
/** Marks a transaction that is already a step-up, so a still-weak login ends instead of looping. */
const STEP_UP = '__stepUp';
const TX_TTL = 600;
const LAST_UPSTREAM_COOKIE = 'broker_last_upstream';
/** Retry-After for an upstream outage when the connector or its breaker gives no better figure. */
const UPSTREAM_RETRY_AFTER = 30;

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
  minimumAssuranceFor: (clientId: string) => MinimumAssurance | undefined;
  /** Identity settings of an upstream (none for the demo upstream: keep every claim, provision). */
  upstreamSettings: (connectorId: string) => { mapping?: MappingConfig; linkable: LinkableConfig[]; provision: boolean };
  grantTTL: number;
  /** Patients this account may act for now (active delegations), for the "act as" choice. */
  actingOptions?: (accountId: string) => Promise<Array<{ consentId: string; patient: string; label: string }>>;
  /** The requested patient scopes a delegation covers (never wider than the consent). */
  narrowToConsent?: (consentId: string, scopes: string[]) => Promise<string[]>;
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

  /** An upstream that is not working: the "not responding" page (503), never a redirect to it. */
  function notResponding(connector: Connector, err: UpstreamUnavailableError, interactionUid: string | undefined): UpstreamNotRespondingError {
    return new UpstreamNotRespondingError(connector.displayName, err.reason, err.retryAfterSeconds ?? UPSTREAM_RETRY_AFTER, interactionUid ? `/interaction/${encodeURIComponent(interactionUid)}` : undefined);
  }

  async function beginAt(ctx: Context, connector: Connector, request: LoginRequest, interactionUid: string | undefined): Promise<Record<string, string>> {
    try {
      return await connector.begin(ctx, request);
    } catch (err) {
      if (err instanceof UpstreamUnavailableError) throw notResponding(connector, err, interactionUid);
      throw err;
    }
  }

  function offered(clientId: string): Connector[] {
    const allow = options.upstreamsFor(clientId);
    return options.connectors.filter((c) => !allow || allow.includes(c.id));
  }

  async function finish(ctx: Context, result: InteractionResults, merge = false): Promise<void> {
    const returnTo = await options.provider().interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
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
    const context = (d.lastSubmission as { broker?: GrantContext } | undefined)?.broker;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, requested] of Object.entries(missing.missingResourceScopes ?? {})) {
      // Acting for a patient: only what the consent covers, whatever the client asked for.
      const scopes = context?.actAs && options.narrowToConsent ? await options.narrowToConsent(context.actAs.consentId, requested) : requested;
      if (scopes.length) grant.addResourceScope(indicator, scopes.join(' '));
      // Recorded as refused, so oidc-provider does not ask again for what the consent does not cover.
      const refused = requested.filter((x) => !scopes.includes(x));
      if (refused.length) grant.rejectResourceScope(indicator, refused.join(' '));
    }
    const grantId = await grant.save();
    await rememberGrant(store, accountId, grantId, options.grantTTL);
    if (context) await saveGrantContext(store, grantId, context, options.grantTTL);
    // Merged with the login of this authorization: with prompt=login the login must still count.
    await finish(ctx, { consent: { grantId } }, true);
  }

  router.get('/interaction/:uid', async (ctx) => {
    const d = await details(ctx, ctx.params.uid);
    const clientId = d.params.client_id as string;
    const client = await options.provider().Client.find(clientId);
    if (d.prompt.name === 'login') {
      const last = ctx.cookies.get(LAST_UPSTREAM_COOKIE);
      ctx.type = 'html';
      ctx.body = chooserPage({ uid: d.uid, csrf: csrfFor(d.uid), clientName: client?.clientName ?? clientId, connectors: offered(clientId).map((c) => ({ id: c.id, displayName: c.displayName, notResponding: isGuarded(c) && c.circuitState() !== 'closed' })), last });
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

  /** Sends the browser to the upstream and records the login transaction bound to this interaction. */
  async function beginLogin(ctx: Context, d: Awaited<ReturnType<typeof details>>, connector: Connector, stepUp: boolean): Promise<void> {
    const id = randomBytes(24).toString('base64url');
    const params = d.params as Record<string, unknown>;
    const state = await beginAt(ctx, connector, {
      callbackUrl: new URL(`/upstream/${connector.id}/callback`, options.provider().issuer).href,
      transactionId: id,
      acrValues: typeof params.acr_values === 'string' ? params.acr_values.split(' ') : undefined,
      minimumAssurance: options.minimumAssuranceFor(params.client_id as string),
      maxAge: typeof params.max_age === 'number' ? params.max_age : undefined,
      // A step-up must authenticate again, at the higher level, not reuse the upstream session.
      prompt: stepUp ? 'login' : typeof params.prompt === 'string' ? params.prompt : undefined,
      loginHint: typeof params.login_hint === 'string' ? params.login_hint : undefined,
    }, d.uid);
    if (stepUp) state[STEP_UP] = '1';
    const tx: LoginTransaction = { id, interactionUid: d.uid, connectorId: connector.id, createdAt: Math.floor(Date.now() / 1000), state };
    await store.oidc.upsert(TX_MODEL, id, { ...tx }, TX_TTL);
  }

  async function finishLogin(ctx: Context, accountId: string, identity: UpstreamIdentity, role: SelectedRole | undefined, actAs?: GrantContext['actAs']): Promise<void> {
    const connector = byId.get(identity.provider);
    // A smartcard session ends with the browser (the card may be pulled or revoked at any time), and every
    // reuse of it re-checks the card: the login policy records what that needs (identity/session-recheck.ts).
    const remember = connector?.kind !== 'smartcard';
    const recheck: RecheckOnReuse | undefined = connector?.sessionRecheck && identity.recheck ? { connectorId: connector.id, recheck: identity.recheck, maxAge: connector.sessionRecheck.maxSessionAge } : undefined;
    const context: GrantContext = { role, actAs, upstream: identity.provider, assurance: { aal: identity.assurance.aal, vot: identity.assurance.vot, proofing: identity.assurance.proofing } };
    await finish(ctx, {
      login: { accountId, acr: identity.assurance.acr, amr: identity.assurance.amr, ts: identity.authTime, remember },
      // Carried to the consent step (lastSubmission) and saved against the grant.
      broker: context,
      ...(recheck && { recheck }),
    });
  }

  /** After the role is known: offer "act as" when the client asks for patient data and delegations exist. */
  async function chooseActingOrFinish(ctx: Context, d: Awaited<ReturnType<typeof details>>, accountId: string, identity: UpstreamIdentity, role: SelectedRole | undefined): Promise<void> {
    const wantsPatientData = String(d.params.scope ?? '').split(' ').some((s) => s.startsWith('patient/'));
    const acting = wantsPatientData && options.actingOptions ? await options.actingOptions(accountId) : [];
    if (acting.length === 0) return finishLogin(ctx, accountId, identity, role);
    await store.oidc.upsert(PENDING_MODEL, d.uid, { accountId, identity: { ...identity }, role: role ? { ...role } : undefined, step: 'act-as' }, TX_TTL);
    ctx.type = 'html';
    ctx.body = actAsPage({ uid: d.uid, csrf: csrfFor(d.uid), options: acting });
  }

  /** The pending choice of this interaction, consumed: a choice is made once. */
  async function takePending(d: Awaited<ReturnType<typeof details>>, step: string) {
    const pending = await store.oidc.find(PENDING_MODEL, d.uid);
    if (!pending || pending.step !== step || !(await store.oidc.consume(PENDING_MODEL, d.uid))) throw new BadRequestError('Your sign-in session has expired. Go back to the service and start again.');
    return { accountId: pending.accountId as string, identity: pending.identity as UpstreamIdentity, role: pending.role as SelectedRole | undefined };
  }

  router.post('/interaction/:uid/login', async (ctx) => {
    const form = await readForm(ctx);
    checkCsrf(ctx.params.uid, form);
    const d = await details(ctx, ctx.params.uid);
    const connectorId = single(form, 'upstream');
    const connector = offered(d.params.client_id as string).find((c) => c.id === connectorId);
    if (!connector) throw new BadRequestError('Choose one of the listed ways to sign in.');
    await beginLogin(ctx, d, connector, false);
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
    let identity: UpstreamIdentity;
    try {
      identity = await connector.complete(ctx, tx);
    } catch (err) {
      if (err instanceof UpstreamAuthError) {
        await options.events?.loginFailed?.(ctx, connector.id, err.reason);
        throw new LoginFailedError(err.reason);
      }
      if (err instanceof UpstreamUnavailableError) {
        await options.events?.loginFailed?.(ctx, connector.id, err.reason);
        throw notResponding(connector, err, tx.interactionUid || undefined);
      }
      throw err;
    }
    // Staff claims count only from an upstream entitled to them (WS-25); dropped here, nothing after sees them.
    identity = keepEntitled(identity, entitledClaims(options.upstreamSettings(connector.id).mapping));
    if (typeof stored.linkIntent === 'string') {
      // A login to link to a signed-in account (see identity/link-intents.ts): the upstream's mapping rules
      // still apply; the account app, where the account session is visible, checks the binding and links.
      try {
        mapIdentity(identity, options.upstreamSettings(connector.id).mapping);
      } catch (err) {
        if (err instanceof MappingError) {
          await options.events?.loginFailed?.(ctx, connector.id, err.reason);
          throw new LoginFailedError(err.reason);
        }
        throw err;
      }
      const linkHandoff = await parkLinkedLogin(store.oidc, { intentId: stored.linkIntent, connectorId: connector.id, identity });
      ctx.status = 303;
      ctx.redirect(`${LINK_DONE_PATH}?login=${linkHandoff}`);
      return;
    }
    // The interaction cookie is scoped to /interaction/<uid> (and a cross-site POST from a SAML IdP
    // would not carry it anyway), so the verified identity is parked and the browser is sent to a GET
    // under the interaction's path. There its cookie proves it is the browser that started the login;
    // an identity injected into someone else's browser goes nowhere.
    const handoff = randomBytes(24).toString('base64url');
    await store.oidc.upsert(VERIFIED_MODEL, handoff, { interactionUid: tx.interactionUid, connectorId: connector.id, stepUp: tx.state[STEP_UP] === '1', identity: { ...identity } }, 120);
    ctx.status = 303;
    ctx.redirect(`/interaction/${encodeURIComponent(tx.interactionUid)}/upstream-done?login=${handoff}`);
  }

  /** Second half of the callback, on the interaction's path: binding check, mapping, step-up, account, choices. */
  async function upstreamDone(ctx: Context): Promise<void> {
    const d = await details(ctx, ctx.params.uid);
    const handoff = typeof ctx.query.login === 'string' && ctx.query.login.length <= 64 ? ctx.query.login : '';
    const parked = handoff ? await store.oidc.find(VERIFIED_MODEL, handoff) : undefined;
    if (!parked || parked.interactionUid !== d.uid || !(await store.oidc.consume(VERIFIED_MODEL, handoff))) throw new LoginFailedError('upstream login hand-off unknown, used or for another browser');
    const connector = byId.get(String(parked.connectorId));
    if (!connector) throw new LoginFailedError('upstream login hand-off names an unknown connector');
    const identity = parked.identity as UpstreamIdentity;
    const tx = { state: parked.stepUp ? { [STEP_UP]: '1' } : {} };
    const clientId = d.params.client_id as string;
    const settings = options.upstreamSettings(connector.id);
    let profile: Record<string, unknown>;
    try {
      profile = mapIdentity(identity, settings.mapping);
    } catch (err) {
      if (err instanceof MappingError) {
        await options.events?.loginFailed?.(ctx, connector.id, err.reason);
        throw new LoginFailedError(err.reason);
      }
      throw err;
    }
    // A weaker login than the client needs: step up at the upstream once, then give up.
    if (!meetsAssurance(identity.assurance, options.minimumAssuranceFor(clientId))) {
      if (tx.state[STEP_UP] === '1') {
        await options.events?.loginFailed?.(ctx, connector.id, 'assurance below the client minimum after step-up');
        throw new LoginFailedError('assurance below the client minimum after step-up');
      }
      await beginLogin(ctx, d, connector, true);
      return;
    }
    const resolved = await options.accounts.resolve(identity, profile, { provision: settings.provision, linkable: settings.linkable });
    if (!resolved) {
      await options.events?.loginFailed?.(ctx, connector.id, 'no local account and provisioning is off');
      throw new LoginFailedError(`${connector.id}: no local account`);
    }
    await options.events?.loginSucceeded?.(ctx, identity, resolved.accountId, clientId);
    const roles = rolesOf(identity.claims);
    const role = preselectedRole(identity.claims);
    if (roles.length > 1 && !role) {
      await store.oidc.upsert(PENDING_MODEL, d.uid, { accountId: resolved.accountId, identity: { ...identity }, step: 'role' }, TX_TTL);
      ctx.type = 'html';
      ctx.body = rolePage({ uid: d.uid, csrf: csrfFor(d.uid), roles });
      return;
    }
    await chooseActingOrFinish(ctx, d, resolved.accountId, identity, role);
  }
  router.get('/interaction/:uid/upstream-done', upstreamDone);

  // Linking another login to a signed-in account: the account app made the intent (bound to its session)
  // and sends the browser here. The upstream must authenticate afresh; the callback hands the verified
  // identity back to the account app, never to an authorization.
  router.get('/link-upstream/:intent', async (ctx) => {
    const intentId = ctx.params.intent;
    const intent = await findLinkIntent(store.oidc, intentId);
    if (!intent) throw new BadRequestError('This request to add a way to sign in has expired or was already used. Go to your account and start again.');
    const connector = byId.get(intent.connectorId);
    if (!connector) throw new NotFoundError();
    const id = randomBytes(24).toString('base64url');
    const state = await beginAt(ctx, connector, {
      callbackUrl: new URL(`/upstream/${connector.id}/callback`, options.provider().issuer).href,
      transactionId: id,
      prompt: 'login',
    }, undefined);
    const tx: LoginTransaction = { id, interactionUid: '', connectorId: connector.id, createdAt: Math.floor(Date.now() / 1000), state };
    await store.oidc.upsert(TX_MODEL, id, { ...tx, linkIntent: intentId }, TX_TTL);
  });
  router.get('/upstream/:connector/callback', callback);
  router.post('/upstream/:connector/callback', callback);

  router.post('/interaction/:uid/role', async (ctx) => {
    const form = await readForm(ctx);
    checkCsrf(ctx.params.uid, form);
    const d = await details(ctx, ctx.params.uid);
    const pending = await takePending(d, 'role');
    const chosen = rolesOf(pending.identity.claims).find((r) => r.person_roleid === single(form, 'role'));
    if (!chosen) throw new BadRequestError('Choose one of your roles.');
    await chooseActingOrFinish(ctx, d, pending.accountId, pending.identity, toSelected(chosen));
  });

  router.post('/interaction/:uid/act-as', async (ctx) => {
    const form = await readForm(ctx);
    checkCsrf(ctx.params.uid, form);
    const d = await details(ctx, ctx.params.uid);
    const pending = await takePending(d, 'act-as');
    const choice = single(form, 'acting');
    if (choice === 'self') return finishLogin(ctx, pending.accountId, pending.identity, pending.role);
    // Re-checked now: the delegation must still be active for this account.
    const option = (await options.actingOptions?.(pending.accountId))?.find((o) => o.consentId === choice);
    if (!option) throw new ForbiddenError('You cannot act for this person.');
    await finishLogin(ctx, pending.accountId, pending.identity, pending.role, { patient: option.patient, consentId: option.consentId });
  });

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
