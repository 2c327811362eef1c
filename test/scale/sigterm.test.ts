import { describe, it, expect } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { startBrokerProcess } from '../peers/broker-process.ts';
import { freePort } from '../peers/ports.ts';
import { API, TEST_KEK } from '../helpers/broker.ts';

// SIGTERM: a request already in flight completes; the process then exits 0 and takes no new ones.

describe('graceful shutdown', () => {
  it('an in-flight token request completes after SIGTERM; new connections are refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sigterm-'));
    const port = await freePort();
    const broker = await startBrokerProcess(
      {
        store: `sqlite:${join(dir, 'b.db')}`,
        logLevel: 'error',
        secrets: { keyEncryptionKey: TEST_KEK },
        resources: [{ identifier: API, scopes: ['system/Patient.rs'], format: 'jwt', accessTokenTTL: 300 }],
        clients: [{ client_id: 'svc', client_secret: 'svc-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], resources: [API], scope: 'system/Patient.rs' }],
      },
      dir,
      port,
    );
    let exited: Promise<number | null> | undefined;
    const body = new URLSearchParams({ grant_type: 'client_credentials', resource: API, scope: 'system/Patient.rs' }).toString();
    // Headers sent, body held back: the request is in flight when SIGTERM arrives.
    const response = new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/token', headers: { authorization: `Basic ${Buffer.from('svc:svc-secret-0123456789').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.on('data', (d) => (text += String(d)));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.flushHeaders();
      setTimeout(() => {
        exited = broker.stop('SIGTERM');
        setTimeout(() => req.end(body), 300);
      }, 200);
    });
    const res = await response;
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text).access_token).toBeTruthy();
    expect(await exited).toBe(0);
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  }, 60_000);
});
