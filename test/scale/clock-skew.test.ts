import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { startBrokerProcess, type BrokerProcess } from '../peers/broker-process.ts';
import { freePort } from '../peers/ports.ts';
import { API, REDIRECT, TEST_KEK } from '../helpers/broker.ts';
import { UserAgent, loginThroughDemo } from '../helpers/browser.ts';

// Clock skew between instances (HA-13): within the configured tolerance, a code issued by one instance
// is redeemed at another; far beyond it, the skewed instance refuses (fails safe), it never accepts.

describe.skipIf(!redisAvailable)('clock skew between instances', () => {
  let redis: RedisPeer;
  const brokers: BrokerProcess[] = [];
  let issuer: string;
  let ports: { a: number; near: number; far: number };

  beforeAll(async () => {
    redis = await startRedis();
    const dir = mkdtempSync(join(tmpdir(), 'skew-'));
    ports = { a: await freePort(), near: await freePort(), far: await freePort() };
    issuer = `http://localhost:${ports.a}`;
    const config = {
      issuer,
      store: redis.url,
      profile: 'demo',
      logLevel: 'error',
      secrets: { keyEncryptionKey: TEST_KEK },
      rateLimits: { tokenPerIp: 0, tokenPerClient: 0, loginPerIp: 0 },
      resources: [{ identifier: API, scopes: ['patient/Patient.rs'], format: 'jwt', accessTokenTTL: 300 }],
      clients: [{ client_id: 'web', client_secret: 'web-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [REDIRECT], resources: [API], firstParty: true, scope: 'openid patient/Patient.rs' }],
    };
    const skewed = (seconds: number) => ({ NODE_OPTIONS: `--import=${resolve('test/peers/clock-skew.ts')}`, CLOCK_SKEW_SECONDS: String(seconds) });
    brokers.push(await startBrokerProcess(config, dir, ports.a));
    brokers.push(await startBrokerProcess(config, dir, ports.near, skewed(10)));
    brokers.push(await startBrokerProcess(config, dir, ports.far, skewed(180)));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(brokers.map((b) => b.stop()));
    await redis?.stop();
  });

  async function codeFromA() {
    const verifier = randomBytes(32).toString('base64url');
    const url = `${issuer}/auth?${new URLSearchParams({ client_id: 'web', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid patient/Patient.rs', resource: API, code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256' })}`;
    const back = await loginThroughDemo(new UserAgent(), url, 'patient', issuer);
    return { code: back.searchParams.get('code')!, verifier };
  }
  const redeemAt = (port: number, code: string, verifier: string) =>
    fetch(`http://127.0.0.1:${port}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from('web:web-secret-0123456789').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }),
    });

  it('an instance 10 s ahead (within tolerance) redeems a code issued by another', async () => {
    const { code, verifier } = await codeFromA();
    const res = await redeemAt(ports.near, code, verifier);
    expect(res.status).toBe(200);
  });

  it('an instance 3 minutes ahead (beyond the 60 s code lifetime) refuses: invalid_grant, no token', async () => {
    const { code, verifier } = await codeFromA();
    const res = await redeemAt(ports.far, code, verifier);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_grant' });
  });
});
