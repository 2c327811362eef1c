import type { KeyObject } from 'node:crypto';
import { CompactSign, compactVerify, createLocalJWKSet, type CompactVerifyGetKey, type JSONWebKeySet } from 'jose';
import { z } from 'zod';
import type { StoredCheckpoint } from './backend.ts';

/** The key that signs checkpoints (the broker's ES256 audit key) and its kid. */
export interface CheckpointSigner {
  key: CryptoKey | KeyObject;
  kid: string;
}

/** Public keys that may have signed checkpoints: a JWKS (old keys kept after rotation), or a resolver by kid. */
export type CheckpointKeys = JSONWebKeySet | CompactVerifyGetKey;

// A distinct typ so no other ES256 JWS the broker signs (consent records, tokens) can pass as a checkpoint.
export const CHECKPOINT_TYP = 'audit-checkpoint+jws';

export const checkpointPayloadSchema = z
  .object({
    seq: z.number().int().positive(),
    head: z.string().regex(/^[0-9a-f]{64}$/),
    iat: z.number().int().nonnegative(),
  })
  .strict();

export type CheckpointPayload = z.infer<typeof checkpointPayloadSchema>;

export async function signCheckpoint(signer: CheckpointSigner, seq: number, head: string, now: Date = new Date()): Promise<StoredCheckpoint> {
  const payload: CheckpointPayload = { seq, head, iat: Math.floor(now.getTime() / 1000) };
  const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: 'ES256', kid: signer.kid, typ: CHECKPOINT_TYP })
    .sign(signer.key);
  return { seq, jws, head, iat: payload.iat };
}

export function checkpointKeyResolver(keys: CheckpointKeys): CompactVerifyGetKey {
  return typeof keys === 'function' ? keys : createLocalJWKSet(keys);
}

export type CheckpointCheck = { ok: true; payload: CheckpointPayload; kid: string | undefined } | { ok: false; reason: string };

/** Checks one stored checkpoint: signature, typ, payload shape, and that the stored copies agree with it. */
export async function verifyCheckpoint(cp: StoredCheckpoint, keys: CompactVerifyGetKey): Promise<CheckpointCheck> {
  let payloadBytes: Uint8Array;
  let kid: string | undefined;
  try {
    const res = await compactVerify(cp.jws, keys, { algorithms: ['ES256'] });
    if (res.protectedHeader.typ !== CHECKPOINT_TYP) return { ok: false, reason: 'not a checkpoint JWS (typ)' };
    payloadBytes = res.payload;
    kid = res.protectedHeader.kid;
  } catch (err) {
    return { ok: false, reason: `signature invalid (${err instanceof Error ? err.message : 'unknown error'})` };
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(payloadBytes));
  } catch {
    return { ok: false, reason: 'payload is not JSON' };
  }
  const parsed = checkpointPayloadSchema.safeParse(json);
  if (!parsed.success) return { ok: false, reason: 'payload malformed' };
  const p = parsed.data;
  if (p.seq !== cp.seq) return { ok: false, reason: `stored at seq ${cp.seq} but signed for seq ${p.seq}` };
  if (cp.head !== null && cp.head !== p.head) return { ok: false, reason: 'stored head differs from the signed head' };
  if (cp.iat !== null && cp.iat !== p.iat) return { ok: false, reason: 'stored iat differs from the signed iat' };
  return { ok: true, payload: p, kid };
}

/**
 * Reads a checkpoint's payload without checking the signature: for retention, which needs the anchor's
 * head to check the segment it is about to remove. Verification proper uses verifyCheckpoint.
 */
export function decodeCheckpointPayload(jws: string): CheckpointPayload | null {
  const part = jws.split('.')[1];
  if (part === undefined) return null;
  try {
    const parsed = checkpointPayloadSchema.safeParse(JSON.parse(Buffer.from(part, 'base64url').toString('utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
