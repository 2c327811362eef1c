import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, type FetchImplementation, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { ExchangeConfig, ExchangeIssuerConfig } from '../../../config/exchange.ts';
import { IssuerUnavailable } from '../../../exchange/errors.ts';

// Keys of the trusted external issuers. Remote sets are fetched with a bounded timeout and cached;
// a kid not in the cache triggers one refetch, at most once per cooldown (jose's createRemoteJWKSet),
// so a flood of tokens with made-up kids cannot turn into a flood of fetches. `jku`/`x5u` headers are
// never followed: the URL comes from configuration only.
//
// The cache lives as long as the configuration object, so providers rebuilt on key rotation share it.

/** A remote key set larger than this is refused unread past the limit (a real one is a few KiB). */
export const JWKS_MAX_BYTES = 256 * 1024;
/** More keys than this is refused: each candidate key can cost a signature check per token. */
export const JWKS_MAX_KEYS = 100;

/**
 * Wraps the fetch jose uses for a remote key set so that the set is bounded in bytes (read as a stream
 * and abandoned at the limit, whatever Content-Length says) and in keys. Anything over a bound is a
 * JWKSInvalid, i.e. the keys "could not be had". Used for exchange issuers and OIDC upstreams alike.
 */
export function boundedJwksFetch(inner: FetchImplementation = (url, options) => fetch(url, options)): FetchImplementation {
  return async (url, options) => {
    const res = await inner(url, options);
    if (res.status !== 200 || !res.body) return res;
    const declared = Number(res.headers.get('content-length'));
    if (declared > JWKS_MAX_BYTES) {
      await res.body.cancel().catch(() => {});
      throw new errors.JWKSInvalid(`JWKS larger than ${JWKS_MAX_BYTES} bytes`);
    }
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > JWKS_MAX_BYTES) {
        await reader.cancel().catch(() => {});
        throw new errors.JWKSInvalid(`JWKS larger than ${JWKS_MAX_BYTES} bytes`);
      }
      chunks.push(value);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    let keys: unknown;
    try {
      keys = (JSON.parse(text) as { keys?: unknown }).keys;
    } catch {
      throw new errors.JWKSInvalid('JWKS is not JSON');
    }
    if (Array.isArray(keys) && keys.length > JWKS_MAX_KEYS) throw new errors.JWKSInvalid(`JWKS has ${keys.length} keys; at most ${JWKS_MAX_KEYS} are accepted`);
    return new Response(text, { status: 200, headers: { 'content-type': 'application/json' } });
  };
}

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
            [customFetch]: boundedJwksFetch(),
          }),
        );
    byIssuer.set(issuer.id, keys);
  }
  return keys;
}
