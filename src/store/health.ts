import type { Store } from './contracts.ts';

// Watches the store so stateful endpoints can refuse at once (503) while it is down, and /readyz can
// say so, without each request waiting for a timeout. It recovers by itself when a ping succeeds.

export interface StoreHealth {
  readonly up: boolean;
  check(): Promise<boolean>;
  stop(): void;
}

/** A ping slower than this counts as down: a store that cannot answer in time cannot serve requests either. */
const PING_DEADLINE_MS = 300;

export function watchStore(store: Store, intervalMs = 500, onChange?: (up: boolean) => void, onLatency?: (seconds: number) => void): StoreHealth {
  let up = true;
  let stopped = false;
  async function check(): Promise<boolean> {
    let ok: boolean;
    let timer: NodeJS.Timeout | undefined;
    const start = performance.now();
    try {
      await Promise.race([
        store.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('ping deadline')), PING_DEADLINE_MS);
        }),
      ]);
      ok = true;
      onLatency?.((performance.now() - start) / 1000);
    } catch {
      ok = false;
    } finally {
      clearTimeout(timer);
    }
    if (ok !== up && !stopped) {
      up = ok;
      onChange?.(ok);
    }
    return ok;
  }
  const timer = setInterval(() => void check(), intervalMs);
  timer.unref();
  return {
    get up() {
      return up;
    },
    check,
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
