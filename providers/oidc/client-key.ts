import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { importJWK, type CryptoKey, type JWK } from 'jose';
import { z } from 'zod';
import type { OidcUpstreamConfig } from '../../src/config/upstream-oidc.ts';
import type { AssertionAlg, OidcPreset } from './presets/types.ts';

// The broker's private key for private_key_jwt at the upstream's token endpoint: a JWK in the config
// or a file (PEM in any of Node's formats, or a JWK). Checked against the algorithm at start-up so a
// wrong key fails the broker's start, not the first login.

export class OidcConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OidcConfigError';
  }
}

const privateJwk = z.looseObject({
  kty: z.enum(['RSA', 'EC']),
  d: z.string().min(1),
  kid: z.string().optional(),
  crv: z.string().optional(),
  n: z.string().optional(),
});

export interface ClientKey {
  key: CryptoKey;
  kid?: string;
  alg: AssertionAlg;
}

function readKeyFile(path: string): JWK {
  const text = readFileSync(path, 'utf8').trim();
  if (text.startsWith('{')) return JSON.parse(text) as JWK;
  return createPrivateKey(text).export({ format: 'jwk' }) as JWK;
}

export async function loadClientKey(config: OidcUpstreamConfig, preset: OidcPreset): Promise<ClientKey> {
  const where = `upstream ${config.id}`;
  let raw: JWK;
  try {
    raw = config.private_key_jwk ? (config.private_key_jwk as JWK) : readKeyFile(config.private_key_file!);
  } catch (err) {
    throw new OidcConfigError(`${where}: cannot read private_key_file (${(err as Error).message})`);
  }
  const parsed = privateJwk.safeParse(raw);
  if (!parsed.success) throw new OidcConfigError(`${where}: the client key must be a private RSA or EC key`);
  const jwk = parsed.data;
  const alg = config.signing_alg ?? preset.assertionAlg[jwk.kty];
  const family = alg.startsWith('ES') ? 'EC' : 'RSA';
  if (family !== jwk.kty) throw new OidcConfigError(`${where}: signing_alg ${alg} needs an ${family} key, got ${jwk.kty}`);
  if (alg === 'ES256' && jwk.crv !== 'P-256') throw new OidcConfigError(`${where}: ES256 needs a P-256 key`);
  if (jwk.kty === 'RSA' && Buffer.from(jwk.n ?? '', 'base64url').length < 256) throw new OidcConfigError(`${where}: RSA keys must be at least 2048 bits`);
  // The JWK's own alg/use/key_ops would fight the algorithm chosen here; only the key material counts.
  const { alg: _alg, use: _use, key_ops: _ops, ext: _ext, ...material } = raw as JWK & { ext?: boolean };
  let key: CryptoKey;
  try {
    const imported = await importJWK(material, alg);
    if (imported instanceof Uint8Array) throw new Error('symmetric key');
    key = imported;
  } catch (err) {
    throw new OidcConfigError(`${where}: cannot import the client key for ${alg} (${(err as Error).message})`);
  }
  return { key, alg, kid: config.private_key_kid ?? jwk.kid };
}
