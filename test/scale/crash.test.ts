import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { openStore } from '../../src/store/open.ts';
import { createSealer } from '../../src/crypto/seal.ts';
import { createRecordSigner } from '../../src/crypto/jws-signer.ts';
import { DelegationService } from '../../src/delegation/service.ts';
import { parseConfig } from '../../src/config/load.ts';
import { verifyLedger } from '../../src/audit/index.ts';
import { ledgerBackendFor } from '../../src/server.ts';
import { redisAvailable, startRedis } from '../peers/redis.ts';

// SIGKILL during 1,000 concurrent consent changes: afterwards every acknowledged change is present,
// none is half-written (every version verifies and chains), and the audit chain verifies.

const COUNT = 1000;

async function crashRun(storeUrl: string) {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const priv = { ...(await exportJWK(privateKey)), kid: 'crash', alg: 'ES256' };
  const pub = { ...(await exportJWK(publicKey)), kid: 'crash', alg: 'ES256' };
  const child = spawn(process.execPath, [resolve('test/scale/fixtures/consent-writer.ts'), storeUrl, JSON.stringify(priv), JSON.stringify(pub), String(COUNT)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const acked = new Map<string, number>();
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += String(d)));
  let buffer = '';
  let ready = false;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await new Promise<void>((resolveKill, reject) => {
    child.stdout.on('data', (d) => {
      buffer += String(d);
      const lines = buffer.split('\n');
      buffer = lines.pop()!;
      for (const line of lines) {
        if (line === 'READY') ready = true;
        const m = /^ACK (\S+) (\d+)$/.exec(line);
        if (m) acked.set(m[1], Number(m[2]));
        // Kill in the middle of the concurrent changes.
        if (ready && acked.size >= 150 && child.exitCode === null) {
          child.kill('SIGKILL');
          resolveKill();
        }
        if (line === 'DONE') reject(new Error('finished before the kill; raise COUNT'));
      }
    });
    child.once('exit', (code, signal) => (signal === 'SIGKILL' ? resolveKill() : reject(new Error(`writer exited ${code}: ${stderr}`))));
  });
  await exited;

  const store = openStore(storeUrl);
  try {
    const service = new DelegationService(store, createSealer([Buffer.alloc(32, 9)]), await createRecordSigner(priv, () => ({ keys: [pub] })), parseConfig({}, {}).delegation);
    expect(acked.size).toBeGreaterThanOrEqual(150);
    expect(acked.size).toBeLessThan(COUNT);
    for (const [id, version] of acked) {
      const history = await service.history(id);
      expect(history.length).toBeGreaterThanOrEqual(version);
      expect(history[version - 1].access.level).toBe(2);
    }
    // No half-written consent anywhere: every consent of the patient opens and chains.
    const all = await service.listForPatient('patient-1');
    expect(all.length).toBe(COUNT);
    for (const r of all.slice(0, 200)) await service.history(r.id);
    const audit = await verifyLedger(ledgerBackendFor(store), { keys: [pub] });
    expect(audit).toMatchObject({ ok: true });
  } finally {
    await store.close();
  }
}

describe('SIGKILL during concurrent consent changes', () => {
  it('sqlite: acknowledged changes survive, nothing half-written, audit chain verifies', async () => {
    await crashRun(`sqlite:${join(mkdtempSync(join(tmpdir(), 'crash-')), 'b.db')}`);
  }, 180_000);

  it.skipIf(!redisAvailable)('redis (AOF): acknowledged changes survive, nothing half-written, audit chain verifies', async () => {
    const redis = await startRedis(['--appendonly', 'yes', '--appendfsync', 'always']);
    try {
      await crashRun(redis.url);
    } finally {
      await redis.stop();
    }
  }, 180_000);
});
