import { decodeJwt, decodeProtectedHeader, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import type { ExchangeIssuerConfig } from '../config/exchange.ts';
import { checkJwsShape, JwsShapeError } from '../crypto/jws-header.ts';
import { SOLE_AUDIENCE, soleAudience } from './audience.ts';
import { TokenRejected } from './errors.ts';
import { looksLikeJwt, type TokenLabel } from './normalize.ts';
import type { TokenTypeName } from './types.ts';

// Which verifier a presented token goes to, and the header checks that come before any key is used.
// The unverified `iss` only selects among issuers the configuration names (exact match); the keys come
// from that configuration, so a forged `iss` can only pick keys that will not verify it (RFC 8725 3.10).
// Each declared type has one `typ` (RFC 8725 3.11): an ID token sent as an access token, or an access
// token sent as an ID token, is refused before its signature is even looked at. Before any of that,
// the strict JWS shape (src/crypto/jws-header.ts): compact, no crit or b64, no member named twice.

export type Classified =
  | { opaque: true }
  | { opaque: false; issuer: ExchangeIssuerConfig | 'self'; issuerUrl: string; header: ProtectedHeaderParameters; claims: JWTPayload };

export interface ClassifyContext {
  brokerIssuer: string;
  issuers: readonly ExchangeIssuerConfig[];
}

const AT_JWT = new Set(['at+jwt', 'application/at+jwt']);

export function classifyToken(token: string, declared: TokenTypeName, label: TokenLabel, context: ClassifyContext): Classified {
  const reject = (check: string, message: string) => new TokenRejected('invalid_request', check, message);
  if (!looksLikeJwt(token)) {
    // The broker's opaque access tokens are looked up in its store.
    if (declared === 'access_token' && /^[A-Za-z0-9_-]{20,128}$/.test(token)) return { opaque: true };
    throw reject('format', `Malformed JWT in ${label}`);
  }
  try {
    checkJwsShape(token);
  } catch (err) {
    if (err instanceof JwsShapeError) throw reject('header', `Invalid JOSE header or claims in ${label} JWT - ${err.message}`);
    throw err;
  }
  let header: ProtectedHeaderParameters;
  let claims: JWTPayload;
  try {
    header = decodeProtectedHeader(token);
    claims = decodeJwt(token);
  } catch {
    throw reject('format', `Malformed JWT in ${label}`);
  }
  if (typeof header.alg !== 'string' || header.alg === '') throw reject('header', `Missing 'alg' header in ${label} JWT`);
  if (header.alg.toLowerCase() === 'none' || header.alg.startsWith('HS')) throw reject('header', `Invalid 'alg' header in ${label} JWT - ${header.alg} is never accepted`);
  if (typeof claims.iss !== 'string' || claims.iss === '') throw reject('issuer', `Missing 'iss' claim in ${label} JWT`);
  const typ = typeof header.typ === 'string' ? header.typ.toLowerCase() : undefined;

  if (claims.iss === context.brokerIssuer) {
    if (declared !== 'access_token') throw reject('token_type', `${label} is one of the broker's access tokens, but its type was declared as ${declared}`);
    if (!typ || !AT_JWT.has(typ)) throw reject('token_type', `${label} from the broker is not an access token (typ ${header.typ ?? 'missing'})`);
    return { opaque: false, issuer: 'self', issuerUrl: claims.iss, header, claims };
  }

  const issuer = context.issuers.find((i) => i.issuer === claims.iss);
  if (!issuer) throw reject('issuer', `Missing or non-matching 'iss' claim in ${label} JWT - issuer is not trusted`);
  if (!issuer.tokenTypes.includes(declared)) throw reject('token_type', `issuer ${issuer.id} is not trusted for ${declared} ${label}s (only ${issuer.tokenTypes.join(', ')})`);
  if (declared === 'access_token') {
    if (!typ || !AT_JWT.has(typ)) throw reject('token_type', `Invalid 'typ' header in ${label} JWT - an access token must be 'at+jwt'`);
  } else if (typ !== undefined && typ !== 'jwt') {
    throw reject('token_type', `Invalid 'typ' header in ${label} JWT - must be 'JWT'`);
  }
  if (typeof header.kid !== 'string' || header.kid === '') throw reject('header', `Missing 'kid' header in ${label} JWT`);
  if (!(issuer.algorithms as readonly string[]).includes(header.alg)) throw reject('header', `Invalid 'alg' header in ${label} JWT - must be one of ${issuer.algorithms.join(', ')}`);
  if (declared === 'id_token' && claims.token_use !== undefined && claims.token_use !== 'id') throw reject('token_type', `${label} is not an ID token (token_use ${String(claims.token_use)})`);
  return { opaque: false, issuer, issuerUrl: claims.iss, header, claims };
}

/**
 * The time and audience checks, without the signature: for decode-only explain. (The grant verifies
 * with jose, which applies the same rules.)
 */
export function checkClaimsUnverified(claims: JWTPayload, issuer: ExchangeIssuerConfig | 'self', label: TokenLabel, now: number): void {
  const skew = issuer === 'self' ? 0 : issuer.clockSkew;
  const reject = (check: string, message: string) => new TokenRejected('invalid_request', check, message);
  if (typeof claims.exp !== 'number') throw reject('expiry', `Missing 'exp' claim in ${label} JWT`);
  if (claims.exp + skew <= now) throw reject('expiry', `Invalid 'exp' claim in ${label} JWT - JWT has expired`);
  if (typeof claims.nbf === 'number' && claims.nbf - skew > now) throw reject('expiry', `${label} is not valid yet (nbf)`);
  if (typeof claims.iat === 'number' && claims.iat - skew > now) throw reject('expiry', `${label} was issued in the future (iat)`);
  if (issuer !== 'self') {
    if (claims.aud === undefined || (Array.isArray(claims.aud) && claims.aud.length === 0)) throw reject('audience', `Missing 'aud' claim in ${label} JWT`);
    const aud = soleAudience(claims.aud);
    if (aud === undefined) throw reject('audience', `Invalid 'aud' claim in ${label} JWT - ${SOLE_AUDIENCE}`);
    if (!issuer.audiences.includes(aud)) throw reject('audience', `Invalid 'aud' claim in ${label} JWT - none of the expected audiences`);
    if (issuer.maxTokenAge !== undefined && typeof claims.iat === 'number' && now - claims.iat > issuer.maxTokenAge + skew) throw reject('expiry', `${label} is older than ${issuer.maxTokenAge} s`);
  }
}
