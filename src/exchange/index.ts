// Token-exchange policy (RFC 8693): pure evaluation, no I/O. The grant is src/oidc/grants/token-exchange.ts.
export * from './types.ts';
export { evaluate, explain, checkRequest, REQUEST_CHECKS, RULE_CHECKS, type EvaluateOptions } from './pipeline.ts';
export { compilePolicy, type PolicySource } from './policy.ts';
export { explainExchange, decodeOnlyVerifier, toExchangeRequest, type ExchangeExplanation, type TokenVerifier, type ExplainOptions, type TokenSummary } from './explain.ts';
export { parseExchangeParams, EXCHANGE_PARAMETERS, REPEATABLE_PARAMETERS, type ExchangeParams } from './params.ts';
export { classifyToken, checkClaimsUnverified, type Classified } from './classify.ts';
export { normalizeToken, assuranceOf, looksLikeJwt, type TokenLabel } from './normalize.ts';
export { actChain, actDepth, innermostActor, innermostActorOf, parseActClaim } from './act.ts';
export { TokenRejected, IssuerUnavailable } from './errors.ts';
