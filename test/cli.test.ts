import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const MAIN = resolve('src/main.ts');
function cli(args: string[], env: Record<string, string> = {}) {
  const cwd = mkdtempSync(join(tmpdir(), 'cli-'));
  const r = spawnSync(process.execPath, [MAIN, ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr, cwd };
}

describe('CLI', () => {
  it('config check: an invalid file exits 2 and names the path and the problem', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-cfg-'));
    const file = join(dir, 'broker.yaml');
    writeFileSync(file, 'clients:\n  - client_id: a\n    token_endpoint_auth_method: none\n    redirect_uris: [nope]\n');
    const r = cli(['config', 'check', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('clients[0].redirect_uris[0]: must be an absolute URL');
  });

  it('start with an invalid BROKER_CONFIG exits 2 without starting', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-cfg-'));
    const file = join(dir, 'broker.yaml');
    writeFileSync(file, 'port: -1\n');
    const r = cli(['start'], { BROKER_CONFIG: file });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/port: /);
  });

  it('config check accepts the demo profile; config schema prints JSON Schema', () => {
    expect(cli(['config', 'check']).code).toBe(0);
    const s = cli(['config', 'schema']);
    expect(s.code).toBe(0);
    expect(JSON.parse(s.out).properties.clients).toBeTruthy();
  });

  it('outside the demo profile a key-encryption key is required', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-cfg-'));
    const file = join(dir, 'broker.yaml');
    writeFileSync(file, `store: sqlite:${join(dir, 'b.db')}\n`);
    const r = cli(['keys', 'rotate', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('secrets.keyEncryptionKey');
  });

  it('keys rotate publishes a new key that signs only after the overlap', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-cfg-'));
    const file = join(dir, 'broker.yaml');
    writeFileSync(file, `store: sqlite:${join(dir, 'b.db')}\nlogLevel: silent\nsecrets:\n  keyEncryptionKey: \${KEK}\n`);
    const env = { KEK: Buffer.alloc(32, 1).toString('base64url') };
    const r = cli(['keys', 'rotate', '--config', file], env);
    expect(r.code, r.err).toBe(0);
    const out = JSON.parse(r.out.trim().split('\n').pop()!);
    expect(Date.parse(out.signsFrom)).toBeGreaterThan(Date.now() + 3600_000);
    expect(out.retiring).toHaveLength(1);
  });
});
