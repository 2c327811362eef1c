import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { clientKey, startTestBroker, API, type TestBroker } from '../helpers/broker.ts';

// Fail closed: with the store gone, nothing is issued; the broker answers 503 with Retry-After and
// recovers by itself when the store returns.

const basic = `Basic ${Buffer.from('other:other-secret-0123456789').toString('base64')}`;

describe.skipIf(!redisAvailable)('fail closed when Redis is unreachable', () => {
  let redis: RedisPeer;
  let tb: TestBroker;
  beforeAll(async () => {
    redis = await startRedis();
    tb = await startTestBroker({ store: redis.url, svcKey: await clientKey() });
  });
  afterAll(async () => {
    await tb?.close();
    await redis?.stop();
  });

  const token = () =>
    fetch(`${tb.base}/token`, { method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', resource: API, scope: 'system/Patient.rs' }) });

  it('503 + Retry-After within a second, nothing issued, readyz red; then recovers without restart', async () => {
    expect((await token()).status).toBe(200);
    await redis.stop();
    // A JWT client_credentials grant touches no store, so the health watcher is what stops it.
    const t0 = Date.now();
    let res = await token();
    while (res.status === 200 && Date.now() - t0 < 1000) {
      await new Promise((r) => setTimeout(r, 50));
      res = await token();
    }
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    const body = (await res.json()) as Record<string, unknown>;
    expect(body.error).toBe('temporarily_unavailable');
    expect(body.access_token).toBeUndefined();

    const ready = await fetch(`${tb.base}/readyz`);
    expect(ready.status).toBe(503);
    const auth = await fetch(`${tb.base}/auth?client_id=web&response_type=code&redirect_uri=https%3A%2F%2Fclient.test%2Fcb&scope=openid&code_challenge=${'a'.repeat(43)}&code_challenge_method=S256`, { redirect: 'manual' });
    expect(auth.status).toBe(503);
    const interaction = await fetch(`${tb.base}/interaction/abc`, { headers: { accept: 'text/html' } });
    expect([400, 503]).toContain(interaction.status);
    expect(interaction.status).not.toBe(500);

    await redis.restart();
    let recovered = false;
    for (let i = 0; i < 50 && !recovered; i++) {
      await new Promise((r) => setTimeout(r, 200));
      recovered = (await fetch(`${tb.base}/readyz`)).status === 200;
    }
    expect(recovered).toBe(true);
    expect((await token()).status).toBe(200);
  });
});
