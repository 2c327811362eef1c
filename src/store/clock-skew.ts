import type { Store } from './contracts.ts';
import type { RedisStore } from './redis/index.ts';

// Instances judge each other's codes, tokens and replay markers by their own clocks (iat/exp with the
// OP's clock tolerance, code and jti lifetimes). A node whose clock drifts fails or accepts differently
// from its peers without saying why, so each instance compares its clock with the one clock they all
// share: the store's. With SQLite there is one process and nothing to compare.

export interface ClockSkewWatch {
  /** This instance's clock minus the store's, in seconds (positive: ahead); undefined before the first sample. */
  readonly seconds: number | undefined;
  /** Takes one sample now; resolves undefined when the store did not answer. */
  check(): Promise<number | undefined>;
  stop(): void;
}

export interface ClockSkewOptions {
  /** |skew| above this is reported once through onChange(true), and once more through onChange(false) when it is back. */
  thresholdSeconds: number;
  intervalMs?: number;
  /** After a sample the store did not answer (still connecting, or down), try again this soon. */
  retryMs?: number;
  onSample?: (seconds: number) => void;
  onChange?: (skewed: boolean, seconds: number) => void;
}

/** The store's clock in epoch milliseconds, or undefined when the store has no clock to compare with (SQLite). */
export function storeClock(store: Store): (() => Promise<number>) | undefined {
  if (store.kind !== 'redis') return undefined;
  const client = (store as RedisStore).redis;
  if (typeof client?.time !== 'function') return undefined;
  return async () => {
    const [seconds, micros] = await client.time();
    return Number(seconds) * 1000 + Number(micros) / 1000;
  };
}

export function watchClockSkew(readStoreTime: () => Promise<number>, options: ClockSkewOptions): ClockSkewWatch {
  const intervalMs = options.intervalMs ?? 10_000;
  const retryMs = options.retryMs ?? 1000;
  let seconds: number | undefined;
  let skewed = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  async function check(): Promise<number | undefined> {
    // Date.now is the clock every time check in the broker, oidc-provider and jose reads. The store's
    // reading is taken half-way through the round trip, so a slow answer does not look like skew.
    const before = Date.now();
    let storeMs: number;
    try {
      storeMs = await readStoreTime();
    } catch {
      return undefined;
    }
    const after = Date.now();
    const sample = ((before + after) / 2 - storeMs) / 1000;
    if (stopped) return sample;
    seconds = sample;
    options.onSample?.(sample);
    const now = Math.abs(sample) > options.thresholdSeconds;
    if (now !== skewed) {
      skewed = now;
      options.onChange?.(now, sample);
    }
    return sample;
  }

  function schedule(delay: number): void {
    timer = setTimeout(() => {
      void check().then((s) => {
        if (!stopped) schedule(s === undefined ? retryMs : intervalMs);
      });
    }, delay);
    timer.unref();
  }
  schedule(0);

  return {
    get seconds() {
      return seconds;
    },
    check,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
