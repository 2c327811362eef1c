import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Writable } from 'node:stream';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import * as oc from 'openid-client';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { clientKey, testConfig, API, REDIRECT, TEST_KEK } from '../helpers/broker.ts';
import { UserAgent, loginThroughDemo } from '../helpers/browser.ts';
import { freePort } from '../peers/ports.ts';

// The ledger as the broker writes it: the events of real flows land in it with request ids, nothing
// secret or personal lands in it (or in logs or metrics) in clear, and `audit verify` catches an edit.

describe('audit ledger wired into the broker', () => {
  let broker: Broker;
  let server: Server;
  let base: string;
  let dir: string;
  const logLines: string[] = [];
  const secrets: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'audit-wiring-'));
    const port = await freePort();
    const cfg = parseConfig({ ...testConfig(port, `sqlite:${join(dir, 'b.db')}`, await clientKey()), metrics: { bearerToken: 'metrics-token-0123456789' }, logLevel: 'info' }, {});
    const sink = new Writable({ write(chunk, _enc, cb) { logLines.push(String(chunk)); cb(); } });
    broker = await createBroker(cfg, { log: pino({ level: 'debug' }, sink), env: {} });
    server = await broker.listen(port, '127.0.0.1');
    base = `http://localhost:${(server.address() as AddressInfo).port}`;

    const insecure = { execute: [oc.allowInsecureRequests] };
    const web = await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), insecure);
    const verifier = oc.randomPKCECodeVerifier();
    const url = oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid profile offline_access patient/Patient.rs', resource: API, prompt: 'consent', code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const back = await loginThroughDemo(new UserAgent(), url.href, 'patient', base);
    const tokens = await oc.authorizationCodeGrant(web, back, { pkceCodeVerifier: verifier });
    const refreshed = await oc.refreshTokenGrant(web, tokens.refresh_token!);
    await oc.tokenRevocation(web, refreshed.refresh_token!);
    secrets.push(tokens.access_token, tokens.refresh_token!, tokens.id_token!, refreshed.access_token, refreshed.refresh_token!, 'web-secret-0123456789', 'other-secret-0123456789', back.searchParams.get('code')!);
    const res = await fetch(`${base}/token`, { method: 'POST', headers: { 'x-request-id': 'req-audit-0001', authorization: `Basic ${Buffer.from('other:other-secret-0123456789').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', resource: API, scope: 'system/Patient.rs' }) });
    secrets.push(((await res.json()) as { access_token: string }).access_token);
    // Let fire-and-forget appends land.
    await new Promise((r) => setTimeout(r, 200));
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await broker?.close();
  });

  it('records logins, accounts and tokens, with the request id', async () => {
    const entries = await broker.ledger.query({ limit: 1000 });
    const types = entries.map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['upstream.login.success', 'account.created', 'account.linked', 'token.issued', 'token.refreshed', 'token.revoked']));
    const cc = entries.find((e) => e.requestId === 'req-audit-0001');
    expect(cc).toMatchObject({ type: 'token.issued', client: 'other', outcome: 'success' });
    expect(cc!.details).toMatchObject({ grant_type: 'client_credentials', aud: API });
  });

  it('no token, secret, private key or plaintext NHS number in the ledger, the logs or the metrics', async () => {
    const db = new DatabaseSync(join(dir, 'b.db'), { readOnly: true });
    const ledgerDump = JSON.stringify(db.prepare('SELECT * FROM audit_entries').all()) + JSON.stringify(db.prepare('SELECT * FROM audit_checkpoints').all());
    const accountsDump = JSON.stringify(db.prepare('SELECT * FROM accounts').all()) + JSON.stringify(db.prepare('SELECT * FROM signing_keys').all());
    db.close();
    const metrics = await (await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer metrics-token-0123456789' } })).text();
    expect(metrics).toContain('broker_tokens_total');
    const logs = logLines.join('');
    expect(logs.length).toBeGreaterThan(100);
    for (const [name, text] of Object.entries({ ledgerDump, accountsDump, logs, metrics })) {
      for (const s of secrets) expect(text.includes(s), `${name} holds a token or secret`).toBe(false);
      expect(text, `${name} holds an NHS number`).not.toMatch(/9000000009/);
      expect(text, `${name} holds a private key`).not.toMatch(/BEGIN [A-Z ]*PRIVATE KEY|"d":"/);
      expect(text, `${name} holds a name`).not.toContain('Pat Patient');
    }
  });

  it('metrics are not open: no bearer token, no metrics', async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(401);
    expect(await res.text()).not.toContain('broker_tokens_total');
  });

  it('audit verify passes, then fails at exactly the edited entry', async () => {
    const file = join(dir, 'broker.yaml');
    writeFileSync(file, `store: sqlite:${join(dir, 'b.db')}\nlogLevel: silent\nsecrets:\n  keyEncryptionKey: ${TEST_KEK}\n`);
    const run = () => spawnSync(process.execPath, [resolve('src/main.ts'), 'audit', 'verify', '--config', file], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    const ok = run();
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/audit ledger ok: \d+ entries/);
    const db = new DatabaseSync(join(dir, 'b.db'));
    db.prepare("UPDATE audit_entries SET outcome = 'failure' WHERE seq = 3").run();
    db.close();
    const bad = run();
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('TAMPERED at sequence 3');
  });
});
