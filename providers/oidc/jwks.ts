import { compactVerify, createRemoteJWKSet, customFetch, type CompactVerifyGetKey, type FetchImplementation } from 'jose';
import type * as oc from 'openid-client';
import { boundedJwksFetch } from '../../src/oidc/grants/token-exchange/jwks.ts';
import { UpstreamUnavailableError } from '../../src/identity/upstream.ts';
import { describeError } from './reasons.ts';

// The upstream's signing keys, fetched from its jwks_uri only (never from a token header) and
// refetched when a token names a kid the cached set lacks.

function plain(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((v, k) => {
    out[k] = v;
  });
  return out;
}

function joseFetch(f: oc.CustomFetch): FetchImplementation {
  return (url, o) => f(url, { method: o.method, redirect: o.redirect, signal: o.signal, headers: plain(o.headers), body: undefined });
}

export interface RemoteKeysOptions {
  timeoutMs: number;
  /** Minimum time between two refetches caused by unknown kids. */
  cooldownMs: number;
  fetch?: oc.CustomFetch;
}

export type RemoteKeys = ReturnType<typeof createRemoteJWKSet>;

export function remoteKeys(jwksUri: string, options: RemoteKeysOptions): RemoteKeys {
  return createRemoteJWKSet(new URL(jwksUri), {
    timeoutDuration: options.timeoutMs,
    cooldownDuration: options.cooldownMs,
    cacheMaxAge: 10 * 60_000,
    // Bounded in bytes and keys (a huge set is refused, not parsed and tried key by key).
    [customFetch]: boundedJwksFetch(options.fetch && joseFetch(options.fetch)),
  });
}

/**
 * Checks the ID token's signature with the upstream's key and the one configured algorithm. Its claims
 * were checked by openid-client already; this adds the signature, which openid-client leaves to TLS
 * for token-endpoint responses.
 */
export async function verifyIdTokenSignature(idToken: string, keys: RemoteKeys, algorithm: string): Promise<void> {
  await compactVerify(idToken, keysOrOutage(keys), { algorithms: [algorithm] });
}

/** jose's answers that mean "no key for this token" (a refusal), as opposed to "the key set could not be had". */
const KEY_SELECTION_ERRORS = new Set(['ERR_JWKS_NO_MATCHING_KEY', 'ERR_JWKS_MULTIPLE_MATCHING_KEYS']);

/**
 * The key set could not be fetched or read (timeout, refused, non-200, not a key set): an outage of the
 * upstream's jwks_uri. An unknown kid after the refetch stays a refusal, so a rotation that worked, or a
 * token signed with a foreign key, never counts as one.
 */
function keysOrOutage(keys: RemoteKeys): CompactVerifyGetKey {
  return async (header, token) => {
    try {
      return await keys(header, token);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && KEY_SELECTION_ERRORS.has(code)) throw err;
      throw new UpstreamUnavailableError(`JWKS: ${describeError(err)}`);
    }
  };
}
