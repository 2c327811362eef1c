import { createLocalJWKSet, type CryptoKey, type FlattenedJWSInput, type JSONWebKeySet, type JWSHeaderParameters } from 'jose';

/**
 * A key resolver over a key set that changes only on rotation. jose imports keys lazily and caches them
 * inside one createLocalJWKSet; building a new one per verification re-imported every key every time.
 */
export function cachedLocalJwks(current: () => JSONWebKeySet): (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey> {
  let seen: JSONWebKeySet | undefined;
  let resolver: ReturnType<typeof createLocalJWKSet> | undefined;
  return (header, token) => {
    const jwks = current();
    if (jwks !== seen || !resolver) {
      seen = jwks;
      resolver = createLocalJWKSet(jwks);
    }
    return resolver(header, token);
  };
}
