import Provider, { errors, interactionPolicy, type Configuration, type KoaContextWithOIDC, type ClientMetadata, type FindAccount, type JWKS } from 'oidc-provider';
import type { BrokerConfig, ClientConfig, ResourceConfig } from '../config/schema.ts';
import type { Store } from '../store/contracts.ts';
import { createHash } from 'node:crypto';
import { adapterFactory, REVOKED_JTI_PREFIX, unavailable } from './adapter.ts';
import { createJwtLookup, GRANT_ID_CLAIM } from './jwt-introspection.ts';
import type { JSONWebKeySet } from 'jose';
import { ACR_VALUES } from '../identity/assurance.ts';
import { contextClaims, loadGrantContext, saveGrantContext, type GrantContext } from './grant-context.ts';
import { derivedTokenActive, exchangedTokenClaims } from './grants/token-exchange.ts';
import { sessionEnded } from './account-grants.ts';
import { bindSession, mayReuseSession, type RecheckOnReuse, type SessionRechecks } from '../identity/session-recheck.ts';
import { checkClientAssertion, CLOCK_TOLERANCE_SECONDS } from './client-assertion.ts';

// oidc-provider configured as the broker's downstream OP. Deviations from oidc-provider's defaults
// are deliberate and commented: PKCE S256 for every client, refresh tokens rotated on every use,
// implicit and hybrid flows off, JWT access tokens bound to a resource indicator.

export interface ProviderPages {
  renderError: NonNullable<Configuration['renderError']>;
  logoutSource: NonNullable<NonNullable<NonNullable<Configuration['features']>['rpInitiatedLogout']>['logoutSource']>;
  postLogoutSuccessSource: NonNullable<NonNullable<NonNullable<Configuration['features']>['rpInitiatedLogout']>['postLogoutSuccessSource']>;
}

/** What the OP needs from the delegation layer (kept as an interface: oidc/ sits after delegation/). */
export interface DelegationHooks {
  /** Claims of a token minted for a carer acting under `context.actAs`; throws InvalidGrant if the consent no longer allows it. */
  tokenClaims(context: GrantContext, carer: string): Promise<Record<string, unknown>>;
  /** Whether a token that names this consent may still be used by this grantee. */
  stillActive(consentId: string, grantee: string | undefined): Promise<boolean>;
  /** Maximum lifetime of a delegated access token (seconds). */
  accessTokenTTL: number;
  /** Whether this account may act for someone now (it then chooses at sign-in). */
  canActForOthers(accountId: string): Promise<boolean>;
}

export interface ProviderOptions {
  delegation: DelegationHooks;
  config: BrokerConfig;
  store: Store;
  jwks: JWKS;
  publicJwks: () => JSONWebKeySet;
  cookieKeys: string[];
  findAccount: FindAccount;
  pages: ProviderPages;
  /** How sessions from upstreams that need it (smartcards) are re-checked on reuse; none when absent. */
  sessionRechecks?: SessionRechecks;
  /** Test-only: lets oidc-provider fetch client JWKS from loopback. Never set in production. */
  allowLoopbackFetch?: boolean;
}

// The broker holds ES256 and PS256 keys; it signs with nothing else.
const BROKER_ALGS: Array<'ES256' | 'PS256'> = ['ES256', 'PS256'];
const BROKER_CLIENT_FIELDS = new Set(['firstParty', 'resources', 'upstreams', 'allowedOrigins']);

export function toClientMetadata(c: ClientConfig): ClientMetadata {
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c)) if (!BROKER_CLIENT_FIELDS.has(k) && v !== undefined) meta[k] = v;
  const usesCode = c.grant_types.includes('authorization_code');
  meta.response_types = usesCode ? ['code'] : [];
  if (!usesCode) meta.redirect_uris = [];
  return meta as ClientMetadata;
}

export function maxAccessTokenTTL(config: BrokerConfig): number {
  return Math.max(config.tokens.userAccessTokenTTL, 600, ...config.resources.map((r) => r.accessTokenTTL));
}

type PolicyCheck = ConstructorParameters<typeof interactionPolicy.Check>[2];

/** The broker's checks read the store: an unreachable store answers 503 like every other store call of the OP, never a 500. */
function storeBacked(check: PolicyCheck): PolicyCheck {
  return async (ctx) => {
    try {
      return await check(ctx);
    } catch (err) {
      return unavailable(err);
    }
  };
}

/** oidc-provider's prompts, plus: a session an upstream has logged out (back-channel, SAML SLO), or whose smartcard no longer holds, must log in again. */
function loginPolicy(store: Store, delegation: DelegationHooks, sessionTTL: number, rechecks: SessionRechecks) {
  const policy = interactionPolicy.base();
  // Someone who may act for others chooses whom at sign-in. With an SSO session from an earlier login
  // there was no choice in this authorization, so a client asking for patient data gets a fresh login
  // (and with it the "act as" question) instead of silently acting as the user themself.
  policy.get('login')!.checks.add(
    new interactionPolicy.Check('acting_choice', 'choose whom to act for', storeBacked(async (ctx) => {
      const { session, params, result } = ctx.oidc;
      if (!session?.accountId || (result as { broker?: unknown } | undefined)?.broker) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      if (!String(params?.scope ?? '').split(' ').some((s) => s.startsWith('patient/'))) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      return (await delegation.canActForOthers(session.accountId)) ? interactionPolicy.Check.REQUEST_PROMPT : interactionPolicy.Check.NO_NEED_TO_PROMPT;
    })),
  );
  policy.get('login')!.checks.add(
    new interactionPolicy.Check('upstream_logout', 'the upstream identity provider ended this session', storeBacked(async (ctx) => {
      const { session } = ctx.oidc;
      if (!session?.accountId) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      return (await sessionEnded(store, session.accountId, session.loginTs)) ? interactionPolicy.Check.REQUEST_PROMPT : interactionPolicy.Check.NO_NEED_TO_PROMPT;
    })),
  );
  // A smartcard session is re-checked (revocation) on every reuse, and bounded in age (CC-22); see
  // identity/session-recheck.ts. Checks run on every authorization, the one that completes a login included:
  // that one records what reusing the session will need.
  policy.get('login')!.checks.add(
    new interactionPolicy.Check('login_recheck', 'the sign-in this session came from no longer holds', storeBacked(async (ctx) => {
      const { session, result } = ctx.oidc;
      if (!session?.accountId) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      const fresh = result as { login?: unknown; recheck?: RecheckOnReuse } | undefined;
      if (fresh?.login) {
        await bindSession(store, session, fresh.recheck, sessionTTL);
        return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      }
      return (await mayReuseSession(store, rechecks, session, sessionTTL, ctx)).reuse ? interactionPolicy.Check.NO_NEED_TO_PROMPT : interactionPolicy.Check.REQUEST_PROMPT;
    })),
  );
  return policy;
}

export function buildProvider(options: ProviderOptions): Provider {
  const { config, store } = options;
  const issuer = config.issuer ?? `http://localhost:${config.port}`;
  const clientsById = new Map(config.clients.map((c) => [c.client_id, c]));
  const resources = new Map<string, ResourceConfig>(config.resources.map((r) => [r.identifier, r]));
  const secureCookies = issuer.startsWith('https:');
  const maxTTL = maxAccessTokenTTL(config);

  const allowedResources = (clientId: string): string[] => clientsById.get(clientId)?.resources ?? [];

  const configuration: Configuration = {
    adapter: adapterFactory({
      store,
      maxAccessTokenTTL: maxTTL,
      jwtLookup: createJwtLookup({ issuer, publicJwks: options.publicJwks, replay: store.replay, revokedPrefix: REVOKED_JTI_PREFIX }),
    }),
    clients: config.clients.map(toClientMetadata),
    clientDefaults: { grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'private_key_jwt', id_token_signed_response_alg: config.tokens.signingAlg, introspection_signed_response_alg: config.tokens.signingAlg, authorization_signed_response_alg: config.tokens.signingAlg },
    jwks: options.jwks,
    findAccount: options.findAccount,
    cookies: {
      keys: options.cookieKeys,
      // Over HTTPS the session cookie takes the __Host- prefix (WS-05): the browser then refuses one set by
      // a sibling host or with a Domain, so nothing else can plant or shadow it. oidc-provider scopes the
      // interaction cookies to /interaction/<uid> and /auth/<uid>, which __Host- (Path=/ only) forbids:
      // they take __Secure-. Plain-http issuers (tests, the demo) keep the default names.
      names: secureCookies
        ? { session: '__Host-session', interaction: '__Secure-interaction', resume: '__Secure-interaction_resume' }
        : { session: '_session', interaction: '_interaction', resume: '_interaction_resume' },
      long: { signed: true, httpOnly: true, sameSite: 'lax', secure: secureCookies },
      short: { signed: true, httpOnly: true, sameSite: 'lax', secure: secureCookies },
    },
    claims: {
      // acr/amr/auth_time ride on the openid scope so every ID token carries the upstream assurance.
      openid: ['sub', 'acr', 'amr', 'auth_time', 'sid'],
      profile: ['name', 'given_name', 'family_name', 'birthdate'],
      email: ['email'],
      nhs_number: ['nhs_number'],
      roles: ['nhsid_nrbac_roles', 'selected_roleid', 'selected_role_code', 'selected_org_code'],
    },
    // Resource scopes are listed too: a client's `scope` metadata may only name scopes the OP knows.
    scopes: [...new Set(['openid', 'offline_access', 'profile', 'email', 'nhs_number', 'roles', ...config.resources.flatMap((r) => r.scopes)])],
    acrValues: ACR_VALUES,
    responseTypes: ['code'],
    // PKCE with S256 for every client, confidential ones included (RFC 9700 2.1.1).
    pkce: { required: () => true },
    // Rotate on every use; a reused refresh token then revokes the whole grant (reuse detection).
    // A request that will fail on its resource is refused here, before the old token is consumed,
    // so a bad request cannot burn the client's only refresh token.
    rotateRefreshToken: (ctx) => {
      const requested = ctx.oidc.params?.resource;
      if (requested !== undefined) {
        const granted = ctx.oidc.entities.RefreshToken?.resourceIndicators ?? new Set<string>();
        const ok = typeof requested === 'string' && granted.has(requested) && allowedResources(ctx.oidc.client!.clientId).includes(requested);
        if (!ok) throw new errors.InvalidTarget();
      }
      return true;
    },
    assertJwtClientAuthClaimsAndHeader: (ctx, claims, header) => checkClientAssertion(ctx, claims, header),
    issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    revokeGrantPolicy: () => true,
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    ttl: {
      // The resource's lifetime (capped for delegated tokens in getResourceServerInfo), else the user default.
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.tokens.userAccessTokenTTL,
      AuthorizationCode: config.tokens.authorizationCodeTTL,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 600,
      IdToken: config.tokens.idTokenTTL,
      RefreshToken: config.tokens.refreshTokenTTL,
      Grant: config.tokens.refreshTokenTTL,
      Session: config.tokens.sessionTTL,
      Interaction: 600,
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}`, policy: loginPolicy(store, options.delegation, config.tokens.sessionTTL, options.sessionRechecks ?? { rechecks: new Map() }) },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // The token's own client, or a resource server configured for the token's audience.
        allowedPolicy: async (ctx, client, token) => {
          // A delegated or exchanged token is inactive the moment its consent or originating grant ends.
          const extra = 'extra' in token ? token.extra : undefined;
          if (!(await derivedTokenActive(ctx.oidc.provider, options.delegation, extra))) return false;
          if (client.clientId === token.clientId) return true;
          const audiences = ([] as unknown[]).concat(('aud' in token ? token.aud : undefined) ?? []);
          return audiences.some((a) => typeof a === 'string' && (resources.get(a)?.introspectionClients ?? []).includes(client.clientId));
        },
      },
      revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => client.clientId === token.clientId },
      userinfo: { enabled: true },
      jwtUserinfo: { enabled: true },
      jwtIntrospection: { enabled: true },
      jwtResponseModes: { enabled: true },
      encryption: { enabled: true },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: false },
      dPoP: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource: options.pages.logoutSource, postLogoutSuccessSource: options.pages.postLogoutSuccessSource },
      resourceIndicators: {
        enabled: true,
        // A service with exactly one resource need not name it; user flows without `resource` get an
        // opaque token for userinfo.
        defaultResource: async (ctx: KoaContextWithOIDC) => {
          const client = ctx.oidc.client;
          if (!client || ctx.oidc.params?.grant_type !== 'client_credentials') return undefined;
          const allowed = allowedResources(client.clientId);
          return allowed.length === 1 ? allowed[0] : undefined;
        },
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resourceIndicator, client) => {
          const resource = resources.get(resourceIndicator);
          if (!resource || !allowedResources(client.clientId).includes(resourceIndicator)) {
            throw new errors.InvalidTarget(`resource ${resourceIndicator} is unknown or not allowed for this client`);
          }
          // Delegated tokens live at most a few minutes, whatever the resource allows.
          const grantId = ctx?.oidc?.entities?.Grant?.jti;
          const delegated = grantId ? Boolean((await loadGrantContext(store, grantId))?.actAs) : false;
          return {
            scope: resource.scopes.join(' '),
            audience: resource.identifier,
            accessTokenTTL: delegated ? Math.min(resource.accessTokenTTL, options.delegation.accessTokenTTL) : resource.accessTokenTTL,
            accessTokenFormat: resource.format,
            jwt: { sign: { alg: resource.signingAlg } },
          };
        },
      },
    },
    formats: {
      customizers: {
        // The grant id lets introspection of a JWT answer inactive once its grant is revoked.
        jwt: async (_ctx, token, jwt) => {
          if ('grantId' in token && token.grantId) jwt.payload[GRANT_ID_CLAIM] = token.grantId;
          // A delegated token is about the patient (sub) and names the carer as actor (act), RFC 8693 4.1.
          const extra = token.extra as { act?: unknown; sub?: unknown } | undefined;
          if (extra?.act && typeof extra.sub === 'string') jwt.payload.sub = extra.sub;
        },
      },
    },
    extraTokenClaims: async (ctx, token) => {
      // Tokens minted by the token-exchange grant carry the claims it decided (act chain, consent, assurance).
      const exchanged = exchangedTokenClaims(token);
      if (exchanged) return exchanged;
      if (!('accountId' in token) || !token.accountId) return undefined;
      // Assurance travels into access tokens (RFC 9068 2.2.1): from the code or refresh token the
      // access token is minted from, which carry the login's acr/amr/auth_time.
      const entities = ctx?.oidc?.entities;
      const source = entities?.AuthorizationCode ?? entities?.RefreshToken;
      if (!source) return undefined;
      // Role and assurance chosen at login (grant-context.ts).
      const context = await loadGrantContext(store, token.grantId);
      const claims: Record<string, unknown> = contextClaims(context);
      if (context?.actAs) Object.assign(claims, await options.delegation.tokenClaims(context, token.accountId));
      if (source.acr) claims.acr = source.acr;
      if (source.amr) claims.amr = source.amr;
      if (source.authTime) claims.auth_time = source.authTime;
      return claims;
    },
    clientBasedCORS: (_ctx, origin, client) => (clientsById.get(client.clientId)?.allowedOrigins ?? []).includes(origin),
    renderError: options.pages.renderError,
    loadExistingGrant: async (ctx) => {
      const result = ctx.oidc.result as { consent?: { grantId?: string }; broker?: GrantContext } | undefined;
      // The grant the consent step just made (or the user just approved).
      if (result?.consent?.grantId) return ctx.oidc.provider.Grant.find(result.consent.grantId);
      const context = result?.broker;
      // Acting for someone always starts a fresh grant, narrowed to that consent at the consent step.
      if (context?.actAs) return undefined;
      const grantId = ctx.oidc.session?.grantIdFor(ctx.oidc.client!.clientId);
      if (!grantId) return undefined;
      const grant = await ctx.oidc.provider.Grant.find(grantId);
      // A new login on an existing grant (no consent step) still updates the role and assurance.
      if (grant && context) await saveGrantContext(store, grantId, context, config.tokens.refreshTokenTTL);
      return grant;
    },
    enabledJWA: {
      clientAuthSigningAlgValues: ['ES256', 'ES384', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA'],
      idTokenSigningAlgValues: BROKER_ALGS,
      userinfoSigningAlgValues: BROKER_ALGS,
      introspectionSigningAlgValues: BROKER_ALGS,
      authorizationSigningAlgValues: BROKER_ALGS,
      dPoPSigningAlgValues: ['ES256', 'PS256', 'EdDSA'],
      requestObjectSigningAlgValues: ['ES256', 'PS256'],
    },
  };

  const provider = new Provider(issuer, configuration);
  provider.proxy = config.trustProxy;
  // oidc-provider answers CORS preflights and early errors before it knows the client; only origins
  // some client registered may see an Access-Control-Allow-Origin (public metadata excepted).
  const knownOrigins = new Set(config.clients.flatMap((c) => c.allowedOrigins));
  provider.use(async (ctx, next) => {
    await next();
    const origin = ctx.get('Origin');
    if (!origin || knownOrigins.has(origin) || ctx.path === '/jwks' || ctx.path.startsWith('/.well-known/')) return;
    for (const h of ['Access-Control-Allow-Origin', 'Access-Control-Allow-Methods', 'Access-Control-Allow-Headers', 'Access-Control-Expose-Headers', 'Access-Control-Max-Age', 'Access-Control-Allow-Credentials']) ctx.remove(h);
  });
  // oidc-provider's replay check (client assertions, DPoP proofs) is find-then-save: two parallel
  // requests with one jti both pass. The store's rememberOnce is atomic across processes.
  provider.ReplayDetection.unique = async (iss: string, jti: string, exp: number) => {
    const ttl = Math.max(1, exp - Math.floor(Date.now() / 1000));
    const key = `jti:${createHash('sha256').update(`${iss}\0${jti}`).digest('base64url')}`;
    try {
      return await store.replay.rememberOnce(key, ttl);
    } catch (err) {
      return unavailable(err);
    }
  };
  return provider;
}
