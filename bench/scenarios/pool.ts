import { createPrivateKey, randomUUID, sign as signSync, type JsonWebKey, type KeyObject } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { CLIENT_ID, ISSUER } from '../servers/common.ts';

// private_key_jwt client assertions for the svc client (ES256, aud = the common issuer, a fresh jti
// each), pre-signed before any load so the load generator only copies strings. Each server has its
// own store, so each walks the one pool with its own cursor; past the end, assertions are signed
// synchronously on the load generator's core (counted and reported).

export const CLIENT_KID = 'bench-svc-es256';

export interface ClientKeys {
  keyObject: KeyObject;
  publicJwk: JWK;
}

export async function clientKeys(): Promise<ClientKeys> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return {
    keyObject: createPrivateKey({ key: (await exportJWK(privateKey)) as JsonWebKey, format: 'jwk' }),
    publicJwk: { ...(await exportJWK(publicKey)), kid: CLIENT_KID, alg: 'ES256', use: 'sig' },
  };
}

const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const HEADER = enc({ alg: 'ES256', kid: CLIENT_KID });

export class AssertionPool {
  private readonly keys: ClientKeys;
  private readonly ttl: number;
  private pool: string[] = [];
  private readonly cursors = new Map<string, number>();
  readonly fallbacks = new Map<string, number>();

  constructor(keys: ClientKeys, ttl: number) {
    this.keys = keys;
    this.ttl = ttl;
  }

  /** One signed assertion (node:crypto, synchronous: ~20k/s on one core). */
  sign(now = Math.floor(Date.now() / 1000)): string {
    const input = `${HEADER}.${enc({ iss: CLIENT_ID, sub: CLIENT_ID, aud: ISSUER, jti: randomUUID(), iat: now, exp: now + this.ttl })}`;
    const sig = signSync('sha256', Buffer.from(input), { key: this.keys.keyObject, dsaEncoding: 'ieee-p1363' });
    return `${input}.${sig.toString('base64url')}`;
  }

  /** Pre-signs `count` assertions; returns seconds taken. */
  fill(count: number): number {
    const t = performance.now();
    const now = Math.floor(Date.now() / 1000);
    for (let i = 0; i < count; i++) this.pool.push(this.sign(now));
    return (performance.now() - t) / 1000;
  }

  get size(): number {
    return this.pool.length;
  }

  used(server: string): number {
    return this.cursors.get(server) ?? 0;
  }

  next(server: string): string {
    const i = this.cursors.get(server) ?? 0;
    this.cursors.set(server, i + 1);
    if (i < this.pool.length) return this.pool[i];
    this.fallbacks.set(server, (this.fallbacks.get(server) ?? 0) + 1);
    return this.sign();
  }
}
