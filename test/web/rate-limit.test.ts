import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { clientKey, startTestBroker, API, type TestBroker } from '../helpers/broker.ts';

// Rate limits are shared by every instance on one Redis, and still hold when Redis is gone.

describe.skipIf(!redisAvailable)('rate limits across instances', () => {
  let redis: RedisPeer;
  let a: TestBroker;
  let b: TestBroker;
  beforeAll(async () => {
    redis = await startRedis();
    const svcKey = await clientKey();
    const extra = { rateLimits: { tokenPerClient: 6, tokenPerIp: 1000, loginPerIp: 1000 } };
    a = await startTestBroker({ store: redis.url, svcKey, extra });
    b = await startTestBroker({ store: redis.url, svcKey, extra });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await redis?.stop();
  });

  const token = (tb: TestBroker, secret = 'other-secret-0123456789') =>
    fetch(`${tb.base}/token`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from(`other:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', resource: API, scope: 'system/Patient.rs' }) });

  it('a client over its limit gets 429 with Retry-After, counted across both instances', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await token(a)).status, (await token(b)).status);
    expect(statuses.slice(0, 6)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(statuses.slice(6)).toEqual([429, 429]);
    const res = await token(a);
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await res.json()).toMatchObject({ error: 'slow_down' });
  });

  it('wrong secrets count too (brute force against one client id is throttled)', async () => {
    const res = await token(a, 'guess-guess-guess-guess');
    expect(res.status).toBe(429);
  });
});
