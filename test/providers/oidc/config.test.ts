import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect } from 'vitest';
import { oidcUpstreamSchema, type OidcUpstreamInput } from '../../../src/config/upstream-oidc.ts';
import { parseConfig } from '../../../src/config/load.ts';
import { loadClientKey, OidcConfigError } from '../../../providers/oidc/client-key.ts';
import { presetFor } from '../../../providers/oidc/presets/index.ts';
import { withExplicitPort } from '../../../providers/oidc/upstream-client.ts';

// The OIDC upstream entry of the broker's configuration, and the client keys it names.

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const JWK = { ...privateKey.export({ format: 'jwk' }), kid: 'k1' };

const base: OidcUpstreamInput = {
  id: 'cis2',
  displayName: 'NHS CIS2',
  type: 'oidc',
  preset: 'cis2',
  issuer: 'https://am.nhsint.auth-ptl.cis2.spineservices.nhs.uk:443/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare',
  client_id: '969567331415.apps.national',
  private_key_jwk: JWK as OidcUpstreamInput['private_key_jwk'],
};

function issues(input: Record<string, unknown>): string[] {
  const r = oidcUpstreamSchema.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('OIDC upstream configuration', () => {
  it('a CIS2 entry: the issuer kept exactly (with :443), defaults for skew, timeout and userinfo', () => {
    const c = oidcUpstreamSchema.parse(base);
    expect(c.issuer).toBe(base.issuer);
    expect(c).toMatchObject({ clockSkew: 30, timeoutMs: 5000, userinfo: true, provision: true });
  });

  it('refuses what cannot work', () => {
    expect(issues({ ...base, preset: 'nhs-login', private_key_jwk: undefined, token_endpoint_auth_method: 'client_secret_basic', client_secret: 's'.repeat(20) })).toEqual(['token_endpoint_auth_method: NHS login accepts private_key_jwt only']);
    expect(issues({ ...base, private_key_jwk: undefined })[0]).toMatch(/client_secret: is required/);
    expect(issues({ ...base, private_key_jwk: undefined, token_endpoint_auth_method: 'private_key_jwt' })[0]).toMatch(/exactly one of private_key_jwk or private_key_file/);
    expect(issues({ ...base, private_key_file: '/k.pem' })[0]).toMatch(/exactly one/);
    expect(issues({ ...base, private_key_jwk: { kty: 'RSA', n: 'x', e: 'AQAB' } })[0]).toMatch(/private_key_jwk/);
    expect(issues({ ...base, scope: 'profile email' })).toEqual(['scope: must include openid']);
    expect(issues({ ...base, preset: 'generic', discovery: false }).join()).toMatch(/authorization_endpoint: is required without discovery/);
    expect(issues({ ...base, discovery: true, token_endpoint: 'https://x/token' })).toEqual(['discovery: give endpoints or discovery, not both']);
    expect(issues({ ...base, issuer: 'javascript:alert(1)' }).join()).toMatch(/issuer/);
    expect(issues({ ...base, vtr: ['P9.Cp.Cd', 'not a vector'] }).join()).toMatch(/vtr/);
    expect(issues({ ...base, timeoutMs: 600_000 }).join()).toMatch(/timeoutMs/);
  });

  it('an upstream entry in the broker configuration', () => {
    const config = parseConfig({ profile: 'none', secrets: { keyEncryptionKey: Buffer.alloc(32, 1).toString('base64url') }, upstreams: [base] }, {});
    expect(config.upstreams[0]).toMatchObject({ type: 'oidc', preset: 'cis2', id: 'cis2' });
  });

  it('client keys from PEM files (PKCS#8 and PKCS#1) and JWK files; the preset chooses RS512 for CIS2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oidc-keys-'));
    const files = {
      pkcs8: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      pkcs1: privateKey.export({ format: 'pem', type: 'pkcs1' }).toString(),
      jwk: JSON.stringify(JWK),
    };
    for (const [name, content] of Object.entries(files)) {
      const path = join(dir, name);
      writeFileSync(path, content);
      const c = oidcUpstreamSchema.parse({ ...base, private_key_jwk: undefined, private_key_file: path, private_key_kid: name === 'jwk' ? undefined : 'file-kid' });
      const key = await loadClientKey(c, presetFor('cis2'));
      expect(key.alg).toBe('RS512');
      expect(key.kid).toBe(name === 'jwk' ? 'k1' : 'file-kid');
      expect(key.key.algorithm).toMatchObject({ name: 'RSASSA-PKCS1-v1_5', hash: { name: 'SHA-512' } });
    }
  });

  it('refuses short RSA keys, missing files and keys that do not fit the algorithm', async () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'jwk' });
    await expect(loadClientKey(oidcUpstreamSchema.parse({ ...base, private_key_jwk: small }), presetFor('cis2'))).rejects.toThrow(/2048/);
    await expect(loadClientKey(oidcUpstreamSchema.parse({ ...base, private_key_jwk: undefined, private_key_file: '/nonexistent/key.pem' }), presetFor('cis2'))).rejects.toBeInstanceOf(OidcConfigError);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
    await expect(loadClientKey(oidcUpstreamSchema.parse({ ...base, private_key_jwk: ec, signing_alg: 'PS256' }), presetFor('cis2'))).rejects.toThrow(/needs an RSA key/);
    const es = await loadClientKey(oidcUpstreamSchema.parse({ ...base, private_key_jwk: ec }), presetFor('generic'));
    expect(es.alg).toBe('ES256');
  });

  it('the CIS2 ":443" form', () => {
    expect(withExplicitPort('https://am.example/openam/x')).toBe('https://am.example:443/openam/x');
    expect(withExplicitPort('https://am.example:443/openam/x')).toBe('https://am.example:443/openam/x');
    expect(withExplicitPort('https://am.example:8443/openam/x')).toBe('https://am.example:8443/openam/x');
    expect(withExplicitPort('http://127.0.0.1:3000/x')).toBe('http://127.0.0.1:3000/x');
  });
});
