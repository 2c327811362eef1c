import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { Pool } from 'undici';

// The two load engines and the per-core CPU accounting.
//   cannon  autocannon (programmatic), keep-alive connections, pipelining 1: every stateless
//           single-request scenario, for a duration or at a fixed `overallRate` (the latency-at-80% run).
//   flows   closed-loop virtual users on undici keep-alive connections, for what carries state from
//           one request to the next: logins (many requests, cookies) and refresh-token rotation (each
//           user's next request needs the token its last response rotated in; autocannon resets its
//           per-connection context after every pass over its request list, so it cannot carry that).
//           Each user runs one flow after the other until the deadline; a flow started before the
//           deadline finishes and counts, so no refresh chain is cut mid-flight.

export interface SliceResult {
  seconds: number;
  /** Requests (cannon) or flows (flows). */
  total: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Responses whose body differed from the expected one (introspection: `active` must hold). */
  mismatches: number;
  statusCodes: Record<string, number>;
  latencies: number[];
  /** autocannon's p99 with coordinated-omission correction (fixed-rate runs only). */
  correctedP99?: number;
  /** HTTP requests inside the flows (flows only). */
  httpRequests?: number;
  firstError?: string;
}

export interface CannonOptions {
  port: number;
  connections: number;
  seconds?: number;
  amount?: number;
  overallRate?: number;
  requests: autocannon.Request[];
  expectBody?: string;
  record: boolean;
}

export function cannon(o: CannonOptions): Promise<SliceResult> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    // One fixed request goes in the top-level options: autocannon checks expectBody only there.
    const [only] = o.requests;
    const fixed = o.requests.length === 1 && !only.setupRequest && !only.onResponse;
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${o.port}${fixed ? only.path : ''}`,
        connections: o.connections,
        pipelining: 1,
        ...(o.amount !== undefined ? { amount: o.amount } : { duration: o.seconds ?? 1 }),
        ...(o.overallRate !== undefined && { overallRate: o.overallRate }),
        ...(fixed ? { method: only.method, headers: only.headers, body: only.body as string, ...(o.expectBody !== undefined && { expectBody: o.expectBody }) } : { requests: o.requests }),
        timeout: 10,
      },
      (err, r) => {
        if (err) return reject(err);
        const statusCodes: Record<string, number> = {};
        for (const [code, v] of Object.entries(r.statusCodeStats ?? {})) statusCodes[code] = v.count ?? 0;
        resolve({
          seconds: r.duration,
          total: r.requests.total,
          ok2xx: r['2xx'],
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.timeouts,
          mismatches: r.mismatches ?? 0,
          statusCodes,
          latencies,
          correctedP99: o.overallRate !== undefined ? r.latency.p99 : undefined,
        });
      },
    );
    // autocannon emits (client, statusCode, bytes, responseTimeMs); its typings omit the client.
    if (o.record) (instance as NodeJS.EventEmitter).on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => latencies.push(ms));
  });
}

export interface FlowOptions {
  concurrency: number;
  seconds: number;
  /** One flow of virtual user `vu`; resolves with the number of HTTP requests it made. */
  flow: (vu: number) => Promise<number>;
}

export async function flows(o: FlowOptions): Promise<SliceResult> {
  const latencies: number[] = [];
  let ok = 0;
  let errors = 0;
  let http = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const deadline = start + o.seconds * 1000;
  await Promise.all(
    Array.from({ length: o.concurrency }, async (_, vu) => {
      while (performance.now() < deadline) {
        const t = performance.now();
        try {
          const n = await o.flow(vu);
          http += n;
          ok++;
          latencies.push(performance.now() - t);
        } catch (err) {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        }
      }
    }),
  );
  return {
    seconds: (performance.now() - start) / 1000,
    total: ok + errors,
    ok2xx: ok,
    non2xx: 0,
    errors,
    timeouts: 0,
    mismatches: 0,
    statusCodes: {},
    latencies,
    httpRequests: http,
    firstError,
  };
}

export interface PacedOptions {
  port: number;
  rate: number;
  seconds: number;
  connections: number;
  /** One request: path, headers and body (called at its send time). */
  build: () => { path: string; headers: Record<string, string>; body: string };
}

/**
 * Open-loop load at evenly spaced send times (rate per second), on up to `connections` keep-alive
 * connections (undici Pool; a request waits in its queue when all are busy). Latency runs from the
 * scheduled send time to the end of the response, so queueing anywhere counts (no coordinated
 * omission). autocannon's overallRate is not this: it gives each connection a per-second budget that
 * it spends back to back, closed-loop, from the start of each second.
 */
export async function paced(o: PacedOptions): Promise<SliceResult> {
  const pool = new Pool(`http://127.0.0.1:${o.port}`, { connections: o.connections, pipelining: 1, keepAliveTimeout: 30_000 });
  const latencies: number[] = [];
  const statusCodes: Record<string, number> = {};
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  const n = Math.max(1, Math.round(o.rate * o.seconds));
  const start = performance.now() + 5;
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const due = start + (i * 1000) / o.rate;
    const wait = due - performance.now();
    if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
    const req = o.build();
    inflight.push(
      pool.request({ method: 'POST', path: req.path, headers: req.headers, body: req.body }).then(
        async (res) => {
          await res.body.dump();
          latencies.push(performance.now() - due);
          statusCodes[res.statusCode] = (statusCodes[res.statusCode] ?? 0) + 1;
          if (res.statusCode >= 200 && res.statusCode < 300) ok++;
          else non2xx++;
        },
        () => void errors++,
      ),
    );
  }
  await Promise.all(inflight);
  await pool.close();
  return { seconds: (performance.now() - start) / 1000, total: ok + non2xx + errors, ok2xx: ok, non2xx, errors, timeouts: 0, mismatches: 0, statusCodes, latencies };
}

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

// ---------------------------------------------------------------------------------------------------
// Per-core CPU accounting (Linux /proc/stat): other processes competing for a core

export interface CoreTimes {
  busy: number;
  steal: number;
  total: number;
}

export function coreTimes(core: string): CoreTimes | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`cpu${core} `));
    if (!line) return undefined;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number);
    return { busy: user + nice + system + irq + softirq, steal, total: user + nice + system + idle + iowait + irq + softirq + steal };
  } catch {
    return undefined;
  }
}

/** VmRSS and VmHWM of a process, in bytes (Linux). */
export function processMemory(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}
