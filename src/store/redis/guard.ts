import { StoreUnavailableError } from '../errors.ts';
import type { RedisClient } from './client.ts';

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Resolves once the client is ready, or rejects with StoreUnavailableError after `timeoutMs`. */
export type WhenReady = (timeoutMs: number) => Promise<void>;

/**
 * Commands are never queued while disconnected, so callers that should not fail merely because the
 * connection is still being set up wait here first. All waiters share one 'ready' listener, so a burst of
 * requests during a reconnect does not pile listeners onto the client.
 */
export function createWhenReady(client: RedisClient): WhenReady {
  let next: Promise<void> | undefined;
  return (timeoutMs) => {
    if (client.status === 'ready') return Promise.resolve();
    if (client.status === 'end') return Promise.reject(new StoreUnavailableError('redis store is closed'));
    next ??= new Promise<void>((resolve) => {
      client.once('ready', () => {
        next = undefined;
        resolve();
      });
    });
    const ready = next;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new StoreUnavailableError(`redis not ready after ${timeoutMs} ms (status ${client.status})`)), timeoutMs);
      void ready.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  };
}

export interface Guard {
  /** Runs redis commands; any failure (connection, timeout, server error) becomes StoreUnavailableError. */
  <T>(op: () => Promise<T>): Promise<T>;
}

/**
 * Until the first successful connection, commands wait for it (bounded), so a store used right after
 * opening does not fail spuriously. Afterwards they fail immediately while disconnected: fail fast, never hang.
 */
export function createGuard(client: RedisClient, whenReady: WhenReady, waitMs: number): Guard {
  let everReady = client.status === 'ready';
  client.once('ready', () => {
    everReady = true;
  });

  return async <T>(op: () => Promise<T>): Promise<T> => {
    try {
      if (!everReady) await whenReady(waitMs);
      return await op();
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw err;
      throw new StoreUnavailableError(`redis store unavailable: ${messageOf(err)}`, { cause: err });
    }
  };
}
