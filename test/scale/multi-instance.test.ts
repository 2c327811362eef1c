import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { startBrokerProcess, type BrokerProcess } from '../peers/broker-process.ts';
import { startRoundRobin } from '../peers/round-robin.ts';
import { freePort } from '../peers/ports.ts';
import { API, REDIRECT, TEST_KEK } from '../helpers/broker.ts';
import { UserAgent, loginThroughDemo } from '../helpers/browser.ts';

// Scale-out on one Redis: three broker processes behind a strict round-robin proxy, so every step of a
// login (authorize, chooser, upstream, callback, consent, resume, code exchange) lands on a different
// instance than the step before. All logins must succeed.

const LOGINS = Number(process.env.SCALE_LOGINS ?? 1000);
// One login at a time: strict rotation then guarantees no two consecutive steps share an instance.
const PARALLEL = 1;

describe.skipIf(!redisAvailable)('three broker processes on one Redis', () => {
  let redis: RedisPeer;
  let brokers: BrokerProcess[] = [];
  let proxy: Awaited<ReturnType<typeof startRoundRobin>>;
  let base: string;

  beforeAll(async () => {
    redis = await startRedis();
    const dir = mkdtempSync(join(tmpdir(), 'scale-'));
    const proxyPort = await freePort();
    base = `http://localhost:${proxyPort}`;
    const config = {
      issuer: base,
      store: redis.url,
      profile: 'demo',
      logLevel: 'error',
      secrets: { keyEncryptionKey: TEST_KEK },
      rateLimits: { tokenPerIp: 0, tokenPerClient: 0, loginPerIp: 0 },
      resources: [{ identifier: API, scopes: ['patient/Patient.rs'], format: 'jwt', accessTokenTTL: 300 }],
      clients: [{ client_id: 'web', client_secret: 'web-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [REDIRECT], resources: [API], firstParty: true, scope: 'openid profile patient/Patient.rs' }],
    };
    // The first instance creates the signing keys; the others load them from Redis.
    const ports = [await freePort(), await freePort(), await freePort()];
    brokers.push(await startBrokerProcess(config, dir, ports[0]));
    brokers = [brokers[0], ...(await Promise.all(ports.slice(1).map((p) => startBrokerProcess(config, dir, p))))];
    proxy = await startRoundRobin(proxyPort, ports);
  }, 120_000);
  afterAll(async () => {
    await proxy?.close();
    await Promise.all(brokers.map((b) => b.stop()));
    await redis?.stop();
  });

  async function oneLogin(): Promise<boolean> {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const url = `${base}/auth?${new URLSearchParams({ client_id: 'web', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid patient/Patient.rs', resource: API, code_challenge: challenge, code_challenge_method: 'S256', state: 's', nonce: 'n' })}`;
    const back = await loginThroughDemo(new UserAgent(), url, 'patient', base);
    const code = back.searchParams.get('code');
    if (!code) return false;
    const res = await fetch(`${base}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from('web:web-secret-0123456789').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }),
    });
    return res.status === 200 && typeof ((await res.json()) as { id_token?: string }).id_token === 'string';
  }

  it(`${LOGINS} logins, every step on a different instance than the last, all succeed`, async () => {
    let ok = 0;
    let failed = 0;
    let started = 0;
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        while (started < LOGINS) {
          started++;
          try {
            if (await oneLogin()) ok++;
            else failed++;
          } catch {
            failed++;
          }
        }
      }),
    );
    expect(failed).toBe(0);
    expect(ok).toBe(LOGINS);
    // Every instance served a share of the traffic.
    for (const b of brokers) expect(proxy.served.filter((p) => p === b.port).length).toBeGreaterThan(LOGINS);
  }, 600_000);
});
