import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, calculateJwkThumbprint, type JWK } from 'jose';
import type { KeyStore, StoredKey } from '../store/contracts.ts';
import type { Sealer } from '../crypto/seal.ts';

// Signing keys live in the store with their private parts sealed under the key-encryption key, so
// every broker instance signs with the same keys and a copy of the database does not leak them.

export type SigningAlg = 'ES256' | 'PS256';
const SEAL_PURPOSE = 'signing-key';

function now(): number {
  return Math.floor(Date.now() / 1000);
}

async function newKey(alg: SigningAlg, sealer: Sealer, activatesAt: number): Promise<StoredKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
  const priv = await exportJWK(privateKey);
  const pub = await exportJWK(publicKey);
  const kid = (await calculateJwkThumbprint(pub)).slice(0, 16) + '-' + randomUUID().slice(0, 4);
  Object.assign(priv, { kid, alg, use: 'sig' });
  Object.assign(pub, { kid, alg, use: 'sig' });
  return {
    kid,
    alg,
    use: 'sig',
    publicJwk: pub as Record<string, unknown>,
    sealedPrivateJwk: sealer.seal(JSON.stringify(priv), SEAL_PURPOSE),
    createdAt: now(),
    activatesAt,
  };
}

/** Keys able to sign now, newest first; then published keys (future or retired) for verification. */
export function orderKeys(keys: StoredKey[], at = now()): StoredKey[] {
  const live = keys.filter((k) => !(k.removeAfter !== undefined && k.removeAfter <= at));
  const signing = live.filter((k) => k.activatesAt <= at && (k.retiresAt === undefined || k.retiresAt > at)).sort((a, b) => b.activatesAt - a.activatesAt);
  const others = live.filter((k) => !signing.includes(k)).sort((a, b) => b.activatesAt - a.activatesAt);
  return [...signing, ...others];
}

/** Makes sure each algorithm has a key that signs now (first start). Returns the stored keys. */
export async function ensureKeys(store: KeyStore, sealer: Sealer, algs: SigningAlg[]): Promise<StoredKey[]> {
  let keys = await store.listKeys();
  const at = now();
  for (const alg of algs) {
    const canSign = keys.some((k) => k.alg === alg && k.activatesAt <= at && (k.retiresAt === undefined || k.retiresAt > at));
    if (!canSign) {
      await store.putKey(await newKey(alg, sealer, at));
    }
  }
  keys = await store.listKeys();
  return keys;
}

/**
 * Publishes a new key for `alg` now; it starts signing after `overlap` seconds, when the old key
 * retires. The old key stays published until every token it signed has expired (`maxTokenLifetime`).
 */
export async function rotateKey(store: KeyStore, sealer: Sealer, alg: SigningAlg, overlap: number, maxTokenLifetime: number): Promise<{ added: StoredKey; retired: StoredKey[] }> {
  const at = now();
  const added = await newKey(alg, sealer, at + overlap);
  await store.putKey(added);
  const retired: StoredKey[] = [];
  for (const k of await store.listKeys()) {
    if (k.kid === added.kid || k.alg !== alg || k.retiresAt !== undefined) continue;
    const updated = { ...k, retiresAt: added.activatesAt, removeAfter: added.activatesAt + maxTokenLifetime };
    await store.putKey(updated);
    retired.push(updated);
  }
  // Keys whose last token has expired are dropped from the store.
  for (const k of await store.listKeys()) {
    if (k.removeAfter !== undefined && k.removeAfter <= at) await store.deleteKey(k.kid);
  }
  return { added, retired };
}

/** The private JWKS handed to oidc-provider: signing keys first, so it signs with the active key. */
export function privateJwks(keys: StoredKey[], sealer: Sealer): { keys: JWK[] } {
  return { keys: orderKeys(keys).map((k) => JSON.parse(sealer.open(k.sealedPrivateJwk, SEAL_PURPOSE)) as JWK) };
}

/** Public keys only (for verifying our own tokens and for `audit verify`). */
export function publicJwks(keys: StoredKey[]): { keys: JWK[] } {
  return { keys: orderKeys(keys).map((k) => k.publicJwk as JWK) };
}

/** A fingerprint of the key order; when it changes the provider must be rebuilt with the new order. */
export function keyEpoch(keys: StoredKey[]): string {
  return orderKeys(keys).map((k) => k.kid).join(',');
}
