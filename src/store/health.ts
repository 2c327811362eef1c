import type { Store } from './contracts.ts';

// Watches the store so stateful endpoints can refuse at once (503) while it is down, and /readyz can
// say so, without each request waiting for a timeout. It recovers by itself when a ping succeeds.

export interface StoreHealth {
  readonly up: boolean;
  check(): Promise<boolean>;
  stop(): void;
}

export function watchStore(store: Store, intervalMs = 500, onChange?: (up: boolean) => void): StoreHealth {
  let up = true;
  let stopped = false;
  async function check(): Promise<boolean> {
    let ok: boolean;
    try {
      await store.ping();
      ok = true;
    } catch {
      ok = false;
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
