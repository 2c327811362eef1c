import { createHash } from 'node:crypto';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type Provider from 'oidc-provider';
import type { ExchangeConfig } from '../../../config/exchange.ts';
import { SOLE_AUDIENCE, soleAudience } from '../../../exchange/audience.ts';
import { classifyToken } from '../../../exchange/classify.ts';
import { TokenRejected } from '../../../exchange/errors.ts';
import { normalizeToken, type TokenLabel } from '../../../exchange/normalize.ts';
import { innermostActor } from '../../../exchange/act.ts';
import type { PresentedToken, TokenTypeName } from '../../../exchange/types.ts';
import type { ReplayCache } from '../../../store/contracts.ts';
import { REVOKED_JTI_PREFIX } from '../../adapter.ts';
import type { DelegationHooks } from '../../provider.ts';
import { issuerKeys } from './jwks.ts';

// Verification of subject and actor tokens (the I/O half of the exchange; the policy is pure):
//  - the broker's own access tokens: signature against its published keys, typ at+jwt, not revoked,
//    their grant still there, and, when they act under a consent, that consent still active for the
//    carer at the root of the act chain; opaque ones are looked up in the store;
//  - tokens of configured external issuers: signature against the issuer's JWKS, exact iss, one aud
//    (exchange/audience.ts) that is one of the expected values, exp/nbf/iat within the issuer's clock
//    skew, optional maximum age.

export interface VerifierDeps {
  exchange: ExchangeConfig;
  publicJwks: () => JSONWebKeySet;
  replay: ReplayCache;
  delegation: Pick<DelegationHooks, 'stillActive'>;
}

const BROKER_ALGS = ['ES256', 'PS256'];

export function tokenRef(value: string): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, 22);
}

function rejectFromJose(err: unknown, label: TokenLabel): never {
  if (err instanceof TokenRejected) throw err;
  const { code, claim } = err as { code?: string; claim?: string };
  const reject = (check: string, message: string): never => {
    throw new TokenRejected('invalid_request', check, message);
  };
  switch (code) {
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return reject('signature', `Invalid 'kid' header in ${label} JWT - no matching public key`);
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return reject('signature', `${label} JWT signature verification failed`);
    case 'ERR_JWT_EXPIRED':
      return reject('expiry', `Invalid 'exp' claim in ${label} JWT - JWT has expired`);
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return reject('header', `Invalid 'alg' header in ${label} JWT`);
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (claim === 'aud') return reject('audience', `Invalid 'aud' claim in ${label} JWT - none of the expected audiences`);
      if (claim === 'iss') return reject('issuer', `Missing or non-matching 'iss' claim in ${label} JWT`);
      if (claim === 'iat' || claim === 'nbf' || claim === 'exp') return reject('expiry', `Invalid '${claim}' claim in ${label} JWT`);
      if (claim === 'typ') return reject('token_type', `Invalid 'typ' header in ${label} JWT`);
      return reject('claims', `Missing or invalid '${claim ?? 'unknown'}' claim in ${label} JWT`);
    default:
      if (typeof code === 'string' && code.startsWith('ERR_J')) return reject('format', `Malformed JWT in ${label}`);
      throw err;
  }
}

export interface ExchangeVerifier {
  verify(provider: Provider, token: string, type: TokenTypeName, label: TokenLabel): Promise<PresentedToken>;
}

export function createExchangeVerifier(deps: VerifierDeps): ExchangeVerifier {
  // The broker's keys change only on rotation: one key set per published set.
  let brokerKeys: { jwks: JSONWebKeySet; keys: JWTVerifyGetKey } | undefined;
  const ownKeys = (): JWTVerifyGetKey => {
    const jwks = deps.publicJwks();
    if (brokerKeys?.jwks !== jwks) brokerKeys = { jwks, keys: createLocalJWKSet(jwks) };
    return brokerKeys.keys;
  };

  /** What is still true of a broker token after its signature: not revoked, grant there, consent active. */
  async function stillGood(provider: Provider, token: PresentedToken, jti: string | undefined, label: TokenLabel): Promise<void> {
    if (jti !== undefined && (await deps.replay.has(REVOKED_JTI_PREFIX + jti))) throw new TokenRejected('invalid_request', 'revocation', `${label} has been revoked`);
    if (token.originGrantId !== undefined && !(await provider.Grant.find(token.originGrantId))) throw new TokenRejected('invalid_grant', 'grant', `the grant behind ${label} has been revoked or has expired`);
    if (token.consentId !== undefined && !(await deps.delegation.stillActive(token.consentId, innermostActor(token.act)))) {
      throw new TokenRejected('invalid_grant', 'consent', `the consent ${label} acts under is no longer active`);
    }
  }

  async function opaque(provider: Provider, value: string, label: TokenLabel): Promise<PresentedToken> {
    const found = (await provider.AccessToken.find(value)) ?? (await provider.ClientCredentials.find(value));
    if (!found || !found.isValid || found.exp === undefined) throw new TokenRejected('invalid_request', 'revocation', `${label} is not an active access token of this broker`);
    const extra = (found.extra ?? {}) as Record<string, unknown>;
    const accountId = 'accountId' in found ? found.accountId : undefined;
    const grantId = 'grantId' in found ? found.grantId : undefined;
    const claims: JWTPayload = {
      ...extra,
      iss: provider.issuer,
      sub: typeof extra.sub === 'string' ? extra.sub : (accountId ?? found.clientId),
      client_id: found.clientId,
      scope: found.scope,
      aud: found.aud,
      exp: found.exp,
      iat: found.iat,
      jti: found.jti,
      grant_id: grantId,
    };
    const token = normalizeToken({ label, tokenType: 'access_token', issuer: 'self', issuerUrl: provider.issuer, header: { alg: 'none' }, claims, ref: tokenRef(value), verified: true });
    await stillGood(provider, token, undefined, label);
    return token;
  }

  return {
    async verify(provider, value, type, label) {
      const classified = classifyToken(value, type, label, { brokerIssuer: provider.issuer, issuers: deps.exchange.issuers });
      if (classified.opaque) return opaque(provider, value, label);
      const { issuer } = classified;
      let claims: JWTPayload;
      try {
        if (issuer === 'self') {
          ({ payload: claims } = await jwtVerify(value, ownKeys(), { issuer: provider.issuer, typ: 'at+jwt', algorithms: BROKER_ALGS, requiredClaims: ['exp', 'jti', 'sub', 'client_id'] }));
        } else {
          ({ payload: claims } = await jwtVerify(value, issuerKeys(deps.exchange, issuer), {
            issuer: issuer.issuer,
            audience: issuer.audiences,
            algorithms: issuer.algorithms,
            clockTolerance: issuer.clockSkew,
            maxTokenAge: issuer.maxTokenAge,
            requiredClaims: ['exp', 'iat', 'sub', 'aud'],
          }));
          // jose accepts an iat in the future; a token "issued" later than now plus the skew is refused.
          if (typeof claims.iat === 'number' && claims.iat > Math.floor(Date.now() / 1000) + issuer.clockSkew) throw new TokenRejected('invalid_request', 'expiry', `Invalid 'iat' claim in ${label} JWT - issued in the future`);
          // jose accepts an audience array that merely includes an expected value; one audience only here.
          if (soleAudience(claims.aud) === undefined) throw new TokenRejected('invalid_request', 'audience', `Invalid 'aud' claim in ${label} JWT - ${SOLE_AUDIENCE}`);
        }
      } catch (err) {
        return rejectFromJose(err, label);
      }
      const jti = typeof claims.jti === 'string' ? claims.jti : undefined;
      const token = normalizeToken({ label, tokenType: type, issuer, issuerUrl: classified.issuerUrl, header: classified.header, claims, ref: tokenRef(jti ?? value), verified: true });
      if (issuer === 'self') await stillGood(provider, token, jti, label);
      return token;
    },
  };
}
