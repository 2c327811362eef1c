// The long fuzz run (issue 9): 100,000 generated inputs per endpoint against one broker, checking
// no 5xx, no crash, no state change from a rejected request, and memory before and after.
// Usage: node bench/fuzz.ts [runsPerEndpoint] [endpoint name filter]
//   (default 100000 and every endpoint; takes a long time at full size)
import { startFuzzBed } from '../test/fuzz/bed.ts';
import { TARGETS } from '../test/fuzz/endpoints.ts';

const runs = Number(process.argv[2] ?? 100_000);
const only = process.argv[3]?.toLowerCase();
const bed = await startFuzzBed();
const mb = () => Math.round(process.memoryUsage().rss / 1e6);
console.log(`| endpoint | inputs | seconds | RSS before MB | RSS after MB |`);
console.log(`|---|---:|---:|---:|---:|`);
for (const target of TARGETS.filter((t) => !only || t.name.toLowerCase().includes(only))) {
  const before = mb();
  const t0 = performance.now();
  await target.run(bed, runs);
  globalThis.gc?.();
  console.log(`| ${target.name} | ${target.name === 'config loader' ? runs * 5 : runs} | ${((performance.now() - t0) / 1000).toFixed(1)} | ${before} | ${mb()} |`);
}
await bed.close();
