import { compactVerify, createRemoteJWKSet, customFetch, type FetchImplementation } from 'jose';
import type * as oc from 'openid-client';
import { boundedJwksFetch } from '../../src/oidc/grants/token-exchange/jwks.ts';

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
  await compactVerify(idToken, keys, { algorithms: [algorithm] });
}
