import type Provider from 'oidc-provider';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { X509Certificate } from 'node:crypto';
import type { JSONWebKeySet } from 'jose';
import type { BrokerConfig, ResourceConfig } from '../../config/schema.ts';
import { ConfigError } from '../../config/load.ts';
import { isStoreUnavailable } from '../../store/errors.ts';
import { exchangeConfigProblems, TOKEN_EXCHANGE_GRANT } from '../../config/exchange.ts';
import type { Store } from '../../store/contracts.ts';
import type { Ledger } from '../../audit/index.ts';
import type { BrokerMetrics } from '../../web/metrics.ts';
import type { DelegationHooks } from '../provider.ts';
import { compilePolicy } from '../../exchange/policy.ts';
import { checkRequest, explain } from '../../exchange/pipeline.ts';
import { parseExchangeParams, EXCHANGE_PARAMETERS, REPEATABLE_PARAMETERS, type ExchangeParams } from '../../exchange/params.ts';
import { toExchangeRequest, explainExchange, type ExchangeExplanation } from '../../exchange/explain.ts';
import { IssuerUnavailable, TokenRejected } from '../../exchange/errors.ts';
import { actChain, innermostActorOf } from '../../exchange/act.ts';
import { TOKEN_TYPE_URN, type Decision, type OAuthErrorCode, type PresentedToken, type TokenPlan } from '../../exchange/types.ts';
import { createExchangeVerifier, tokenRef, type ExchangeVerifier } from './token-exchange/verify.ts';
import { DpopError, readDpopProof, useDpopProof } from './token-exchange/dpop.ts';
import { subjectTokenLimit } from './token-exchange/subject-limit.ts';
import { createLimiter, type Limiter } from '../../web/rate-limit.ts';

// RFC 8693 token exchange as an oidc-provider grant type (issue 7). oidc-provider authenticates the
// client first (private_key_jwt with the atomic jti check, or mTLS); then, here: parse, verify the
// subject and actor tokens (token-exchange/verify.ts), let the policy decide (src/exchange, pure),
// and mint an access token bound to one resource, with the act chain extended by the caller. Every
// decision, allow or deny, is audited and counted; failures before this handler (client
// authentication) are audited from the grant.error event.

export interface TokenExchangeDeps {
  config: BrokerConfig;
  store: Store;
  /** The broker's shared limiter (default: one over the store's counters). */
  limiter?: Limiter;
  publicJwks: () => JSONWebKeySet;
  delegation: DelegationHooks & { consentActive(consentId: string): Promise<boolean> };
  ledger: Ledger;
  metrics: BrokerMetrics;
  /** NODE_ENV comes from here (default process.env): allowInsecureJwksUris is refused in production. */
  env?: NodeJS.ProcessEnv;
  /** The client certificate of an mTLS request (the same function as features.mTLS.getCertificate). */
  clientCertificate?: (ctx: KoaContextWithOIDC) => X509Certificate | string | undefined;
  /** Audit appends that fail after a denial was answered. */
  onAuditError?: (err: unknown) => void;
}

export { TOKEN_EXCHANGE_GRANT };

// ---------------------------------------------------------------------------------------------------
// Hooks for provider.ts

/** Claims of tokens minted by this grant, handed to oidc-provider through extraTokenClaims. */
const exchangedClaims = new WeakMap<object, Record<string, unknown>>();

/**
 * For provider.ts `extraTokenClaims`: the claims of a token this grant is minting (act chain, consent,
 * assurance), or undefined for every other token. oidc-provider replaces a token's `extra` with what
 * extraTokenClaims returns, so this is the only way they reach the token.
 */
export function exchangedTokenClaims(token: object): Record<string, unknown> | undefined {
  return exchangedClaims.get(token);
}

/**
 * For provider.ts introspection `allowedPolicy`: whether a token derived from a consent or a grant is
 * still backed by it. The consent's grantee is the carer at the root of the act chain (for a token
 * exchanged by a service the outermost actor is the service, not the carer).
 */
export async function derivedTokenActive(provider: Provider, delegation: Pick<DelegationHooks, 'stillActive'>, extra: unknown): Promise<boolean> {
  if (!extra || typeof extra !== 'object') return true;
  const { consent_id: consentId, origin_grant_id: originGrantId, act } = extra as Record<string, unknown>;
  if (typeof consentId === 'string' && !(await delegation.stillActive(consentId, innermostActorOf(act)))) return false;
  if (typeof originGrantId === 'string' && !(await provider.Grant.find(originGrantId))) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------
// Errors

type AnswerCode = OAuthErrorCode | 'invalid_dpop_proof' | 'temporarily_unavailable' | 'server_error' | 'slow_down';

function oauthError(code: AnswerCode, description: string): errors.OIDCProviderError {
  // slow_down: 429 with Retry-After, as every other limit of the broker answers (web/rate-limit.ts).
  const status = code === 'invalid_client' ? 401 : code === 'temporarily_unavailable' ? 503 : code === 'slow_down' ? 429 : 400;
  const err = new errors.OIDCProviderError(status, code);
  err.error_description = description;
  err.expose = true;
  return err;
}

class Refusal extends Error {
  readonly code: AnswerCode;
  readonly check: string;
  readonly rule?: string;
  /** Counted but not written to the ledger: a flood is audited once per window, not once per request. */
  readonly quiet: boolean;
  constructor(code: AnswerCode, check: string, description: string, rule?: string, quiet = false) {
    super(description);
    this.code = code;
    this.check = check;
    this.rule = rule;
    this.quiet = quiet;
  }
}

function refusalOf(err: unknown): Refusal | undefined {
  if (err instanceof Refusal) return err;
  if (err instanceof TokenRejected) return new Refusal(err.error, err.check, `${err.message} (check ${err.check})`);
  if (err instanceof IssuerUnavailable) return new Refusal('temporarily_unavailable', 'jwks', `${err.message}; try again shortly (check jwks)`);
  if (err instanceof DpopError) return new Refusal('invalid_dpop_proof', 'dpop', `${err.message} (check dpop)`);
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Audit

interface AuditFacts {
  clientId?: string;
  params?: ExchangeParams;
  subject?: PresentedToken;
  /** The subject token's reference when it was refused before verification. */
  subjectRef?: string;
  actor?: PresentedToken;
  plan?: TokenPlan;
  tokenJti?: string;
  senderConstrained?: boolean;
  refusal?: Refusal;
}

function auditEntry(facts: AuditFacts): Parameters<Ledger['append']>[0] {
  const { params, subject, actor, plan, refusal } = facts;
  // Only what is known: absent members are left out rather than written as null.
  const details: Record<string, string | number | boolean | string[]> = { decision: refusal ? 'deny' : 'allow' };
  const put = (key: string, value: string | number | boolean | string[] | undefined) => {
    if (value !== undefined) details[key] = value;
  };
  put('rule', plan?.rule ?? refusal?.rule);
  put('check', refusal?.check);
  put('error', refusal?.code);
  put('error_description', refusal?.message);
  put('subject_token_type', params?.subjectTokenType);
  put('subject_issuer', subject?.issuer);
  put('subject_ref', subject?.ref ?? facts.subjectRef);
  put('actor_token_type', params?.actorTokenType);
  put('actor_issuer', actor?.issuer);
  put('actor_ref', actor?.ref);
  if (params && (params.resources.length || params.audiences.length)) put('requested_resource', [...params.resources, ...params.audiences]);
  put('requested_scope', params?.scopes?.join(' '));
  if (plan) {
    put('aud', plan.resource);
    put('scope', plan.scopes.join(' '));
    put('expires_in', plan.lifetime);
    put('act', actChain(plan.act));
    put('token_ref', facts.tokenJti ? tokenRef(facts.tokenJti) : undefined);
    put('sender_constrained', Boolean(facts.senderConstrained));
    put('refresh_token_issued', false);
  }
  return {
    type: 'token.exchanged',
    outcome: refusal ? 'failure' : 'success',
    client: facts.clientId,
    subject: subject?.sub,
    actor: plan ? plan.act.sub : (actor?.sub ?? facts.clientId),
    consent: subject?.consentId,
    details,
  };
}

// ---------------------------------------------------------------------------------------------------
// The grant

function resourceServerFor(provider: Provider, resource: ResourceConfig, lifetime: number) {
  return new provider.ResourceServer(resource.identifier, {
    scope: resource.scopes.join(' '),
    audience: resource.identifier,
    accessTokenTTL: lifetime,
    accessTokenFormat: resource.format,
    jwt: { sign: { alg: resource.signingAlg } },
  });
}

export function registerTokenExchange(provider: Provider, deps: TokenExchangeDeps): void {
  const problems = exchangeConfigProblems(deps.config, deps.env ?? process.env);
  if (problems.length) throw new ConfigError(problems);
  const policy = compilePolicy(deps.config);
  const resources = new Map(deps.config.resources.map((r) => [r.identifier, r]));
  const verifier = createExchangeVerifier({ exchange: deps.config.exchange, publicJwks: deps.publicJwks, replay: deps.store.replay, delegation: deps.delegation });
  const reached = new WeakSet<object>();
  const limitSubject = subjectTokenLimit(deps.limiter ?? createLimiter(deps.store.rateLimits), deps.config.rateLimits.exchangePerSubjectToken);
  const report = deps.onAuditError ?? (() => {});

  const record = (facts: AuditFacts): Promise<unknown> => {
    deps.metrics.exchanges.inc({ decision: facts.refusal ? 'deny' : 'allow' });
    return deps.ledger.append(auditEntry(facts));
  };

  provider.registerGrantType(
    TOKEN_EXCHANGE_GRANT,
    async (ctx) => {
      reached.add(ctx);
      const { client } = ctx.oidc;
      const facts: AuditFacts = { clientId: client.clientId };
      try {
        const params = parseExchangeParams(ctx.oidc.params);
        facts.params = params;
        const request = toExchangeRequest(params, client.clientId, provider.issuer);
        // Who may exchange at all, before any token is looked at.
        const early = checkRequest(request, policy);
        if (early) throw new Refusal(early.error, early.check, early.error_description, early.rule);
        const limited = await limitSubject(params.subjectToken);
        if (limited?.limited) {
          facts.subjectRef = tokenRef(params.subjectToken);
          ctx.set('Retry-After', String(limited.retryAfter));
          throw new Refusal('slow_down', 'rate_limit', 'this subject_token is being exchanged too often; try again later (check rate_limit)', undefined, !limited.first);
        }

        const dpop = await readDpopProof(ctx);
        if (!dpop && client.dpopBoundAccessTokens) throw new Refusal('invalid_dpop_proof', 'dpop', 'DPoP proof JWT not provided (check dpop)');
        const certificate = client.tlsClientCertificateBoundAccessTokens ? deps.clientCertificate?.(ctx) : undefined;
        if (client.tlsClientCertificateBoundAccessTokens && !certificate) throw new Refusal('invalid_grant', 'mtls', 'mutual TLS client certificate not provided (check mtls)');

        facts.subject = await verifier.verify(provider, params.subjectToken, params.subjectTokenType, 'subject_token');
        if (params.actorToken && params.actorTokenType) facts.actor = await verifier.verify(provider, params.actorToken, params.actorTokenType, 'actor_token');

        const decision: Decision = explain(request, facts.subject, facts.actor, policy).decision;
        if (decision.decision === 'deny') throw new Refusal(decision.error, decision.check, decision.error_description, decision.rule);
        const plan = decision.token;
        facts.plan = plan;

        const resource = resources.get(plan.resource)!;
        // No grantId: an exchanged token belongs to no oidc-provider grant of the caller (the types
        // insist on one; oidc-provider does not). What it derives from is in origin_grant_id.
        const token = new provider.AccessToken({
          client,
          accountId: plan.sub,
          gty: 'token_exchange',
          scope: plan.scopes.join(' '),
          expiresIn: plan.lifetime,
          resourceServer: resourceServerFor(provider, resource, plan.lifetime),
        } as unknown as ConstructorParameters<Provider['AccessToken']>[0]);
        exchangedClaims.set(token, { ...plan.claims, act: plan.act });
        if (dpop) {
          if (!(await useDpopProof(provider, client.clientId, dpop))) throw new Refusal('invalid_dpop_proof', 'dpop', 'DPoP proof JWT Replay detected (check dpop)');
          token.setThumbprint('jkt', dpop.thumbprint);
          facts.senderConstrained = true;
        }
        if (certificate) {
          token.setThumbprint('x5t', certificate);
          facts.senderConstrained = true;
        }
        ctx.oidc.entity('AccessToken', token);
        const value = await token.save();
        // Fail closed: a token without its act chain must never leave (provider.ts must pass
        // exchangedTokenClaims through extraTokenClaims).
        if ((token.extra as { act?: unknown } | undefined)?.act === undefined) {
          await token.destroy().catch(() => {});
          throw new Error('exchanged token minted without its claims: extraTokenClaims does not call exchangedTokenClaims');
        }
        facts.tokenJti = token.jti;
        // No token without its audit entry.
        try {
          await record(facts);
        } catch (err) {
          await token.destroy().catch(() => {});
          throw oauthError('temporarily_unavailable', 'the exchange could not be recorded; try again shortly');
        }
        ctx.body = {
          access_token: value,
          issued_token_type: TOKEN_TYPE_URN.access_token,
          token_type: token.tokenType,
          expires_in: token.expiration,
          scope: token.scope,
        };
      } catch (err) {
        const refusal = refusalOf(err) ?? (isStoreUnavailable(err) ? new Refusal('temporarily_unavailable', 'store', 'the broker cannot reach its store; try again shortly (check store)') : undefined);
        // Whatever happened is audited; what is not a decision of ours (oidc-provider's own 503 from
        // the adapter, a bug) goes on unchanged.
        const code = (err as { error?: unknown }).error;
        facts.refusal = refusal ?? new Refusal(typeof code === 'string' ? (code as AnswerCode) : 'server_error', 'internal', (err as { error_description?: string }).error_description ?? 'internal error');
        if (facts.refusal.quiet) deps.metrics.exchanges.inc({ decision: 'deny' });
        else record(facts).catch(report);
        if (!refusal) throw err;
        throw oauthError(refusal.code, refusal.message);
      }
    },
    [...EXCHANGE_PARAMETERS],
    [...REPEATABLE_PARAMETERS],
  );

  // Refused before the handler (client authentication, a replayed client assertion, duplicated
  // parameters, a client not registered for the grant): audited as exchange decisions too.
  provider.on('grant.error', (ctx: KoaContextWithOIDC, err: Error & { error?: string; error_description?: string }) => {
    if (reached.has(ctx) || ctx.oidc?.params?.grant_type !== TOKEN_EXCHANGE_GRANT) return;
    const code = (err.error ?? 'invalid_request') as AnswerCode;
    const refusal = new Refusal(code, 'client_authentication', err.error_description ?? err.message);
    record({ clientId: ctx.oidc.client?.clientId, refusal }).catch(report);
  });
}

// ---------------------------------------------------------------------------------------------------
// Explain with verification (the admin endpoint)

export interface ExplainDeps {
  config: BrokerConfig;
  provider: () => Provider;
  store: Store;
  publicJwks: () => JSONWebKeySet;
  delegation: Pick<DelegationHooks, 'stillActive'>;
}

const verifiers = new WeakMap<BrokerConfig, ExchangeVerifier>();

/** explainExchange with the grant's own verification: signatures, revocation, grants and consents. */
export function explainVerified(deps: ExplainDeps, requestParams: Record<string, unknown>, clientId: string): Promise<ExchangeExplanation> {
  let verifier = verifiers.get(deps.config);
  if (!verifier) {
    verifier = createExchangeVerifier({ exchange: deps.config.exchange, publicJwks: deps.publicJwks, replay: deps.store.replay, delegation: deps.delegation });
    verifiers.set(deps.config, verifier);
  }
  const v = verifier;
  const provider = deps.provider();
  return explainExchange(deps.config, requestParams, clientId, {
    verify: async (token, type, label) => {
      try {
        return await v.verify(provider, token, type, label);
      } catch (err) {
        if (err instanceof IssuerUnavailable) throw new TokenRejected('invalid_request', 'jwks', err.message);
        throw err;
      }
    },
  });
}
