import type { Context } from 'koa';

// The connector contract (after Dex's connector package): a connector sends the browser upstream and
// later returns a verified identity. Nothing unverified leaves a connector; a connector never touches
// broker tokens.

export interface Assurance {
  acr?: string;
  amr?: string[];
  /** Authenticator assurance level 1-3 (NIST 800-63B / CIS2). */
  aal?: number;
  /** NHS login vector of trust, e.g. "P9.Cp.Cd". */
  vot?: string;
  /** Identity proofing level, e.g. "P9". */
  proofing?: string;
}

export interface UpstreamIdentity {
  provider: string;
  subject: string;
  claims: Record<string, unknown>;
  assurance: Assurance;
  /** Epoch seconds of the upstream authentication. */
  authTime: number;
  sessionIndex?: string;
  /**
   * What the connector needs to check later that this login still holds (a smartcard certificate's
   * issuers and serial), kept with the broker session; JSON, and never personal data.
   */
  recheck?: Record<string, unknown>;
}

export type RecheckResult = { valid: true } | { valid: false; reason: string };

/**
 * A connector whose logins can stop holding after the fact (a smartcard certificate revoked): the broker
 * session such a login started is re-checked whenever it is reused, and is bounded in age.
 */
export interface SessionRechecker {
  /** Longest a broker session from this upstream is reused, in seconds, before a fresh login. */
  readonly maxSessionAge: number;
  /** Whether the login `recheck` (an UpstreamIdentity's) came from still holds; `reason` goes to the log only. */
  recheck(recheck: Record<string, unknown>): Promise<RecheckResult>;
}

export interface LoginRequest {
  /** Where the upstream must send the browser back to. */
  callbackUrl: string;
  /** Opaque id of the login transaction; connectors carry it as state / RelayState. */
  transactionId: string;
  acrValues?: string[];
  /**
   * Assurance the broker needs from this login (from the client or resource policy, or a step-up after
   * a weaker login). Each connector maps it to its upstream's vocabulary: CIS2 acr_values=AAL3_ANY,
   * NHS login vtr=["P9.Cp.Cd"], a SAML RequestedAuthnContext.
   */
  minimumAssurance?: { aal?: number; proofing?: 'P0' | 'P5' | 'P9' };
  maxAge?: number;
  prompt?: string;
  loginHint?: string;
}

export interface LoginTransaction {
  id: string;
  interactionUid: string;
  connectorId: string;
  createdAt: number;
  /** Connector-private values (nonce, PKCE verifier, request id) bound to this transaction. */
  state: Record<string, string>;
}

export interface Connector {
  readonly id: string;
  readonly displayName: string;
  readonly kind: 'oidc' | 'saml' | 'smartcard' | 'demo';
  /** Sends the browser upstream (sets ctx.redirect or a page) and returns state to bind to the transaction. */
  begin(ctx: Context, request: LoginRequest): Promise<Record<string, string>>;
  /**
   * Verifies the upstream's answer on the callback route. Throws UpstreamAuthError on a refused answer,
   * UpstreamUnavailableError when the upstream itself failed (begin throws that too).
   */
  complete(ctx: Context, tx: LoginTransaction): Promise<UpstreamIdentity>;
  /** Routes the connector serves itself (for example the demo persona page, SAML metadata). */
  routes?: Array<{ method: 'GET' | 'POST'; path: string; handler: (ctx: Context) => Promise<void> }>;
  /** Re-checks of the broker sessions its logins start (smartcard). */
  sessionRecheck?: SessionRechecker;
}

/** An upstream answer that failed verification. The user sees a generic page; `reason` goes to the audit log only. */
export class UpstreamAuthError extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super('upstream authentication failed');
    this.name = 'UpstreamAuthError';
    this.reason = reason;
  }
}

/**
 * The upstream itself is not working: a timeout, a refused or dropped connection, a 5xx, or an answer its
 * own endpoints (discovery, token, userinfo, JWKS, metadata) sent that cannot be read. Only this feeds the
 * upstream's circuit breaker; a refused login (UpstreamAuthError) never does, whatever arrived on the
 * callback, so nobody can open the circuit for everyone by posting garbage. `reason` goes to the log only.
 */
export class UpstreamUnavailableError extends Error {
  readonly reason: string;
  /** Seconds before trying again is worth it (the breaker's remaining cool-down), when known. */
  readonly retryAfterSeconds: number | undefined;
  constructor(reason: string, retryAfterSeconds?: number) {
    super('upstream unavailable');
    this.name = 'UpstreamUnavailableError';
    this.reason = reason;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** What the composition root hands every connector. */
export interface ConnectorDeps {
  /** The broker's issuer; callback URLs are `${issuer}/upstream/<id>/callback`. */
  issuer: string;
  /** Replay caches (assertion ids, logout-token jti) that hold across broker instances. */
  replay: import('../store/contracts.ts').ReplayCache;
  /** For what a connector must report beyond a refused login (never a token, secret or personal data). */
  log?: import('pino').Logger;
  /** Called when an upstream ends a user's session (back-channel logout, SAML LogoutRequest). */
  onUpstreamLogout(event: { provider: string; subject?: string; sid?: string }): Promise<void>;
  /** Test-only escape hatch: lets a connector talk to an upstream on plain http loopback. Never in production. */
  allowInsecureUpstream?: boolean;
}
