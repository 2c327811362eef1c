import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import Koa from 'koa';
import Router from '@koa/router';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import type { BrokerConfig } from './config/schema.ts';
import { ConfigError } from './config/load.ts';
import { DEMO_RESOURCE, DEMO_WEB_CLIENT } from './config/demo.ts';
import { createSealer, parseDataKey, type Sealer } from './crypto/seal.ts';
import { openStore } from './store/open.ts';
import type { Store } from './store/contracts.ts';
import { watchStore, type StoreHealth } from './store/health.ts';
import { storeClock, watchClockSkew } from './store/clock-skew.ts';
import { AccountService } from './identity/accounts.ts';
import type { Connector } from './identity/upstream.ts';
import { CIRCUIT_GAUGE, withCircuitBreaker, type CircuitEvents } from './identity/circuit-breaker.ts';
import { sessionRechecksOf } from './identity/session-recheck.ts';
import { circuitBreakerSchema } from './config/upstream-common.ts';
import { ensureKeys, keyEpoch, privateJwks, publicJwks } from './oidc/keys.ts';
import { buildProvider } from './oidc/provider.ts';
import { contextClaims, loadGrantContext } from './oidc/grant-context.ts';
import { endAccountSessions } from './oidc/account-grants.ts';
import type { ConnectorDeps } from './identity/upstream.ts';
import { interactionRoutes } from './oidc/interactions.ts';
import { mountProvider, pinIssuerOrigin, PROVIDER_PATHS, retryAfterOn503 } from './oidc/mount.ts';
import { rewriteJwtTokenParam } from './oidc/jwt-introspection.ts';
import { renderError, logoutSource, postLogoutSuccessSource } from './web/views/provider-pages.ts';
import { securityHeaders } from './web/security-headers.ts';
import { requestId } from './web/request-id.ts';
import { errorHandler } from './web/error-handler.ts';
import { accessLog } from './web/access-log.ts';
import { demoClientRoutes } from './web/demo-client.ts';
import { STYLESHEET_PATH } from './web/html.ts';
import { createDemoConnector } from '../providers/demo/index.ts';
import { importJWK, type JWK } from 'jose';
import { cachedLocalJwks } from './crypto/local-jwks.ts';
import { createLedger, redisLedgerBackend, sqliteLedgerBackend, type Ledger, type LedgerBackend } from './audit/index.ts';
import { createMetrics, metricsRoute, serveMetrics, type BrokerMetrics } from './web/metrics.ts';
import { auditProviderEvents } from './oidc/audit-events.ts';
import { registerTokenExchange } from './oidc/grants/token-exchange.ts';
import { exchangeExplainRoutes } from './web/exchange-explain.ts';
import { errors as oidcErrors } from 'oidc-provider';
import { DelegationService } from './delegation/service.ts';
import { localRevocationBus, redisRevocationBus, type RevocationBus } from './delegation/revocation-bus.ts';
import { createRecordSigner } from './crypto/jws-signer.ts';
import type { DelegationHooks } from './oidc/provider.ts';
import { createApiAuthenticator, apiResource, API_SCOPES } from './web/api-auth.ts';
import { accountRoutes, ACCOUNT_CLIENT_ID } from './web/account/index.ts';
import { revocationStream } from './web/revocation-stream.ts';
import { createLimiter, rateLimit } from './web/rate-limit.ts';
import { limitPerAccount } from './web/account-limits.ts';
import { readFormClientId, requestClientId } from './oidc/token-client-id.ts';
import type { SqliteStore } from './store/sqlite/index.ts';
import type { RedisStore } from './store/redis/index.ts';

// The one composition root: builds the store, keys, identity, connectors and the OP, and wires the
// Koa app. Nothing imports this file except main.ts and tests.

export interface Broker {
  app: Koa;
  store: Store;
  ledger: Ledger;
  ledgerBackend: LedgerBackend;
  delegation: DelegationService;
  bus: RevocationBus;
  metrics: BrokerMetrics;
  /** Public keys that verify the broker's tokens, records and audit checkpoints (retired ones included). */
  publicJwks(): { keys: JWK[] };
  health: StoreHealth;
  provider(): Provider;
  sealer: Sealer;
  config: BrokerConfig;
  listen(port?: number, host?: string): Promise<Server>;
  /** Stops accepting connections, lets in-flight requests finish, then closes the store. */
  close(): Promise<void>;
}

export interface BrokerOptions {
  log: Logger;
  env?: NodeJS.ProcessEnv;
  /** Overrides the store (tests share one). */
  store?: Store;
  /** Extra connectors (tests, later issues). */
  connectors?: Connector[];
  /** Test-only: upstreams on plain-http loopback. Never in production. */
  allowInsecureUpstreams?: boolean;
}

/** Ledger details are JSON: undefined members are dropped rather than refused. */
function json<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/**
 * The broker's own API resource and the confidential client its account pages sign in with. Added to
 * every configuration; the client secret is derived from the key-encryption key, never configured.
 */
function withInternalClients(config: BrokerConfig, issuer: string, accountSecret: string): BrokerConfig {
  const api = apiResource(issuer);
  return {
    ...config,
    resources: [...config.resources.filter((r) => r.identifier !== api), { identifier: api, scopes: [...API_SCOPES], format: 'jwt', accessTokenTTL: 300, signingAlg: 'ES256', introspectionClients: [] }],
    clients: [
      ...config.clients.filter((c) => c.client_id !== ACCOUNT_CLIENT_ID),
      {
        client_id: ACCOUNT_CLIENT_ID,
        client_name: 'Your NHS account',
        client_secret: accountSecret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code'],
        redirect_uris: [new URL('/account/callback', issuer).href],
        post_logout_redirect_uris: [new URL('/account', issuer).href],
        scope: `openid profile roles ${API_SCOPES.join(' ')}`,
        firstParty: true,
        resources: [api],
        allowedOrigins: [],
      },
    ],
  };
}

function subkey(kek: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', kek, Buffer.alloc(0), info, 32));
}

/**
 * The key-encryption key. In the demo profile without one, a development key is generated once into
 * the data folder (mode 0600) so restarts can still open the sealed keys; production needs a real one.
 */
function keyEncryptionKeys(config: BrokerConfig, env: NodeJS.ProcessEnv, log: Logger): Buffer[] {
  const configured = config.secrets.keyEncryptionKey ?? env.BROKER_KEK;
  const previous = config.secrets.previousKeyEncryptionKeys.map(parseDataKey);
  if (configured) return [parseDataKey(configured), ...previous];
  if (config.profile !== 'demo' || env.NODE_ENV === 'production') {
    throw new ConfigError(['secrets.keyEncryptionKey: is required (or set BROKER_KEK) outside the demo profile']);
  }
  const file = resolve('data', 'dev-kek');
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, randomBytes(32).toString('base64url'), { mode: 0o600 });
    log.warn({ file }, 'demo profile: generated a development key-encryption key; set secrets.keyEncryptionKey for real use');
  }
  chmodSync(file, 0o600);
  return [parseDataKey(readFileSync(file, 'utf8'))];
}

/** The audit ledger lives in the same store as everything else: one SQLite file, or one Redis. */
export function ledgerBackendFor(store: Store): LedgerBackend {
  if (store.kind === 'sqlite') return sqliteLedgerBackend((store as SqliteStore).db);
  const redis = store as RedisStore;
  return redisLedgerBackend(redis.redis, { prefix: redis.prefix });
}

/** The key that signs records and checkpoints: the broker's active ES256 key. */
async function recordSigningKey(jwks: { keys: JWK[] }): Promise<{ key: CryptoKey; kid: string; jwk: JWK }> {
  const jwk = jwks.keys.find((k) => k.alg === 'ES256');
  if (!jwk?.kid) throw new Error('no ES256 signing key');
  return { key: (await importJWK(jwk, 'ES256')) as CryptoKey, kid: jwk.kid, jwk };
}

function stylesheet(): Buffer {
  const require = createRequire(import.meta.url);
  return readFileSync(require.resolve('nhsuk-frontend/dist/nhsuk/nhsuk-frontend.min.css'));
}

export async function createBroker(config: BrokerConfig, options: BrokerOptions): Promise<Broker> {
  const { log } = options;
  const env = options.env ?? process.env;
  if (config.profile === 'demo' && env.NODE_ENV === 'production') throw new ConfigError(['profile: the demo profile cannot run with NODE_ENV=production']);
  const issuer = config.issuer ?? `http://localhost:${config.port}`;
  const kek = keyEncryptionKeys(config, env, log);
  const sealer = createSealer(kek);
  const cookieKeys = [subkey(kek[0], 'cookies').toString('base64url'), ...kek.slice(1).map((k) => subkey(k, 'cookies').toString('base64url'))];
  const csrfKey = subkey(kek[0], 'csrf');
  const secureCookies = issuer.startsWith('https:');
  const accountClientSecret = subkey(kek[0], 'account-client').toString('base64url');
  config = withInternalClients(config, issuer, accountClientSecret);

  if (config.store.startsWith('sqlite:') && !config.store.includes(':memory:')) {
    mkdirSync(dirname(resolve(config.store.slice('sqlite:'.length))), { recursive: true });
  }
  const store = options.store ?? openStore(config.store, { redis: { waitReplicas: config.storeOptions.waitReplicas, waitTimeoutMs: config.storeOptions.waitTimeoutMs, onWarning: (message) => log.warn(message) } });
  const metrics = createMetrics();
  const health = watchStore(store, 250, (up) => (up ? log.info('store reachable again') : log.error('store unreachable: failing closed')), (seconds) => metrics.storeLatency.observe({ backend: store.kind }, seconds));
  const readStoreClock = storeClock(store);
  const clockSkewWarn = config.storeOptions.clockSkewWarnSeconds;
  const clockSkew = readStoreClock && watchClockSkew(readStoreClock, {
    thresholdSeconds: clockSkewWarn,
    onSample: (seconds) => metrics.clockSkew.set(seconds),
    onChange: (skewed, seconds) => (skewed ? log.warn({ skewSeconds: seconds, thresholdSeconds: clockSkewWarn }, "clock skew: this instance's clock differs from the store's beyond the threshold; codes, tokens and replay markers may be judged differently across instances (check NTP)") : log.warn({ skewSeconds: seconds, thresholdSeconds: clockSkewWarn }, "clock skew: this instance's clock agrees with the store's again")),
  });
  const reportAuditFailure = (err: unknown) => log.error({ err }, 'audit append failed');

  const deps: ConnectorDeps = {
    issuer,
    replay: store.replay,
    log: log.child({ component: 'connector' }),
    onUpstreamLogout: async (event) => {
      const link = event.subject ? await store.accounts.findLink(event.provider, event.subject) : undefined;
      const revoked = link ? await endAccountSessions(store, link.accountId, config.tokens.refreshTokenTTL) : 0;
      log.info({ provider: event.provider, matched: Boolean(link), grantsRevoked: revoked }, 'upstream logout');
      audit({ type: 'token.revoked', outcome: 'success', subject: link?.accountId, details: { reason: 'upstream logout', provider: event.provider, grants: revoked } });
    },
    allowInsecureUpstream: options.allowInsecureUpstreams ?? false,
  };
  const connectors: Connector[] = [...(options.connectors ?? [])];
  for (const u of config.upstreams) {
    if (connectors.some((c) => c.id === u.id)) continue;
    // Loaded only when configured: a broker without SAML upstreams never loads the XML stack.
    if (u.type === 'oidc') connectors.push(await (await import('../providers/oidc/index.ts')).createOidcConnector(u, deps));
    else if (u.type === 'saml') connectors.push(await (await import('../providers/saml/index.ts')).createSamlConnector(u, deps));
    else connectors.push(await (await import('../providers/smartcard/index.ts')).createSmartcardConnector(u, deps));
  }
  if (config.profile === 'demo') connectors.unshift(createDemoConnector({ env: env.NODE_ENV }));
  // A circuit breaker per upstream (identity/circuit-breaker.ts): one that keeps failing is skipped for a
  // while, with a clear page; the others are untouched.
  const circuitEvents: CircuitEvents = {
    onChange: ({ upstream, from, to, reason }) => {
      metrics.upstreamCircuit.set({ upstream }, CIRCUIT_GAUGE[to]);
      log[to === 'closed' ? 'info' : 'warn']({ upstream, from, to, reason }, `upstream circuit ${to}`);
      // In the ledger too: "nobody could sign in with CIS2 from 10:02 to 10:07" is an audit question.
      audit({ type: 'upstream.circuit.changed', outcome: to === 'closed' ? 'success' : 'failure', details: { provider: upstream, from, to, reason } });
    },
    onRejected: (upstream) => metrics.upstreamCircuitRejections.inc({ upstream }),
  };
  for (const [i, c] of connectors.entries()) {
    metrics.upstreamCircuit.set({ upstream: c.id }, CIRCUIT_GAUGE.closed);
    connectors[i] = withCircuitBreaker(c, config.upstreams.find((u) => u.id === c.id)?.circuitBreaker ?? circuitBreakerSchema.parse(undefined), circuitEvents);
  }

  let keys = await ensureKeys(store.keys, sealer, ['ES256', 'PS256']);
  let published = publicJwks(keys);
  let epoch = keyEpoch(keys);

  const ledgerBackend = ledgerBackendFor(store);
  const signing = await recordSigningKey(privateJwks(keys, sealer));
  const ledger = createLedger(ledgerBackend, sealer, { key: signing.key, kid: signing.kid }, {
    checkpointEvery: 1000,
    checkpointIntervalSeconds: 60,
    metrics: metrics.audit,
    // Resolved per call: checkpoints signed with a key that has since rotated must still verify.
    verifyKeys: cachedLocalJwks(() => published),
    onError: reportAuditFailure,
  });
  const audit = (event: Parameters<Ledger['append']>[0]) => void ledger.append(event).catch(reportAuditFailure);

  const accounts = new AccountService(store.accounts, sealer, {
    onAccountCreated: (accountId, identity) => audit({ type: 'account.created', outcome: 'success', subject: accountId, details: { provider: identity.provider } }),
    onLinked: (accountId, identity, evidence) => audit({ type: 'account.linked', outcome: 'success', subject: accountId, details: { provider: identity.provider, evidence } }),
  });

  const bus: RevocationBus = store.kind === 'redis' ? redisRevocationBus((store as RedisStore).redis, (store as RedisStore).prefix) : localRevocationBus();
  const delegation = new DelegationService(store, sealer, await createRecordSigner(signing.jwk, () => published), config.delegation, {
    onEvent: (type, record, actor, outcome, details) => {
      metrics.consentChanges.inc({ type, outcome });
      audit({ type: type === 'consent.refused' || type === 'consent.rejected' ? 'consent.changed' : type, outcome, actor, subject: record?.grantor, consent: record?.id, details: json({ ...details, status: record?.status, grantee: record?.grantee }) });
    },
    onRevoked: (consentId) => bus.publish(consentId).catch((err: unknown) => log.warn({ err }, 'revocation event not published')),
  });
  const delegationHooks: DelegationHooks = {
    accessTokenTTL: config.delegation.accessTokenTTL,
    async canActForOthers(accountId) {
      const now = Date.now();
      const records = await delegation.listForGrantee(accountId).catch(() => []);
      return records.some((r) => r.status === 'active' && Date.parse(r.period.start) <= now && (!r.period.end || Date.parse(r.period.end) > now));
    },
    async tokenClaims(context, carer) {
      const record = context.actAs ? await delegation.activeFor(context.actAs.consentId, carer) : undefined;
      if (!record || record.grantor !== context.actAs?.patient) throw new oidcErrors.InvalidGrant('the delegation this token acts under is no longer active');
      const claims: Record<string, unknown> = { sub: record.grantor, act: { sub: carer }, consent_id: record.id, consent_status: record.status, patient: record.grantor };
      if (config.delegation.includeNhsNumber) {
        const nhs = (await accounts.getProfile(record.grantor))?.nhs_number;
        if (typeof nhs === 'string') claims.patient_nhs_number = nhs;
      }
      return claims;
    },
    async stillActive(consentId, grantee) {
      return Boolean(await delegation.activeFor(consentId, grantee));
    },
  };
  // End-dated delegations end on time even with nobody looking (reads enforce the date anyway).
  const expiryTimer = setInterval(() => void delegation.expireDue().catch(() => {}), 60_000);
  expiryTimer.unref();

  const findAccount = async (_ctx: unknown, sub: string, token?: { grantId?: string }) => {
    const profile = await accounts.getProfile(sub);
    if (!profile) return undefined;
    const context = contextClaims(await loadGrantContext(store, token?.grantId));
    // sub last: no upstream claim can replace the account id.
    return { accountId: sub, claims: async () => ({ ...profile, ...context, sub }) };
  };

  const loginFailed = (ctx: Koa.Context, connectorId: string, reason: string): void => {
    metrics.logins.inc({ provider: connectorId, outcome: 'failure' });
    log.warn({ requestId: ctx.state.requestId, provider: connectorId, reason }, 'upstream login failed');
    audit({ type: 'upstream.login.failure', outcome: 'failure', requestId: ctx.state.requestId, details: { provider: connectorId, reason } });
  };
  // Smartcard sessions are re-checked on reuse through their connectors; an ended one counts as a failed login.
  const sessionRechecks = sessionRechecksOf(connectors, loginFailed);

  // Rate limits (WS-08, WS-10, TX-16, HA-17): one limiter for every rule (its local fallback window
  // included, which outlives provider rebuilds on key rotation), one answer for every refusal.
  const limits = createLimiter(store.rateLimits);

  const makeProvider = (): Provider => {
    const p = buildProvider({
      sessionRechecks,
      config,
      store,
      jwks: privateJwks(keys, sealer) as Parameters<typeof buildProvider>[0]['jwks'],
      publicJwks: () => published,
      cookieKeys,
      findAccount,
      delegation: delegationHooks,
      pages: { renderError, logoutSource, postLogoutSuccessSource },
    });
    p.use(retryAfterOn503());
    p.on('server_error', (_ctx, err) => log.error({ err }, 'oidc-provider server error'));
    auditProviderEvents(p, ledger, metrics, reportAuditFailure);
    registerTokenExchange(p, {
      config,
      store,
      publicJwks: () => published,
      delegation: { ...delegationHooks, consentActive: async (id) => Boolean(await delegation.activeFor(id)) },
      ledger,
      metrics,
      env,
      onAuditError: reportAuditFailure,
      limiter: limits,
    });
    return p;
  };
  let provider = makeProvider();

  // Keys rotate while the broker runs: when the set of signing keys changes (a published key
  // activates, or an old one is removed), the provider is rebuilt with the new order.
  const keyTimer = setInterval(async () => {
    try {
      const latest = await store.keys.listKeys();
      const next = keyEpoch(latest);
      if (next !== epoch) {
        keys = latest;
        published = publicJwks(latest);
        epoch = next;
        provider = makeProvider();
        log.info({ kids: next }, 'signing keys changed; provider reloaded');
      }
    } catch {
      // The store is down; the health watcher reports it and endpoints fail closed.
    }
  }, 30_000);
  keyTimer.unref();

  const app = new Koa({ proxy: config.trustProxy });
  app.silent = true;
  app.use(requestId());
  app.use(accessLog(log));
  app.use(pinIssuerOrigin(issuer, config.trustProxy));
  app.use(securityHeaders({ hsts: secureCookies }));
  app.use(errorHandler(log));

  const prefix = new URL(issuer).pathname.replace(/\/$/, '');
  app.use(rewriteJwtTokenParam([`${prefix}/token/introspection`, `${prefix}/token/revocation`]));
  // The counter's name holds its key (an IP address, a client or account id): only the rule and the key's
  // kind are logged, never the address itself.
  const onLimited = (name: string, requestId?: unknown) => {
    const [rule, key = ''] = name.split('|');
    log.warn({ requestId, limit: rule, per: key.split(':')[0] }, 'rate limit reached');
  };
  const opPaths = [`${prefix}/token`, `${prefix}/request`];
  const limited = (ctx: Koa.Context, name: string) => onLimited(name, ctx.state.requestId);
  // Per IP first, so a flood from one address is refused before its body is read.
  app.use(
    rateLimit(
      limits,
      [
        { paths: opPaths, keys: [(ctx) => `ip:${ctx.ip}`], limit: config.rateLimits.tokenPerIp, windowSeconds: 60 },
        { paths: ['/interaction', '/upstream', '/link-upstream', '/account/login'], keys: [(ctx) => `ip:${ctx.ip}`], limit: config.rateLimits.loginPerIp, windowSeconds: 60 },
        { paths: ['/api/delegations/invitations', '/account/invitations/accept'], methods: ['POST'], keys: [(ctx) => `ip:${ctx.ip}`], limit: config.rateLimits.invitationAttemptsPerIp, windowSeconds: 3600 },
      ],
      limited,
    ),
  );
  // Per client: the client id may be in the body (client_secret_post, client assertions): WS-10. Public
  // clients are not counted per client: they have no secret to guess, and anyone naming one could spend
  // the allowance of all its users; the per-IP limit covers them.
  const publicClients = new Set(config.clients.filter((c) => c.token_endpoint_auth_method === 'none').map((c) => c.client_id));
  if (config.rateLimits.tokenPerClient > 0) app.use(readFormClientId([...opPaths, `${prefix}/token/introspection`, `${prefix}/token/revocation`]));
  app.use(
    rateLimit(
      limits,
      [{ paths: opPaths, keys: [(ctx) => { const id = requestClientId(ctx); return id && !publicClients.has(id) ? `client:${id}` : undefined; }], limit: config.rateLimits.tokenPerClient, windowSeconds: 60 }],
      limited,
    ),
  );
  // The OP's endpoints skip the broker's routers: they are the hot paths.
  app.use(mountProvider(() => provider, health, { only: PROVIDER_PATHS }));
  if (config.metrics.bearerToken) app.use(metricsRoute(metrics, config.metrics.bearerToken));
  const base = new Router();
  base.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  base.get('/readyz', async (ctx) => {
    const up = await health.check();
    ctx.status = up ? 200 : 503;
    if (!up) ctx.set('Retry-After', '1');
    ctx.body = { status: up ? 'ready' : 'store unreachable' };
  });
  const css = stylesheet();
  const cssEtag = `"${createHash('sha256').update(css).digest('base64url').slice(0, 16)}"`;
  base.get(STYLESHEET_PATH, (ctx) => {
    ctx.type = 'text/css';
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.etag = cssEtag;
    ctx.body = css;
  });
  app.use(base.routes());
  // Off unless exchange.adminToken is set.
  app.use(exchangeExplainRoutes({ config, provider: () => provider, store, publicJwks: () => published, delegation: delegationHooks, ledger }).routes());

  const interactions = interactionRoutes({
    provider: () => provider,
    store,
    accounts,
    connectors,
    csrfKey,
    upstreamsFor: (id) => config.clients.find((c) => c.client_id === id)?.upstreams,
    isFirstParty: (id) => config.clients.find((c) => c.client_id === id)?.firstParty ?? false,
    minimumAssuranceFor: (id) => config.clients.find((c) => c.client_id === id)?.minimumAssurance,
    upstreamSettings: (id) => {
      const u = config.upstreams.find((x) => x.id === id);
      return u ? { mapping: u.mapping, linkable: u.linkable, provision: u.provision } : { linkable: [], provision: true };
    },
    grantTTL: config.tokens.refreshTokenTTL,
    actingOptions: async (accountId) => {
      const now = Date.now();
      const active = (await delegation.listForGrantee(accountId).catch((err: unknown) => {
        // A record failing its signature must not stop the carer signing in; it is reported and skipped.
        log.error({ err, accountId }, 'delegations of this account could not all be verified');
        return [];
      })).filter((r) => r.status === 'active' && Date.parse(r.period.start) <= now && (!r.period.end || Date.parse(r.period.end) > now));
      return Promise.all(active.map(async (r) => ({ consentId: r.id, patient: r.grantor, label: String((await accounts.getProfile(r.grantor))?.name ?? 'a person who gave you access') })));
    },
    narrowToConsent: async (consentId, scopes) => {
      const { record } = await delegation.get(consentId);
      return DelegationService.narrow(scopes, record);
    },
    secureCookies,
    events: {
      loginSucceeded: (ctx, identity, accountId, clientId) => {
        metrics.logins.inc({ provider: identity.provider, outcome: 'success' });
        log.info({ requestId: ctx.state.requestId, provider: identity.provider, accountId, clientId, acr: identity.assurance.acr }, 'upstream login succeeded');
        audit({ type: 'upstream.login.success', outcome: 'success', subject: accountId, client: clientId, requestId: ctx.state.requestId, details: { provider: identity.provider, acr: identity.assurance.acr ?? null, aal: identity.assurance.aal ?? null, proofing: identity.assurance.proofing ?? null } });
      },
      loginFailed,
    },
  });
  app.use(interactions.routes());
  // ctx.matched spans every router, so this answers 405 with Allow for the account and API routes below
  // too (WS-02); the final provider mount steps aside for a broker path asked with another method.
  app.use(interactions.allowedMethods());

  // Per account (the token's subject), after authentication and before any body is read or code looked up.
  const verifyApiToken = createApiAuthenticator({ issuer, publicJwks: () => published, replay: store.replay });
  const authenticateApi = limitPerAccount(
    verifyApiToken,
    limits,
    [
      { name: 'account', limit: config.rateLimits.accountPerMinute, windowSeconds: 60 },
      { name: 'account-changes', methods: ['POST', 'PUT', 'PATCH', 'DELETE'], limit: config.rateLimits.accountChangesPerHour, windowSeconds: 3600 },
      { name: 'invitation', paths: ['/api/delegations/invitations', '/account/invitations/accept'], methods: ['POST'], limit: config.rateLimits.invitationAttemptsPerAccount, windowSeconds: 3600 },
    ],
    (name) => onLimited(name),
  );
  app.use(revocationStream(bus, authenticateApi).routes());
  app.use(
    accountRoutes({
      issuer,
      clientSecret: accountClientSecret,
      cookieKey: subkey(kek[0], 'account-session'),
      secureCookies,
      delegation,
      accounts,
      ledger,
      authenticateApi,
      verifyApiToken,
      log,
      staffRules: { staffRoleCodes: config.delegation.staffRoleCodes, staffMinimumAal: config.delegation.staffMinimumAal },
      allowedLevels: config.delegation.allowedLevels,
      findAccountByNhsNumber: (nhsNumber) => accounts.findByIdentifier('nhs_number', nhsNumber),
      linking: { store, upstreams: connectors },
    }).routes(),
  );

  if (config.profile === 'demo') {
    const web = config.clients.find((c) => c.client_id === DEMO_WEB_CLIENT);
    if (web?.client_secret) {
      const demo = demoClientRoutes({ issuer, clientId: web.client_id, clientSecret: web.client_secret, resource: DEMO_RESOURCE, scope: 'openid profile offline_access patient/Patient.rs', key: subkey(kek[0], 'demo-client'), secureCookies });
      app.use(demo.routes());
    }
  }

  app.use(mountProvider(() => provider, health));

  let server: Server | undefined;
  let metricsServer: Server | undefined;
  return {
    app,
    store,
    ledger,
    ledgerBackend,
    delegation,
    bus,
    metrics,
    publicJwks: () => published,
    health,
    provider: () => provider,
    sealer,
    config,
    async listen(port = config.port, host = config.host) {
      // HTTPS with optional client certificates (direct mTLS, or a smartcard proxy authenticating itself).
      // A certificate is requested but never required at the TLS layer: the connector decides, with a clear page.
      server = config.tls
        ? createHttpsServer({ cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile), ca: config.tls.clientCaFile ? readFileSync(config.tls.clientCaFile) : undefined, requestCert: config.tls.requestCert, rejectUnauthorized: false, minVersion: 'TLSv1.2', maxHeaderSize: 32 * 1024 }, app.callback())
        : createServer(app.callback());
      // Bounded header and request times: slow-loris and oversized headers are cut off early.
      server.headersTimeout = 10_000;
      server.requestTimeout = 30_000;
      server.maxHeadersCount = 100;
      await new Promise<void>((r) => server!.listen(port, host, r));
      if (config.metrics.port) metricsServer = await serveMetrics(metrics, config.metrics.port, config.metrics.host);
      return server;
    },
    async close() {
      clearInterval(keyTimer);
      clearInterval(expiryTimer);
      health.stop();
      clockSkew?.stop();
      await bus.close();
      metricsServer?.close();
      if (server) {
        const s = server;
        await new Promise<void>((r) => {
          s.close(() => r());
          s.closeIdleConnections();
        });
      }
      await ledger.close();
      if (!options.store) await store.close();
    },
  };
}
