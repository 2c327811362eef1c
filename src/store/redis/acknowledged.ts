import type { Redis } from 'ioredis';
import { StoreUnavailableError } from '../errors.ts';
import { shutdown, type RedisClient } from './client.ts';
import { createGuard, createWhenReady, type Guard } from './guard.ts';

// Replication is asynchronous: a primary that dies (or is cut off and then demoted) can take its last
// writes with it. For most state that fails safe (a code or session that vanishes is refused), but for
// some writes the loss is itself the attack: a consumed code, a remembered `jti` or a revocation that
// disappears lets the same thing be accepted twice (catalogue HA-04, HA-11). Those writes go through
// here. With `waitReplicas > 0` they use their own connection and are followed by
// `WAIT waitReplicas waitTimeoutMs`; too few acknowledgements and the write is reported as failed
// (StoreUnavailableError, so 503), never as done.
//
// WAIT counts the writes of its own connection (and, the replication stream being one ordered log,
// everything the primary executed before them), so the acknowledged writes and their WAIT must share a
// connection. That connection is separate from the shared one because WAIT blocks it: a lagging replica
// then holds up acknowledged writes only, not reads.

export interface AcknowledgedWrites {
  readonly client: RedisClient;
  readonly guard: Guard;
  /** Call before writing on `client`; hand the result to `ack`. */
  mark(): number;
  /**
   * Call after a write on `client` has returned: resolves once `waitReplicas` replicas hold it, throws
   * otherwise (the write is then of unknown fate: on the primary, maybe on replicas later, maybe lost).
   * Resolves at once when WAIT is off.
   */
  ack(since: number): Promise<void>;
  close(timeoutMs: number): Promise<void>;
}

export interface AcknowledgedWritesOptions {
  waitReplicas: number;
  waitTimeoutMs: number;
  commandTimeoutMs: number;
  onError?: (err: Error) => void;
}

/** WAIT off: the shared connection, nothing to wait for. */
export function unacknowledged(client: RedisClient, guard: Guard): AcknowledgedWrites {
  return { client, guard, mark: () => 0, ack: () => Promise.resolve(), close: () => Promise.resolve() };
}

export function acknowledgedWrites(shared: RedisClient, options: AcknowledgedWritesOptions): AcknowledgedWrites {
  const { waitReplicas, waitTimeoutMs, commandTimeoutMs } = options;
  // The command timeout leaves room for the WAIT itself (a timed-out WAIT would also fail, but would
  // leave the connection blocked behind it).
  const writer = (shared as Redis).duplicate({ commandTimeout: commandTimeoutMs + waitTimeoutMs, socketTimeout: 2 * commandTimeoutMs + waitTimeoutMs });
  writer.on('error', options.onError ?? (() => {}));
  const writerReady = createWhenReady(writer);
  const writerGuard = createGuard(writer, writerReady, commandTimeoutMs);
  // Once a WAIT has come back short the replicas are behind or away. Writes would then queue behind the
  // next WAIT on this connection, each paying up to waitTimeoutMs: instead, while one WAIT probes the
  // replicas, other acknowledged writes fail at once (before writing). The probe that succeeds ends it.
  let short = false;
  let waiting = 0;
  const probing = () => short && waiting > 0;
  const refused = () => new StoreUnavailableError('replicas are not acknowledging writes; refused without waiting');
  const guard: Guard = (op) =>
    writerGuard(async () => {
      if (probing()) throw refused();
      // Wait (bounded) for this connection too: it may lag the shared one after a reconnect.
      await writerReady(commandTimeoutMs);
      return op();
    });

  // A WAIT issued on a new connection counts none of the old one's writes and would answer at once: a
  // write whose connection has closed since `mark` is refused instead.
  let connection = 0;
  writer.on('close', () => {
    connection++;
  });
  const changed = () => new StoreUnavailableError('redis connection changed before the write was acknowledged by the replicas');

  // Group commit: one WAIT covers every write whose reply arrived before it was sent, so writes that
  // finish in the same turn of the event loop share one round trip to the replicas.
  let scheduled: { of: number; done: Promise<void> } | undefined;
  function ack(since: number): Promise<void> {
    if (since !== connection) return Promise.reject(changed());
    if (probing()) return Promise.reject(refused());
    if (scheduled === undefined) {
      const of = connection;
      const done = new Promise<void>((resolve, reject) => {
        setImmediate(() => {
          scheduled = undefined;
          if (of !== connection) return reject(changed());
          waiting++;
          writer.wait(waitReplicas, waitTimeoutMs).then(
            (acked) => {
              waiting--;
              short = acked < waitReplicas;
              if (connection !== of) return reject(changed());
              if (!short) return resolve();
              reject(new StoreUnavailableError(`write acknowledged by ${acked} of ${waitReplicas} replica(s) within ${waitTimeoutMs} ms; it may still be present on the primary`));
            },
            (err: unknown) => {
              waiting--;
              short = true;
              reject(err);
            },
          );
        });
      });
      scheduled = { of, done };
    }
    // A WAIT scheduled before a reconnect fails anyway; so does this write's.
    if (scheduled.of !== since) return Promise.reject(changed());
    // One error per caller, made here, so its stack names the operation that was not acknowledged.
    return scheduled.done.catch((err: unknown) => {
      throw new StoreUnavailableError(err instanceof Error ? err.message : String(err), { cause: err });
    });
  }

  return {
    client: writer,
    guard,
    mark: () => connection,
    ack,
    close: (timeoutMs) => shutdown(writer, timeoutMs),
  };
}
