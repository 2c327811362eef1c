import { describe, it, beforeAll, afterAll, expect } from 'vitest';
import { clientKey, startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { TARGETS } from './endpoints.ts';

// A small sample in the suite; `node bench/fuzz.ts` runs 100,000 inputs per endpoint.
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);

describe('fuzzing the endpoints (no 5xx, no state change on rejection)', () => {
  let tb: TestBroker;
  let dbFile: string;
  beforeAll(async () => {
    tb = await startTestBroker({ svcKey: await clientKey(), extra: { rateLimits: { tokenPerIp: 0, tokenPerClient: 0, loginPerIp: 0 } } });
    dbFile = tb.broker.config.store.slice('sqlite:'.length);
  });
  afterAll(async () => {
    await tb?.close();
  });

  for (const target of TARGETS) {
    it(target.name, async () => {
      await target.run(tb, dbFile, RUNS);
      expect((await fetch(`${tb.base}/healthz`)).status).toBe(200);
    }, 120_000);
  }
});
