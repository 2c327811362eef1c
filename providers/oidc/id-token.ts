import { checkJwsShape, JwsShapeError } from '../../src/crypto/jws-header.ts';

// What the connector checks of an upstream ID token beyond openid-client (iss, aud, azp, exp, nbf,
// nonce, auth_time) and the signature (jwks.ts):
//  - before any key: the strict JWS shape every input of the broker applies (src/crypto/jws-header.ts),
//    and a `typ` that is absent or JWT. A JWT of another kind from the same upstream, signed with the
//    same key (a logout token is `logout+jwt`, an access token `at+jwt`), is not an ID token (RFC 8725
//    3.11);
//  - after the signature: no `events` claim, which marks a Security Event Token such as a back-channel
//    logout token (OpenID Back-Channel Logout 2.4 says a logout token must carry it and no nonce, so
//    an upstream that omits its typ is still told apart; backchannel-logout.ts refuses a nonce in turn);
//    and an `iat` no later than now plus the clock skew (openid-client checks only that iat is a number,
//    RFC 7519 4.1.6): a token "issued" in the future was minted with a wrong clock or ahead of time.

/** Why the ID token must be refused before its signature is checked, or undefined. */
export function idTokenShapeRefusal(idToken: string): string | undefined {
  let header: Record<string, unknown>;
  try {
    header = checkJwsShape(idToken);
  } catch (err) {
    if (err instanceof JwsShapeError) return `ID token: ${err.message}`;
    throw err;
  }
  const typ = header.typ;
  if (typ === undefined) return undefined;
  if (typeof typ !== 'string' || !['jwt', 'application/jwt'].includes(typ.toLowerCase())) return `ID token typ ${String(typ).slice(0, 40)} names another kind of JWT`;
  return undefined;
}

/** Why the verified ID token's claims must still be refused, or undefined. */
export function idTokenClaimsRefusal(claims: Record<string, unknown>, clockSkewSeconds: number, nowSeconds = Math.floor(Date.now() / 1000)): string | undefined {
  if (Object.hasOwn(claims, 'events')) return 'ID token carries an events claim (a logout or other security event token)';
  if (typeof claims.iat === 'number' && claims.iat > nowSeconds + clockSkewSeconds) return `ID token iat is ${claims.iat - nowSeconds} s in the future`;
  return undefined;
}
