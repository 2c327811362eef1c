// The long fuzz run (issue 9): 100,000 generated inputs per endpoint against one broker, checking
// no 5xx, no crash, no state change from a rejected request, and memory before and after.
// Usage: node bench/fuzz.ts [runsPerEndpoint] [endpoint name filter]
//   (default 100000 and every endpoint; takes a long time at full size)
// Inputs run in chunks of 5,000 (each chunk a fresh fast-check seed) with a progress line after each,
// so a run stopped early still says how far every endpoint got.
import { startFuzzBed } from '../test/fuzz/bed.ts';
import { TARGETS } from '../test/fuzz/endpoints.ts';

const runs = Number(process.argv[2] ?? 100_000);
const only = process.argv[3]?.toLowerCase();
const CHUNK = 5_000;
const bed = await startFuzzBed();
const mb = () => Math.round(process.memoryUsage().rss / 1e6);
console.log(`| endpoint | inputs | seconds | RSS before MB | RSS after MB |`);
console.log(`|---|---:|---:|---:|---:|`);
for (const target of TARGETS.filter((t) => !only || t.name.toLowerCase().includes(only))) {
  const before = mb();
  const t0 = performance.now();
  for (let done = 0; done < runs; ) {
    const n = Math.min(CHUNK, runs - done);
    await target.run(bed, n);
    done += n;
    globalThis.gc?.();
    if (done < runs) console.error(`${target.name}: ${done} inputs, ${((performance.now() - t0) / 1000).toFixed(0)} s, RSS ${mb()} MB`);
  }
  console.log(`| ${target.name} | ${target.name === 'config loader' ? runs * 5 : runs} | ${((performance.now() - t0) / 1000).toFixed(1)} | ${before} | ${mb()} |`);
}
await bed.close();
