import { cachedLocalJwks } from './local-jwks.ts';
import { CompactSign, compactVerify, importJWK, type JSONWebKeySet, type JWK } from 'jose';

// Signs broker records (consent versions, audit checkpoints) with the broker's current signing key and
// verifies them against every published key, so records signed before a key rotation still verify.

export interface RecordSigner {
  sign(payload: Uint8Array, typ: string): Promise<string>;
  /** The verified payload, or throws. `typ` must match what was signed. */
  verify(jws: string, typ: string): Promise<Uint8Array>;
}

export async function createRecordSigner(privateJwk: JWK, publicJwks: () => JSONWebKeySet): Promise<RecordSigner> {
  const alg = privateJwk.alg ?? 'ES256';
  const key = await importJWK(privateJwk, alg);
  const keys = cachedLocalJwks(publicJwks);
  return {
    async sign(payload, typ) {
      return new CompactSign(payload).setProtectedHeader({ alg, kid: privateJwk.kid, typ }).sign(key);
    },
    async verify(jws, typ) {
      const { payload, protectedHeader } = await compactVerify(jws, keys, { algorithms: ['ES256', 'PS256'] });
      if (protectedHeader.typ !== typ) throw new Error(`unexpected record type ${String(protectedHeader.typ)}`);
      return payload;
    },
  };
}
