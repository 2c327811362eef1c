import { createHash } from 'node:crypto';
import { actChain } from './act.ts';
import { checkClaimsUnverified, classifyToken } from './classify.ts';
import { TokenRejected } from './errors.ts';
import { normalizeToken, type TokenLabel } from './normalize.ts';
import { parseExchangeParams, type ExchangeParams } from './params.ts';
import { explain } from './pipeline.ts';
import { compilePolicy, type PolicySource } from './policy.ts';
import type { CheckTrace, Decision, ExchangeRequest, OAuthErrorCode, PresentedToken, RuleTrace, TokenTypeName } from './types.ts';

// The dry run: given a request (the token endpoint's parameters) and the calling client, which rule
// would allow or deny it, and why, without issuing anything. Two modes:
//  - with `verify` (the admin endpoint passes the grant's own verifier): exactly what the grant would
//    decide, signatures, revocation and consents included;
//  - without (the CLI): tokens are decoded, not verified; the answer says so (`verified: false`).
// The output never contains a token, and not the subject's identifier either.

export type TokenVerifier = (token: string, type: TokenTypeName, label: TokenLabel) => Promise<PresentedToken>;

export interface ExplainOptions {
  verify?: TokenVerifier;
  /** Epoch seconds. */
  now?: number;
}

export interface TokenSummary {
  issuer: string;
  kind: PresentedToken['kind'];
  tokenType: TokenTypeName;
  clientId?: string;
  audiences: string[];
  scopes?: string[];
  expiresAt: string;
  assurance: PresentedToken['assurance'];
  delegated: boolean;
  act: string[];
  mayAct?: PresentedToken['mayAct'];
}

export interface ExchangeExplanation {
  client: string;
  verified: boolean;
  decision: 'allow' | 'deny';
  rule?: string;
  check?: string;
  error?: OAuthErrorCode | 'temporarily_unavailable';
  error_description?: string;
  token?: { resource: string; scope: string; expiresIn: number; act: string[]; claims: string[] };
  subject?: TokenSummary;
  actor?: TokenSummary;
  request: CheckTrace[];
  rules: RuleTrace[];
}

function summary(t: PresentedToken): TokenSummary {
  return {
    issuer: t.issuer,
    kind: t.kind,
    tokenType: t.tokenType,
    clientId: t.clientId,
    audiences: t.audiences,
    scopes: t.scopes,
    expiresAt: new Date(t.exp * 1000).toISOString(),
    assurance: t.assurance,
    delegated: t.consentId !== undefined,
    act: actChain(t.act),
    mayAct: t.mayAct,
  };
}

/** Decode-only verification for the CLI. */
export function decodeOnlyVerifier(config: PolicySource & { issuer?: string }, now: number): TokenVerifier {
  return async (token, type, label) => {
    const classified = classifyToken(token, type, label, { brokerIssuer: config.issuer ?? '', issuers: config.exchange.issuers });
    if (classified.opaque) throw new TokenRejected('invalid_request', 'format', `${label} is opaque: only the admin endpoint (which can look it up) can explain it`);
    checkClaimsUnverified(classified.claims, classified.issuer, label, now);
    const ref = createHash('sha256').update(typeof classified.claims.jti === 'string' ? classified.claims.jti : token).digest('base64url').slice(0, 22);
    return normalizeToken({ label, tokenType: type, issuer: classified.issuer, issuerUrl: classified.issuerUrl, header: classified.header, claims: classified.claims, ref, verified: false });
  };
}

export function toExchangeRequest(params: ExchangeParams, clientId: string, brokerIssuer: string): ExchangeRequest {
  return {
    clientId,
    brokerIssuer,
    subjectTokenType: params.subjectTokenType,
    actorTokenType: params.actorTokenType,
    resources: params.resources,
    audiences: params.audiences,
    scopes: params.scopes,
    requestedTokenType: params.requestedTokenType,
  };
}

function fromDecision(decision: Decision): Pick<ExchangeExplanation, 'decision' | 'rule' | 'check' | 'error' | 'error_description' | 'token'> {
  if (decision.decision === 'deny') return { decision: 'deny', rule: decision.rule, check: decision.check, error: decision.error, error_description: decision.error_description };
  const t = decision.token;
  return { decision: 'allow', rule: decision.rule, token: { resource: t.resource, scope: t.scopes.join(' '), expiresIn: t.lifetime, act: actChain(t.act), claims: Object.keys(t.claims).sort() } };
}

/**
 * `broker exchange explain`: `config` is the parsed configuration, `requestParams` the form
 * parameters of a token-exchange request (as an object; `resource`/`audience` may be arrays).
 */
export async function explainExchange(config: PolicySource & { issuer?: string }, requestParams: Record<string, unknown>, clientId: string, options: ExplainOptions = {}): Promise<ExchangeExplanation> {
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const verify = options.verify ?? decodeOnlyVerifier(config, now);
  const verified = options.verify !== undefined;
  let subject: PresentedToken | undefined;
  let actor: PresentedToken | undefined;
  let params: ExchangeParams;
  try {
    params = parseExchangeParams(requestParams);
    subject = await verify(params.subjectToken, params.subjectTokenType, 'subject_token');
    if (params.actorToken && params.actorTokenType) actor = await verify(params.actorToken, params.actorTokenType, 'actor_token');
  } catch (err) {
    if (!(err instanceof TokenRejected)) throw err;
    return {
      client: clientId,
      verified,
      decision: 'deny',
      check: err.check,
      error: err.error,
      error_description: `${err.message} (check ${err.check})`,
      subject: subject && summary(subject),
      request: [{ check: err.check, outcome: 'fail', reason: err.message, error: err.error }],
      rules: [],
    };
  }
  const result = explain(toExchangeRequest(params, clientId, config.issuer ?? ''), subject, actor, compilePolicy(config), { now, allRules: true });
  return { client: clientId, verified, ...fromDecision(result.decision), subject: summary(subject), actor: actor && summary(actor), request: result.request, rules: result.rules };
}
