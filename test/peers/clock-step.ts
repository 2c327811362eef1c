// Preloaded with --import like clock-skew.ts (CLOCK_SKEW_SECONDS), but SIGUSR2 puts the clock right
// again, as NTP does on a node that had drifted: for tests of what the broker says on recovery.
let skewMs = Number(process.env.CLOCK_SKEW_SECONDS ?? 0) * 1000;
const realNow = Date.now.bind(Date);
Date.now = () => realNow() + skewMs;
process.on('SIGUSR2', () => {
  skewMs = 0;
});
