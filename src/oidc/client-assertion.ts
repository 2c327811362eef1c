import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { checkJwsShape, JwsShapeError } from '../crypto/jws-header.ts';

// Checks on private_key_jwt client assertions that oidc-provider leaves to its
// assertJwtClientAuthClaimsAndHeader hook (it has already verified the signature, iss, aud, exp and jti).

/** The OP's clock tolerance (oidc-provider clockTolerance): also how far in the future an assertion's iat may be. */
export const CLOCK_TOLERANCE_SECONDS = 15;

/**
 * Explicit types a client assertion may carry: none, the generic one, or the one for client
 * authentication. Any other type names another kind of JWT (a request object, a DPoP proof, a logout
 * token...) that a client key signed for another purpose, which must not authenticate (RFC 8725 3.11).
 */
const ASSERTION_TYPES = new Set(['jwt', 'client-authentication+jwt']);

export function assertionTypeAllowed(typ: unknown): boolean {
  if (typ === undefined) return true;
  if (typeof typ !== 'string') return false;
  const t = typ.toLowerCase();
  return ASSERTION_TYPES.has(t.startsWith('application/') ? t.slice('application/'.length) : t);
}

export async function checkClientAssertion(ctx: KoaContextWithOIDC, claims: Record<string, unknown>, header: Record<string, unknown>): Promise<void> {
  // The strict JWS shape every input applies (src/crypto/jws-header.ts), on the assertion as sent:
  // oidc-provider decoded it with JSON.parse (the last of two members wins) and honours b64:false in
  // crit. This runs after its signature check but before the assertion is accepted or its jti stored.
  const raw = ctx.oidc.params?.client_assertion;
  if (typeof raw !== 'string') throw new errors.InvalidClientAuth('client assertion missing');
  try {
    checkJwsShape(raw);
  } catch (err) {
    if (err instanceof JwsShapeError) throw new errors.InvalidClientAuth(`client assertion: ${err.message}`);
    throw err;
  }
  // oidc-provider also accepts the token endpoint URL, the current endpoint's URL or an array holding
  // the issuer. A single audience value, the issuer, is what FAPI 2 and RFC 7523bis require: an
  // assertion a client made for some other endpoint or server (or that a malicious server obtained
  // for itself with an array) cannot then be replayed here.
  if (claims.aud !== ctx.oidc.issuer) throw new errors.InvalidClientAuth('audience (aud) must equal the issuer identifier url');
  // oidc-provider checks iat only when exp is absent; an assertion "issued" in the future is refused.
  if (typeof claims.iat === 'number' && claims.iat > Math.floor(Date.now() / 1000) + CLOCK_TOLERANCE_SECONDS) throw new errors.InvalidClientAuth('client assertion iat is in the future');
  if (!assertionTypeAllowed(header.typ)) throw new errors.InvalidClientAuth('client assertion typ names another kind of JWT');
}
