import type { ExchangeRuleConfig, TokenTypeName } from '../config/exchange.ts';

// The vocabulary of the exchange policy. Everything in src/exchange is pure: verified tokens come in
// (src/oidc/grants/token-exchange.ts does the I/O), a decision comes out.

export type { TokenTypeName };

export const TOKEN_TYPE_URN: Record<TokenTypeName, string> = {
  access_token: 'urn:ietf:params:oauth:token-type:access_token',
  id_token: 'urn:ietf:params:oauth:token-type:id_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
};
export const REFRESH_TOKEN_TYPE_URN = 'urn:ietf:params:oauth:token-type:refresh_token';

export function tokenTypeName(urn: string): TokenTypeName | undefined {
  for (const [name, value] of Object.entries(TOKEN_TYPE_URN)) if (value === urn) return name as TokenTypeName;
  return undefined;
}

/** RFC 8693 4.1: the current actor, and before it (nested) the earlier ones. */
export interface ActClaim {
  sub: string;
  iss?: string;
  act?: ActClaim;
}

export interface Assurance {
  aal?: number;
  proofing?: 'P0' | 'P5' | 'P9';
}

/** A subject or actor token after verification (or, in decode-only explain, after decoding). */
export interface PresentedToken {
  /** "self" for the broker, else the id of a configured issuer. */
  issuer: string;
  /** The `iss` value. */
  issuerUrl: string;
  kind: 'self' | 'cis2' | 'nhs-login' | 'generic';
  tokenType: TokenTypeName;
  sub: string;
  /** Broker tokens: client_id. External tokens: azp, else a single aud. */
  clientId?: string;
  audiences: string[];
  /** Undefined when the token carries no scope (ID tokens). */
  scopes?: string[];
  exp: number;
  iat?: number;
  /** A reference to the token (sha-256 of its jti or value), never the token. */
  ref: string;
  act?: ActClaim;
  mayAct?: { sub?: string; iss?: string };
  consentId?: string;
  /** The broker grant this token derives from (grant_id, or origin_grant_id of an exchanged token). */
  originGrantId?: string;
  assurance: Assurance;
  /** Claims copied into an exchanged token: assurance (acr, amr, auth_time, ...), role, consent, carryClaims. */
  carried: Record<string, unknown>;
  /** True once the signature, issuer, audience, expiry and revocation checks passed. */
  verified: boolean;
  /** Whether the token names an `act` claim itself (refused in actor tokens). */
  hasAct: boolean;
}

/** The request as the policy sees it (already parsed; tokens verified separately). */
export interface ExchangeRequest {
  clientId: string;
  /** The broker's issuer identifier (the `iss` of the calling client's identity in may_act). */
  brokerIssuer: string;
  subjectTokenType: TokenTypeName;
  actorTokenType?: TokenTypeName;
  resources: string[];
  audiences: string[];
  /** Undefined: no scope parameter (ask for everything allowed). */
  scopes?: string[];
  requestedTokenType?: string;
}

export interface ResourceInfo {
  identifier: string;
  scopes: string[];
  accessTokenTTL: number;
}

export interface CompiledRule extends ExchangeRuleConfig {
  /** Position in exchange.rules, for explain output. */
  index: number;
}

/** The policy compiled from the configuration: pure data, indexed for lookups. */
export interface CompiledPolicy {
  rulesByClient: Map<string, CompiledRule[]>;
  resources: Map<string, ResourceInfo>;
  /** client_id -> resources it is registered for (clients[].resources). */
  clientResources: Map<string, string[]>;
  publicClients: Set<string>;
  /** member ("client:x", "resource:y", "issuer:z") -> tenant id. */
  tenantOf: Map<string, string>;
  /** Cap on the lifetime of tokens acting under a consent (delegation.accessTokenTTL). */
  delegatedTTL: number;
}

export type OAuthErrorCode = 'invalid_request' | 'invalid_target' | 'invalid_scope' | 'invalid_grant' | 'unauthorized_client' | 'invalid_client';

/** What an allowed exchange issues. */
export interface TokenPlan {
  rule: string;
  resource: string;
  scopes: string[];
  /** Seconds. */
  lifetime: number;
  sub: string;
  act: ActClaim;
  /** Extra claims for the token: carried assurance, consent_id, origin_grant_id, subject_issuer. */
  claims: Record<string, unknown>;
  delegated: boolean;
}

/** Working state passed along the checks of one rule; checks fill in the plan. */
export interface Draft {
  resource?: ResourceInfo;
  scopes?: string[];
  lifetime?: number;
  act?: ActClaim;
}

export interface CheckInput {
  request: ExchangeRequest;
  subject: PresentedToken;
  actor?: PresentedToken;
  rule: CompiledRule;
  policy: CompiledPolicy;
  /** Epoch seconds. */
  now: number;
  draft: Draft;
}

export type CheckResult = { ok: true; reason: string } | { ok: false; error: OAuthErrorCode; reason: string };

export interface Check {
  name: string;
  run(input: CheckInput): CheckResult;
}

export interface Denial {
  decision: 'deny';
  error: OAuthErrorCode;
  error_description: string;
  /** The rule whose failure is reported ("(request)" or "(client)" when no rule got that far). */
  rule: string;
  check: string;
}

export interface Allowance {
  decision: 'allow';
  rule: string;
  token: TokenPlan;
}

export type Decision = Allowance | Denial;

export interface CheckTrace {
  check: string;
  outcome: 'pass' | 'fail' | 'not evaluated';
  reason?: string;
  error?: OAuthErrorCode;
}

export interface RuleTrace {
  rule: string;
  index: number;
  outcome: 'allow' | 'deny';
  checks: CheckTrace[];
}

export interface Explanation {
  decision: Decision;
  /** Request-level checks that run before any rule. */
  request: CheckTrace[];
  rules: RuleTrace[];
}

export interface RequestCheckInput {
  request: ExchangeRequest;
  policy: CompiledPolicy;
}

/** A check on the request itself, before any rule is tried. */
export interface RequestCheck {
  name: string;
  run(input: RequestCheckInput): CheckResult;
}
