import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, configJsonSchema, loadConfigFile, parseConfig, resolveConfig } from '../../src/config/load.ts';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('defaults: port 8080, issuer http://localhost:<port>, sqlite store', () => {
    const c = parseConfig({}, {});
    expect(c.port).toBe(8080);
    expect(c.issuer).toBe('http://localhost:8080');
    expect(c.store).toBe('sqlite:./data/broker.db');
  });

  it('PORT overrides the port and the default issuer follows', () => {
    const c = parseConfig({ port: 9000 }, { PORT: '9100' });
    expect(c.port).toBe(9100);
    expect(c.issuer).toBe('http://localhost:9100');
  });

  it('an https issuer needs tls or trustProxy (nothing else can tell the broker a request came over https)', () => {
    expect(problems(() => parseConfig({ issuer: 'https://broker.example' }, {}))).toContain('issuer: an https issuer needs tls (the broker terminates TLS) or trustProxy (a TLS-terminating proxy in front)');
    expect(parseConfig({ issuer: 'https://broker.example', trustProxy: true }, {}).issuer).toBe('https://broker.example');
  });

  it('HA-20 a Redis store off loopback needs credentials, and TLS or an explicit allowPlaintext; loopback is exempt', () => {
    const CREDS = 'store: a Redis store off loopback needs credentials: redis://user:${REDIS_PASSWORD}@host (an ACL user, see deploy/redis/README.md)';
    const TLS = 'store: a Redis store off loopback needs TLS (rediss://), or storeOptions.allowPlaintext: true where the link runs only on a private network you control';
    expect(problems(() => parseConfig({ store: 'redis://redis.internal:6379' }, {}))).toEqual(expect.arrayContaining([CREDS, TLS]));
    expect(problems(() => parseConfig({ store: 'redis+sentinel://s1:26379,s2:26379/mymaster' }, {}))).toEqual(expect.arrayContaining([CREDS, TLS]));
    expect(problems(() => parseConfig({ store: 'redis://broker:pw@redis.internal:6379' }, {}))).toEqual([TLS]);
    expect(problems(() => parseConfig({ store: 'rediss://redis.internal:6380' }, {}))).toEqual([CREDS]);
    // The message never echoes the URL (it may hold a password).
    expect(problems(() => parseConfig({ store: 'redis://broker:s3cret@redis.internal:6379' }, {})).join('\n')).not.toContain('s3cret');
    expect(parseConfig({ store: 'rediss://broker:pw@redis.internal:6380' }, {}).store).toContain('rediss://');
    expect(parseConfig({ store: 'redis://broker:pw@redis.internal:6379', storeOptions: { allowPlaintext: true } }, {}).storeOptions.allowPlaintext).toBe(true);
    for (const store of ['redis://127.0.0.1:6379', 'redis://localhost:6379', 'redis+cluster://127.0.0.1:7000,127.0.0.1:7001', 'redis://[::1]:6379']) expect(parseConfig({ store }, {}).store).toBe(store);
  });

  it('names the path and the problem', () => {
    const p = problems(() =>
      parseConfig({ clients: [{ client_id: 'a', client_secret: 'x'.repeat(20), token_endpoint_auth_method: 'client_secret_basic', redirect_uris: ['https://ok.example/cb'] }, { client_id: 'b', client_secret: 'y'.repeat(20), token_endpoint_auth_method: 'client_secret_basic', redirect_uris: ['not-a-url'] }] }, {}),
    );
    expect(p).toContain('clients[1].redirect_uris[0]: must be an absolute URL');
  });

  it('refuses unsafe client metadata', () => {
    expect(problems(() => parseConfig({ clients: [{ client_id: 'a', token_endpoint_auth_method: 'none', redirect_uris: ['http://evil.example/cb'] }] }, {}))).toContain('clients[0].redirect_uris[0]: http is allowed only for loopback hosts');
    expect(problems(() => parseConfig({ clients: [{ client_id: 'a', token_endpoint_auth_method: 'client_secret_basic', redirect_uris: ['https://a.example/cb'] }] }, {}))).toContain('clients[0].client_secret: is required for client_secret_basic');
    expect(problems(() => parseConfig({ clients: [{ client_id: 'a', token_endpoint_auth_method: 'none', redirect_uris: ['https://a.example/cb#frag'] }] }, {}))).toContain('clients[0].redirect_uris[0]: must not contain a fragment');
    expect(problems(() => parseConfig({ clients: [{ client_id: 'a', token_endpoint_auth_method: 'none', redirect_uris: ['https://a.example/cb'], resources: ['https://nowhere.example'] }] }, {}))).toContain('clients[0].resources[0]: unknown resource https://nowhere.example');
    expect(problems(() => parseConfig({ unknownKey: 1 }, {}))[0]).toMatch(/^\(root\): Unrecognized key/);
  });

  it('refuses certificate client authentication (tls_client_auth, self_signed_tls_client_auth), which the broker does not offer (CC-19, OA-59); config check exits 2', () => {
    const svc = { grant_types: ['client_credentials'] };
    const p = problems(() => parseConfig({ clients: [{ client_id: 'ok', token_endpoint_auth_method: 'client_secret_basic', client_secret: 'x'.repeat(20), ...svc }, { client_id: 'a', token_endpoint_auth_method: 'tls_client_auth', ...svc }, { client_id: 'b', token_endpoint_auth_method: 'self_signed_tls_client_auth', ...svc }] }, {}));
    expect(p).toEqual([
      'clients[1].token_endpoint_auth_method: tls_client_auth is not supported: the broker has no mTLS client authentication (use private_key_jwt)',
      'clients[2].token_endpoint_auth_method: self_signed_tls_client_auth is not supported: the broker has no mTLS client authentication (use private_key_jwt)',
    ]);
    // The certificate subject a tls_client_auth client names has nothing to match either.
    expect(problems(() => parseConfig({ clients: [{ client_id: 'a', token_endpoint_auth_method: 'none', redirect_uris: ['https://a.example/cb'], tls_client_auth_subject_dn: 'CN=a' }] }, {}))).toEqual(['clients[0]: Unrecognized key: "tls_client_auth_subject_dn"']);
    // [P] the methods the OP does offer still load.
    for (const method of ['private_key_jwt', 'client_secret_basic', 'client_secret_post'] as const) {
      expect(parseConfig({ clients: [{ client_id: 'a', token_endpoint_auth_method: method, client_secret: 'x'.repeat(20), jwks_uri: method === 'private_key_jwt' ? 'https://a.example/jwks' : undefined, ...svc }] }, {}).clients[0].token_endpoint_auth_method).toBe(method);
    }
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'broker.yaml');
    writeFileSync(file, 'clients:\n  - client_id: mtls-app\n    token_endpoint_auth_method: tls_client_auth\n    grant_types: [client_credentials]\n');
    const r = spawnSync(process.execPath, [resolve('src/main.ts'), 'config', 'check', '--config', file], { cwd: dir, env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('clients[0].token_endpoint_auth_method: tls_client_auth is not supported');
  });

  it('interpolates ${ENV} in values, and names a missing variable', () => {
    const c = parseConfig({ secrets: { keyEncryptionKey: '${KEK}' } }, { KEK: 'abc' });
    expect(c.secrets.keyEncryptionKey).toBe('abc');
    expect(problems(() => parseConfig({ secrets: { keyEncryptionKey: '${MISSING_KEK}' } }, {}))).toEqual(['secrets.keyEncryptionKey: environment variable MISSING_KEK is not set']);
  });

  it('a secret containing YAML syntax cannot change the structure', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'b.yaml');
    writeFileSync(file, 'logLevel: ${LVL}\n');
    expect(problems(() => loadConfigFile(file, { LVL: 'info\nport: 1' }))[0]).toMatch(/^logLevel: Invalid option/);
  });

  it('YAML syntax errors and unreadable files are reported, not thrown raw', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'clients: [\n');
    expect(problems(() => loadConfigFile(file, {}))[0]).toMatch(/YAML syntax error/);
    expect(problems(() => loadConfigFile(join(dir, 'missing.yaml'), {}))[0]).toMatch(/cannot be read \(ENOENT\)/);
  });

  it('no file means the demo profile, whose web client follows PORT', () => {
    const c = resolveConfig(undefined, { PORT: '8123' });
    expect(c.profile).toBe('demo');
    expect(c.clients.find((x) => x.client_id === 'demo-web')?.redirect_uris).toEqual(['http://localhost:8123/demo/client/callback']);
    expect(c.clients.find((x) => x.client_id === 'demo-service')?.client_secret).toBe('demo-service-secret');
  });

  it('prints a JSON Schema', () => {
    const schema = configJsonSchema() as { type: string; properties: Record<string, unknown> };
    expect(schema.type).toBe('object');
    expect(Object.keys(schema.properties)).toEqual(expect.arrayContaining(['clients', 'resources', 'store', 'port']));
  });
});
