import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { ExchangeConfig, ExchangeIssuerConfig } from '../../../config/exchange.ts';
import { IssuerUnavailable } from '../../../exchange/errors.ts';

// Keys of the trusted external issuers. Remote sets are fetched with a bounded timeout and cached;
// a kid not in the cache triggers one refetch, at most once per cooldown (jose's createRemoteJWKSet),
// so a flood of tokens with made-up kids cannot turn into a flood of fetches. `jku`/`x5u` headers are
// never followed: the URL comes from configuration only.
//
// The cache lives as long as the configuration object, so providers rebuilt on key rotation share it.

const cache = new WeakMap<ExchangeConfig, Map<string, JWTVerifyGetKey>>();

/** jose's answers that mean "this token's kid is not there", as opposed to "the keys could not be had". */
const KEY_SELECTION_ERRORS = new Set(['ERR_JWKS_NO_MATCHING_KEY', 'ERR_JWKS_MULTIPLE_MATCHING_KEYS']);

function guard(issuer: ExchangeIssuerConfig, resolve: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await resolve(header, token);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && KEY_SELECTION_ERRORS.has(code)) throw err;
      throw new IssuerUnavailable(issuer.id, err);
    }
  };
}

export function issuerKeys(exchange: ExchangeConfig, issuer: ExchangeIssuerConfig): JWTVerifyGetKey {
  let byIssuer = cache.get(exchange);
  if (!byIssuer) {
    byIssuer = new Map();
    cache.set(exchange, byIssuer);
  }
  let keys = byIssuer.get(issuer.id);
  if (!keys) {
    keys = issuer.jwks
      ? createLocalJWKSet(issuer.jwks as JSONWebKeySet)
      : guard(
          issuer,
          createRemoteJWKSet(new URL(issuer.jwks_uri!), {
            timeoutDuration: exchange.jwks.timeoutMs,
            cooldownDuration: exchange.jwks.cooldownMs,
            cacheMaxAge: exchange.jwks.cacheMaxAgeMs,
            headers: { accept: 'application/json, application/jwk-set+json' },
          }),
        );
    byIssuer.set(issuer.id, keys);
  }
  return keys;
}
