import type { CircuitBreakerConfig } from '../config/upstream-common.ts';
import { UpstreamUnavailableError, type Connector } from './upstream.ts';

// A circuit breaker around one upstream connector. Only UpstreamUnavailableError (the upstream timed out,
// refused, answered 5xx or garbage) counts; a refused login (UpstreamAuthError, whatever an attacker put
// on the callback) neither counts nor resets, so nobody can open the circuit for everyone, or hold it shut.
//
//   closed     every login goes through; `failureThreshold` outages in a row open the circuit. Only a
//              verified login resets the count: a begin that needs no network call proves nothing.
//   open       for `openSeconds` nothing is sent upstream: begin and complete fail at once with
//              UpstreamUnavailableError (the "not responding" page), so nobody is redirected to a dead
//              upstream or left waiting for a timeout.
//   half-open  one login is let through as the trial (its begin and later its callback); the others still
//              fail fast. A verified login closes the circuit, an outage opens it again. A trial that
//              never comes back (the user walked away) frees the slot after another `openSeconds`.
//
// State lives in each broker instance's memory, on purpose: every instance finds out for itself within a
// few requests; sharing it through the store would add a store round trip to every login and tie the
// breaker to the store's own health; and an upstream can be unreachable from one instance's network and
// fine from another's. Each connector has its own state and no lock or queue is shared, so a hanging
// upstream holds up nobody else's logins.

export type CircuitState = 'closed' | 'open' | 'half-open';

/** The /metrics gauge value of each state. */
export const CIRCUIT_GAUGE: Record<CircuitState, number> = { closed: 0, 'half-open': 1, open: 2 };

export interface CircuitChange {
  upstream: string;
  from: CircuitState;
  to: CircuitState;
  reason: string;
}

export interface CircuitEvents {
  /** Called once per state change. */
  onChange?(change: CircuitChange): void;
  /** A login refused without trying the upstream. */
  onRejected?(upstream: string): void;
}

export interface GuardedConnector extends Connector {
  circuitState(): CircuitState;
}

export function withCircuitBreaker(inner: Connector, settings: CircuitBreakerConfig, events: CircuitEvents = {}, now: () => number = Date.now): GuardedConnector {
  const openMs = settings.openSeconds * 1000;
  const coolDownOver = `${settings.openSeconds} s cool-down over`;
  let state: CircuitState = 'closed';
  let failures = 0;
  let openedAt = 0;
  /** When the half-open trial went through (undefined: the slot is free). */
  let trialSince: number | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;

  function move(to: CircuitState, reason: string): void {
    const from = state;
    state = to;
    clearTimeout(timer);
    timer = undefined;
    trialSince = undefined;
    if (to === 'open') {
      openedAt = now();
      // Half-open on time even with nobody trying, so /metrics and the log tell the truth. Not through
      // current(): a timer may fire a millisecond before Date.now() says the time is up.
      timer = setTimeout(() => move('half-open', coolDownOver), openMs);
      timer.unref();
    }
    if (to === 'closed') failures = 0;
    events.onChange?.({ upstream: inner.id, from, to, reason });
  }

  function current(): CircuitState {
    if (state === 'open' && now() - openedAt >= openMs) move('half-open', coolDownOver);
    return state;
  }

  function failed(reason: string): void {
    if (state === 'half-open') return move('open', `trial failed: ${reason}`);
    // A call that was already under way when the circuit opened: the cool-down is not extended.
    if (state === 'open') return;
    failures += 1;
    if (failures >= settings.failureThreshold) move('open', `${failures} consecutive failures, the last: ${reason}`);
  }

  function succeeded(): void {
    failures = 0;
    if (state !== 'closed') move('closed', 'a login through the upstream succeeded');
  }

  /** Nothing learned (a refused login, a local error): the trial slot is free again. */
  function inconclusive(): void {
    if (state === 'half-open') trialSince = undefined;
  }

  function reject(): never {
    events.onRejected?.(inner.id);
    const until = state === 'open' ? openedAt + openMs : (trialSince ?? now()) + openMs;
    throw new UpstreamUnavailableError(`${inner.id}: circuit ${state}, the upstream was not tried`, Math.max(1, Math.ceil((until - now()) / 1000)));
  }

  async function guarded<T>(call: () => Promise<T>, verifies: boolean): Promise<T> {
    try {
      const result = await call();
      if (verifies) succeeded();
      return result;
    } catch (err) {
      if (err instanceof UpstreamUnavailableError) failed(err.reason);
      else inconclusive();
      throw err;
    }
  }

  return {
    id: inner.id,
    displayName: inner.displayName,
    kind: inner.kind,
    ...(inner.routes && { routes: inner.routes }),
    // A re-check reaches the certificate's responders, not the upstream's login path: not guarded.
    ...(inner.sessionRecheck && { sessionRecheck: inner.sessionRecheck }),
    circuitState: current,
    async begin(ctx, request) {
      const s = current();
      if (s === 'open') reject();
      if (s === 'half-open') {
        if (trialSince !== undefined && now() - trialSince < openMs) reject();
        // Claimed before the first await: two logins arriving together cannot both be the trial.
        trialSince = now();
      }
      return guarded(() => inner.begin(ctx, request), false);
    },
    async complete(ctx, tx) {
      // Half-open lets callbacks through: each is a login begun earlier, and its outcome is the news.
      if (current() === 'open') reject();
      return guarded(() => inner.complete(ctx, tx), true);
    },
  };
}

export function isGuarded(c: Connector): c is GuardedConnector {
  return 'circuitState' in c && typeof c.circuitState === 'function';
}
