import { describe, it, beforeAll, afterAll, expect } from 'vitest';
import { startFuzzBed, type FuzzBed } from './bed.ts';
import { TARGETS } from './endpoints.ts';

// A small sample in the suite; `node bench/fuzz.ts` runs 100,000 inputs per endpoint.
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);

describe('fuzzing the endpoints (no 5xx, no state change on rejection)', () => {
  let bed: FuzzBed;
  beforeAll(async () => {
    bed = await startFuzzBed();
  });
  afterAll(async () => {
    await bed?.close();
  });

  for (const target of TARGETS) {
    it(target.name, async () => {
      await target.run(bed, RUNS);
      expect((await fetch(`${bed.base}/healthz`)).status).toBe(200);
    }, 180_000);
  }
});
