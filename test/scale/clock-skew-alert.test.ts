import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { startBrokerProcess, type BrokerProcess } from '../peers/broker-process.ts';
import { freePort } from '../peers/ports.ts';
import { TEST_KEK } from '../helpers/broker.ts';

// HA-13's alert: each instance compares its clock with Redis's (TIME) and exports the difference as
// broker_clock_skew_seconds; beyond storeOptions.clockSkewWarnSeconds (default 15 s, the OP's clock
// tolerance) it logs one warning, and one more when the clock is right again.

const SKEWED = "clock skew: this instance's clock differs from the store's beyond the threshold";
const RECOVERED = "clock skew: this instance's clock agrees with the store's again";

describe.skipIf(!redisAvailable)('clock skew alert', () => {
  let redis: RedisPeer;
  const brokers: BrokerProcess[] = [];
  let normal: { broker: BrokerProcess; metrics: number };
  let ahead: { broker: BrokerProcess; metrics: number };

  beforeAll(async () => {
    redis = await startRedis();
    const dir = mkdtempSync(join(tmpdir(), 'skew-alert-'));
    const start = async (env: Record<string, string>) => {
      const metrics = await freePort();
      const config = { store: redis.url, profile: 'demo', logLevel: 'warn', secrets: { keyEncryptionKey: TEST_KEK }, metrics: { port: metrics } };
      const broker = await startBrokerProcess(config, dir, await freePort(), env);
      brokers.push(broker);
      return { broker, metrics };
    };
    // The first creates the signing keys in Redis; the second loads them.
    normal = await start({});
    ahead = await start({ NODE_OPTIONS: `--import=${resolve('test/peers/clock-step.ts')}`, CLOCK_SKEW_SECONDS: '120' });
  }, 60_000);
  afterAll(async () => {
    await Promise.all(brokers.map((b) => b.stop()));
    await redis?.stop();
  });

  async function gauge(port: number): Promise<number | undefined> {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = /^broker_clock_skew_seconds (\S+)$/m.exec(text);
    return m ? Number(m[1]) : undefined;
  }
  async function until(what: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
    for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) if (await what()) return true;
    return what();
  }
  const lines = (b: BrokerProcess, msg: string) =>
    b
      .output()
      .split('\n')
      .filter((l) => l.includes(msg))
      .map((l) => JSON.parse(l) as { level: number; skewSeconds: number; thresholdSeconds: number });

  it('an instance 120 s ahead: the gauge says about 120 and one warning is logged; once its clock is right, about 0 and one recovery line', async () => {
    await until(async () => Math.abs((await gauge(ahead.metrics)) ?? 0) > 1, 10_000);
    const skew = await gauge(ahead.metrics);
    expect(skew).toBeGreaterThan(119);
    expect(skew).toBeLessThan(121);
    expect(await until(() => lines(ahead.broker, SKEWED).length > 0, 5000)).toBe(true);
    const [warning] = lines(ahead.broker, SKEWED);
    expect(warning).toMatchObject({ level: 40, thresholdSeconds: 15 });
    expect(warning.skewSeconds).toBeGreaterThan(119);

    // Several samples later (one every 10 s) there is still the one warning, not one per sample.
    ahead.broker.child.kill('SIGUSR2');
    expect(await until(() => lines(ahead.broker, RECOVERED).length > 0, 15_000)).toBe(true);
    expect(Math.abs((await gauge(ahead.metrics))!)).toBeLessThan(1);
    expect(lines(ahead.broker, SKEWED)).toHaveLength(1);
    expect(lines(ahead.broker, RECOVERED)).toHaveLength(1);
  }, 60_000);

  it('an instance on the right time: the gauge says about 0 and nothing is logged', async () => {
    await until(async () => (await gauge(normal.metrics)) !== 0, 5000);
    const skew = await gauge(normal.metrics);
    expect(skew).toBeDefined();
    // A sample was taken (prom-client shows an exact 0 until the first set).
    expect(skew).not.toBe(0);
    expect(Math.abs(skew!)).toBeLessThan(1);
    expect(normal.broker.output()).not.toContain('clock skew');
  }, 30_000);
});
