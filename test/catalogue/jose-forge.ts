// Hand-built JOSE objects for the JWT/JOSE catalogue rows (not a test file). jose refuses to produce
// most of these shapes (alg none JWS with a signature, HS256 keyed with public key bytes, duplicate
// members, unknown crit, PBES2 with a huge p2c...), so they are assembled here from raw JSON text and
// signed with node:crypto over the exact octets.
import { createHmac, createPrivateKey, createPublicKey, randomBytes, sign as nodeSign, constants, KeyObject, type JsonWebKey } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CryptoKey, JWK } from 'jose';

export const b64u = (data: string | Buffer): string => Buffer.from(data).toString('base64url');

export interface Signer {
  alg: string;
  sign(input: Buffer): Buffer;
}

function keyObject(key: CryptoKey | KeyObject | string): KeyObject {
  if (typeof key === 'string') return createPrivateKey(key);
  return key instanceof KeyObject ? key : KeyObject.from(key);
}

/** A signer for an asymmetric JWS algorithm (ES*, RS*, PS*, EdDSA). */
export function signer(alg: string, key: CryptoKey | KeyObject | string): Signer {
  const k = keyObject(key);
  const bits = alg.slice(2);
  const hash = alg === 'EdDSA' ? null : `sha${bits}`;
  return {
    alg,
    sign(input) {
      if (alg.startsWith('ES')) return nodeSign(hash, input, { key: k, dsaEncoding: 'ieee-p1363' });
      if (alg.startsWith('PS')) return nodeSign(hash, input, { key: k, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(bits) / 8 });
      return nodeSign(hash, input, k);
    },
  };
}

/** HMAC with arbitrary key bytes (the key-confusion attack keys it with public key material). */
export function hmac(secret: Buffer | string, alg = 'HS256'): Signer {
  return { alg, sign: (input) => createHmac(`sha${alg.slice(2)}`, secret).update(input).digest() };
}

export const NONE: Signer = { alg: 'none', sign: () => Buffer.alloc(0) };

/**
 * A compact JWS. Header and payload are objects (serialised with JSON.stringify) or raw JSON text
 * (for duplicate members and odd encodings); a raw Buffer payload is used byte for byte.
 */
export function jws(header: Record<string, unknown> | string, payload: Record<string, unknown> | string | Buffer, s: Signer): string {
  const h = b64u(typeof header === 'string' ? header : JSON.stringify(header));
  const p = b64u(Buffer.isBuffer(payload) ? payload : typeof payload === 'string' ? payload : JSON.stringify(payload));
  return `${h}.${p}.${b64u(s.sign(Buffer.from(`${h}.${p}`)))}`;
}

/** A compact JWE with this protected header and random key, IV, ciphertext and tag. */
export function jwe(header: Record<string, unknown>): string {
  return [b64u(JSON.stringify(header)), b64u(randomBytes(40)), b64u(randomBytes(12)), b64u(randomBytes(64)), b64u(randomBytes(16))].join('.');
}

/** JWS JSON serialisations of a compact JWS (flattened), or of several (general). */
export function flattened(compact: string): string {
  const [p, payload, signature] = compact.split('.');
  return JSON.stringify({ protected: p, payload, signature });
}

export function general(...compacts: string[]): string {
  const payload = compacts[0].split('.')[1];
  return JSON.stringify({ payload, signatures: compacts.map((c) => ({ protected: c.split('.')[0], signature: c.split('.')[2] })) });
}

/** The public key material an attacker would feed an HMAC: PEM, DER, the JWK as JSON, and n or x. */
export function publicKeyBytes(jwk: JWK): Array<[string, Buffer]> {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
  const key = createPublicKey({ key: pub as JsonWebKey, format: 'jwk' });
  const out: Array<[string, Buffer]> = [
    ['PEM', Buffer.from(key.export({ type: 'spki', format: 'pem' }).toString())],
    ['DER', key.export({ type: 'spki', format: 'der' })],
    ['JWK JSON', Buffer.from(JSON.stringify(pub))],
  ];
  if (pub.n) out.push(['JWK n', Buffer.from(pub.n, 'base64url')]);
  if (pub.x) out.push(['JWK x', Buffer.from(pub.x, 'base64url')]);
  return out;
}

/** A self-signed certificate and its key (openssl), as an x5c chain of one. */
export function selfSigned(kind: 'rsa' | 'ec', cn = 'attacker'): { keyPem: string; certPem: string; x5c: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'jose-x5c-'));
  const args = kind === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  execFileSync('openssl', ['req', '-x509', ...args, '-nodes', '-sha256', '-days', '2', '-subj', `/CN=${cn}`, '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const certPem = readFileSync(join(dir, 'cert.pem'), 'utf8');
  return { keyPem: readFileSync(join(dir, 'key.pem'), 'utf8'), certPem, x5c: [certPem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '')] };
}

/** A P-256 "public key" that is not on the curve: the generator with y + 1. */
export const OFF_CURVE_P256: JWK = {
  kty: 'EC',
  crv: 'P-256',
  x: Buffer.from('6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296', 'hex').toString('base64url'),
  y: Buffer.from('4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f6', 'hex').toString('base64url'),
};

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);
