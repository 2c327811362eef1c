import type { OidcUpstreamConfig } from '../../../src/config/upstream-oidc.ts';
import type { Assurance, LoginRequest } from '../../../src/identity/upstream.ts';

// A preset is data plus a claim mapping, not a code fork: the connector runs the same protocol for
// every upstream and asks the preset only for its defaults and its vocabulary of assurance.

export type AssertionAlg = 'RS256' | 'RS512' | 'ES256' | 'PS256';

/** What the login asked the upstream for, kept with the transaction and checked on the way back. */
export interface Expectations {
  /** The lowest authenticator assurance level any requested value allows. */
  minAal?: number;
  /** The lowest identity proofing level any requested value allows (P0, P5, P9). */
  minProofing?: string;
  /** NHS login vectors of trust sent as `vtr`: the returned `vot` must be one of them. */
  vtr?: string[];
}

export interface AuthorizationPlan {
  /** Extra authorization request parameters (acr_values, vtr, max_age, prompt, login_hint). */
  params: Record<string, string>;
  expect: Expectations;
}

export interface EndpointPaths {
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
  userinfo_endpoint?: string;
  end_session_endpoint?: string;
}

export interface OidcPreset {
  readonly name: OidcUpstreamConfig['preset'];
  readonly scope: string;
  /** The only ID token `alg` accepted unless the config says otherwise. */
  readonly idTokenAlg: string;
  /** Client assertion algorithm by key type, unless the config says otherwise. */
  readonly assertionAlg: { RSA: AssertionAlg; EC: AssertionAlg };
  /**
   * The client assertion `aud`: the NHS OPs want the token endpoint URL exactly; for others the
   * issuer identifier is the safer choice (the 2025 OpenID audience-confusion advisory).
   */
  readonly assertionAudience: 'token_endpoint' | 'issuer';
  /** Endpoint paths below the issuer, used for static metadata when the config names none. */
  readonly paths?: EndpointPaths;
  /** The issuer is written with its default port (CIS2's ":443"). */
  readonly explicitIssuerPort: boolean;
  /** JWT `typ` values accepted on back-channel logout tokens. */
  readonly logoutTokenTypes: readonly string[];
  /** Upstream-specific claims that carry no meaning for the broker (they are dropped). */
  readonly dropClaims: readonly string[];
  /** Maps the login's needs to the upstream's vocabulary. */
  plan(request: LoginRequest, config: OidcUpstreamConfig): AuthorizationPlan;
  /**
   * Checks and normalises the upstream's own claims after the token is verified. Returns a reason
   * when the claims are inconsistent (the login is then refused), or the claims to keep.
   */
  readClaims(subject: string, claims: Record<string, unknown>): { claims: Record<string, unknown> } | { refused: string };
  /** The assurance this login carries, in the broker's terms. */
  assurance(claims: Record<string, unknown>): Assurance;
}
