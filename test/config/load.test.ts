import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
