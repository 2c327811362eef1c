import type { OAuthErrorCode } from './types.ts';

// How the exchange answers, in one place (RFC 8693 2.2.2 and RFC 6749 5.2):
//  - invalid_request: a malformed request, and any subject_token or actor_token that is invalid for any
//    reason (undecodable, untrusted issuer, wrong type, bad signature, unknown kid, expired, revoked) or
//    unacceptable to the policy (RFC 8693 says MUST);
//  - invalid_grant: a valid subject token whose authorization has ended since it was issued: its
//    grant revoked or its consent withdrawn (what a refresh of that grant would get too); and, as
//    oidc-provider's own grants answer, a missing certificate for a client with mTLS-bound tokens;
//  - invalid_target: a resource or audience that is unknown or not allowed;
//  - invalid_scope: more scope than policy and subject token allow, or none at all;
//  - unauthorized_client: a client no exchange rule names;
//  - invalid_client: a public client (client authentication itself is oidc-provider's, before us);
//  - beyond RFC 6749: invalid_dpop_proof (RFC 9449) for a missing, bad or replayed DPoP proof, and
//    temporarily_unavailable (503) when an issuer's JWKS or the store cannot be reached.
// Every description names the check that failed.

export class TokenRejected extends Error {
  readonly error: OAuthErrorCode;
  readonly check: string;
  constructor(error: OAuthErrorCode, check: string, message: string) {
    super(message);
    this.name = 'TokenRejected';
    this.error = error;
    this.check = check;
  }
}

/** An issuer's keys could not be fetched: not the caller's fault, answered 503. */
export class IssuerUnavailable extends Error {
  readonly issuer: string;
  constructor(issuer: string, cause: unknown) {
    super(`the signing keys of issuer ${issuer} could not be fetched`, { cause });
    this.name = 'IssuerUnavailable';
    this.issuer = issuer;
  }
}
