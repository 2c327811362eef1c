import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify, type JWK } from 'jose';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { checkJwsShape, JwsShapeError } from '../../../crypto/jws-header.ts';

// DPoP (RFC 9449) for the exchange grant. oidc-provider validates proofs inside its own grant handlers
// only and does not hand its helper to custom grants, so the same checks are made here: a dpop+jwt
// signed by the public key it embeds, htm POST, htu the token endpoint, iat within oidc-provider's
// 300-second window, and a jti used once (through the same atomic ReplayDetection.unique the broker
// installs for client assertions). The broker configures no DPoP nonces, so a proof with one is refused.
// First of all, the strict JWS shape every input applies (src/crypto/jws-header.ts).

const WINDOW = 300;
const ALGS = ['ES256', 'PS256', 'EdDSA'];

export class DpopError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DpopError';
  }
}

export interface DpopProof {
  thumbprint: string;
  jti: string;
}

export async function readDpopProof(ctx: KoaContextWithOIDC): Promise<DpopProof | undefined> {
  const proof = ctx.get('DPoP');
  if (!proof) return undefined;
  try {
    checkJwsShape(proof);
  } catch (err) {
    if (err instanceof JwsShapeError) throw new DpopError(`invalid DPoP proof: ${err.message}`);
    throw err;
  }
  let payload: Record<string, unknown>;
  let jwk: JWK;
  try {
    const verified = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ALGS });
    payload = verified.payload;
    jwk = verified.protectedHeader.jwk as JWK;
  } catch {
    throw new DpopError('invalid DPoP key binding');
  }
  if (typeof payload.iat !== 'number') throw new DpopError('DPoP proof must have a iat number property');
  if (typeof payload.jti !== 'string' || payload.jti === '' || payload.jti.length > 256) throw new DpopError('DPoP proof must have a jti string property');
  if (payload.nonce !== undefined) throw new DpopError('DPoP nonces are not supported');
  if (Math.abs(Math.floor(Date.now() / 1000) - payload.iat) > WINDOW) throw new DpopError('DPoP proof iat is not recent enough');
  if (payload.htm !== ctx.method) throw new DpopError('DPoP proof htm mismatch');
  const htu = typeof payload.htu === 'string' ? URL.parse(payload.htu) : null;
  if (!htu) throw new DpopError('DPoP proof htu mismatch');
  htu.hash = '';
  htu.search = '';
  if (htu.href !== new URL(ctx.oidc.urlFor('token')).href) throw new DpopError('DPoP proof htu mismatch');
  return { thumbprint: await calculateJwkThumbprint(jwk), jti: payload.jti };
}

/** Marks the proof used; false when it was used before (any instance). */
export function useDpopProof(provider: Provider, clientId: string, proof: DpopProof): Promise<boolean> {
  return provider.ReplayDetection.unique(clientId, proof.jti, Math.floor(Date.now() / 1000) + WINDOW);
}
