import { StoreUnavailableError } from '../errors.ts';
import type { RedisClient } from './client.ts';

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Waits (at most `timeoutMs`) until the client is ready. Commands are never queued while disconnected,
 * so callers that must not fail just because the connection is still being set up wait here first.
 */
export function whenReady(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  if (client.status === 'end') return Promise.reject(new StoreUnavailableError('redis store is closed'));
  return new Promise((resolve, reject) => {
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new StoreUnavailableError(`redis not ready after ${timeoutMs} ms (status ${client.status})`));
    }, timeoutMs);
    client.once('ready', onReady);
  });
}

export interface Guard {
  /** Runs redis commands; any failure (connection, timeout, server error) becomes StoreUnavailableError. */
  <T>(op: () => Promise<T>): Promise<T>;
}

/**
 * Until the first successful connection, commands wait for it (bounded), so a store used right after
 * opening does not fail spuriously. Afterwards they fail immediately while disconnected: fail fast, never hang.
 */
export function createGuard(client: RedisClient, waitMs: number): Guard {
  let everReady = client.status === 'ready';
  client.once('ready', () => {
    everReady = true;
  });

  return async <T>(op: () => Promise<T>): Promise<T> => {
    try {
      if (!everReady) await whenReady(client, waitMs);
      return await op();
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw err;
      throw new StoreUnavailableError(`redis store unavailable: ${messageOf(err)}`, { cause: err });
    }
  };
}
