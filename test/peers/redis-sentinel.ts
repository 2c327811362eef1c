import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './ports.ts';

export { redisAvailable } from './redis.ts';

// A real Sentinel group on loopback: one primary, one or more replicas and three sentinels, all
// `redis-server` processes (`--sentinel` for the sentinels), for failover and split-brain tests. Every
// process can be paused (SIGSTOP), resumed and killed (SIGKILL) by the test. With `relay: true` the
// first primary is reached through a small TCP relay in this process, so a test can hold replication back
// (the primary keeps acknowledging writes the replicas never see), which makes the asynchronous
// replication loss deterministic instead of a race.

export const MASTER_NAME = 'brokermaster';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RedisProcess {
  readonly port: number;
  readonly alive: boolean;
  /** SIGSTOP: the process keeps its sockets open but answers nothing (a hung host or a partition). */
  pause(): void;
  resume(): void;
  /** SIGKILL: gone at once, nothing flushed. */
  kill(): Promise<void>;
  /** Starts it again on the same port with these extra arguments (no data: tests run without persistence). */
  restart(extraArgs?: string[]): Promise<void>;
  /** A short-lived admin connection; the caller disconnects it. */
  admin(): Redis;
}

export interface SentinelGroup {
  /** redis+sentinel://127.0.0.1:<s1>,…/brokermaster */
  readonly url: string;
  /** Data nodes; [0] is the first primary. */
  readonly nodes: RedisProcess[];
  readonly sentinels: RedisProcess[];
  /** The node every sentinel names as primary and which says it is one, or undefined while they disagree. */
  primary(): Promise<RedisProcess | undefined>;
  /** Polls until a primary other than `old` is named by every reachable sentinel and reports role master. */
  waitForNewPrimary(old: RedisProcess, withinMs?: number): Promise<RedisProcess>;
  /** SENTINEL FAILOVER: a planned failover, no agreement needed (it does not wait for replicas to catch up). Returns once accepted. */
  failover(): Promise<void>;
  /**
   * SENTINEL DEBUG on every sentinel: its internal periods (ms), e.g. tilt-period. A sentinel that was
   * paused sees the jump in its clock and stays passive (TILT) for 30 s by default.
   */
  tune(periods: Record<string, number>): Promise<void>;
  /** Relay only: replicas stop receiving the first primary's stream (held, not delivered; dropped if a side closes). */
  holdReplication(): void;
  releaseReplication(): void;
  /** Waits until the primary sees `count` replicas online. */
  waitForReplicas(count: number, withinMs?: number): Promise<void>;
  /** The sentinels' log files, for a test's failure message. */
  logs(): string;
  stop(): Promise<void>;
}

export interface SentinelGroupOptions {
  replicas?: number;
  relay?: boolean;
  /** Sentinel down-after-milliseconds. */
  downAfterMs?: number;
  /** Extra arguments for every data node (not sentinels). */
  serverArgs?: string[];
}

function probe(port: number): Redis {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, commandTimeout: 1000, connectTimeout: 1000 });
  r.on('error', () => {});
  return r;
}

async function until<T>(what: string, withinMs: number, check: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`redis-sentinel peer: ${what} not reached within ${withinMs} ms`);
    await sleep(50);
  }
}

async function answers(port: number): Promise<boolean> {
  const r = probe(port);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } finally {
    r.disconnect();
  }
}

type Managed = RedisProcess & { start(): Promise<void> };

function redisProcess(port: number, dir: string, argsFor: (extra: string[]) => string[], initialExtra: string[]): Managed {
  let child: ChildProcess | undefined;
  let extra = initialExtra;
  const alive = () => child !== undefined && child.exitCode === null && child.signalCode === null;

  async function start(): Promise<void> {
    child = spawn('redis-server', argsFor(extra), { stdio: 'ignore', cwd: dir });
    await until(`redis on ${port}`, 10_000, () => answers(port));
  }

  const proc: Managed = {
    port,
    get alive() {
      return alive();
    },
    pause() {
      if (alive()) child!.kill('SIGSTOP');
    },
    resume() {
      if (alive()) child!.kill('SIGCONT');
    },
    async kill() {
      const c = child;
      if (!c || !alive()) return;
      await new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.kill('SIGKILL');
      });
    },
    async restart(extraArgs) {
      await proc.kill();
      if (extraArgs) extra = extraArgs;
      await start();
    },
    admin() {
      const r = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, commandTimeout: 2000, retryStrategy: () => null });
      r.on('error', () => {});
      return r;
    },
    start,
  };
  return proc;
}

/**
 * A relay in front of the first primary: everyone — replicas, sentinels, clients — reaches it through
 * here, so the sentinels' view of the replicas' configuration stays consistent (a replica replicating from
 * an address the sentinels do not know as the primary gets "fixed" by them). Connections that start
 * replication (the replica sends PSYNC) are told apart, and holding stops the primary's stream on those
 * only: clients and sentinels are served as before.
 */
function relayTo(targetPort: number): { port: Promise<number>; hold(): void; release(): void; close(): void } {
  const pairs = new Set<{ up: Socket; down: Socket; replication: boolean }>();
  let held = false;
  const server: Server = createServer((down) => {
    const up = connect(targetPort, '127.0.0.1');
    const pair = { up, down, replication: false };
    pairs.add(pair);
    // Either side closing tears down the other without flushing: held data is lost, as on a real link.
    const end = () => {
      pairs.delete(pair);
      up.destroy();
      down.destroy();
    };
    up.on('data', (d) => down.write(d));
    down.on('data', (d) => {
      if (!pair.replication && d.includes('PSYNC')) {
        pair.replication = true;
        if (held) up.pause();
      }
      up.write(d);
    });
    up.on('close', end).on('error', end);
    down.on('close', end).on('error', end);
  });
  const port = new Promise<number>((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : 0);
    });
  });
  const replication = () => [...pairs].filter((p) => p.replication);
  return {
    port,
    hold() {
      held = true;
      for (const p of replication()) p.up.pause();
    },
    release() {
      held = false;
      for (const p of replication()) p.up.resume();
    },
    close() {
      for (const p of pairs) {
        p.up.destroy();
        p.down.destroy();
      }
      server.close();
    },
  };
}

export async function startSentinelGroup(options: SentinelGroupOptions = {}): Promise<SentinelGroup> {
  const replicaCount = options.replicas ?? 2;
  const downAfter = options.downAfterMs ?? 1000;
  const root = mkdtempSync(join(tmpdir(), 'broker-sentinel-group-'));
  const nodes: Managed[] = [];
  const sentinels: Managed[] = [];
  const relays: ReturnType<typeof relayTo>[] = [];
  // The port the sentinels know the first primary by: with a relay, the relay's.
  let primaryAddress = 0;
  const sentinelDirs: string[] = [];

  const dataArgs = (port: number, dir: string) => (extra: string[]) => [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
    // Full resyncs after a failover start at once instead of after the default 5 s gathering delay.
    '--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0',
    ...(options.serverArgs ?? []), ...extra,
  ];

  try {
    const primaryPort = await freePort();
    const mk = (name: string) => {
      const d = join(root, name);
      mkdirSync(d);
      return d;
    };
    const primaryDir = mk('node0');
    const primary = redisProcess(primaryPort, primaryDir, dataArgs(primaryPort, primaryDir), []);
    nodes.push(primary);
    await primary.start();

    primaryAddress = primaryPort;
    if (options.relay) {
      const relay = relayTo(primaryPort);
      relays.push(relay);
      primaryAddress = await relay.port;
    }
    for (let i = 0; i < replicaCount; i++) {
      const upstream = primaryAddress;
      const port = await freePort();
      const dir = mk(`node${i + 1}`);
      const node = redisProcess(port, dir, dataArgs(port, dir), ['--replicaof', '127.0.0.1', String(upstream)]);
      nodes.push(node);
      await node.start();
    }
    const group = groupOf();
    await group.waitForReplicas(replicaCount, 15_000);

    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const dir = mk(`sentinel${i}`);
      sentinelDirs.push(dir);
      const conf = join(dir, 'sentinel.conf');
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `logfile ${join(dir, 'sentinel.log')}`,
          `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${primaryAddress} 2`,
          `sentinel down-after-milliseconds ${MASTER_NAME} ${downAfter}`,
          // A failover that stalls is retried after twice this, not after the default six minutes.
          `sentinel failover-timeout ${MASTER_NAME} 4000`,
          `sentinel parallel-syncs ${MASTER_NAME} ${replicaCount}`,
          '',
        ].join('\n'),
      );
      const s = redisProcess(port, dir, () => [conf, '--sentinel'], []);
      sentinels.push(s);
      await s.start();
    }
    // Ready when every sentinel knows the other two (needed to agree on a failover) and every replica.
    await until('sentinels to discover each other and the replicas', 30_000, async () => {
      for (const s of sentinels) {
        const r = probe(s.port);
        try {
          await r.connect();
          const fields = (await r.call('SENTINEL', 'MASTER', MASTER_NAME)) as string[];
          const get = (k: string) => Number(fields[fields.indexOf(k) + 1]);
          if (get('num-other-sentinels') < 2 || get('num-slaves') < replicaCount) return false;
        } finally {
          r.disconnect();
        }
      }
      return true;
    });
    return group;
  } catch (err) {
    await stopAll();
    throw err;
  }

  async function stopAll(): Promise<void> {
    for (const r of relays) r.close();
    await Promise.all([...sentinels, ...nodes].map((p) => p.kill()));
    rmSync(root, { recursive: true, force: true });
  }

  async function named(port: number): Promise<number | undefined> {
    const r = probe(port);
    try {
      await r.connect();
      const addr = (await r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string] | null;
      return addr ? Number(addr[1]) : undefined;
    } finally {
      r.disconnect();
    }
  }

  async function role(port: number): Promise<string | undefined> {
    const r = probe(port);
    try {
      await r.connect();
      return String(((await r.call('ROLE')) as unknown[])[0]);
    } finally {
      r.disconnect();
    }
  }

  function groupOf(): SentinelGroup {
    return {
      get url() {
        return `redis+sentinel://${sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/${MASTER_NAME}`;
      },
      nodes,
      sentinels,
      async primary() {
        const views = await Promise.all(sentinels.filter((s) => s.alive).map((s) => named(s.port).catch(() => undefined)));
        if (views.length === 0 || views.some((v) => v !== views[0])) return undefined;
        const node = nodes.find((n) => n.port === views[0] || (n === nodes[0] && views[0] === primaryAddress));
        if (!node || (await role(node.port).catch(() => undefined)) !== 'master') return undefined;
        return node;
      },
      async waitForNewPrimary(old, withinMs = 30_000) {
        return until('a new primary', withinMs, async () => {
          const p = await this.primary();
          return p && p !== old ? p : undefined;
        }).catch((err: Error) => {
          throw new Error(`${err.message}\n${this.logs()}`);
        });
      },
      async failover() {
        // Refused while the previous failover is still reconfiguring replicas (INPROG) or while no replica is
        // fit yet (NOGOODSLAVE): retried, as an operator would.
        await until('SENTINEL FAILOVER accepted', 30_000, async () => {
          const r = probe(sentinels[0].port);
          try {
            await r.connect();
            return (await r.call('SENTINEL', 'FAILOVER', MASTER_NAME)) === 'OK';
          } finally {
            r.disconnect();
          }
        });
      },
      async tune(periods) {
        for (const s of sentinels) {
          const r = probe(s.port);
          try {
            await r.connect();
            await r.call('SENTINEL', 'DEBUG', ...Object.entries(periods).flatMap(([k, v]) => [k, String(v)]));
          } finally {
            r.disconnect();
          }
        }
      },
      holdReplication() {
        if (relays.length === 0) throw new Error('holdReplication needs relay: true');
        for (const r of relays) r.hold();
      },
      releaseReplication() {
        for (const r of relays) r.release();
      },
      async waitForReplicas(count, withinMs = 15_000) {
        await until(`${count} replica(s) online`, withinMs, async () => {
          const p = (await this.primary().catch(() => undefined)) ?? (sentinels.length === 0 ? nodes[0] : undefined);
          if (!p) return false;
          const r = probe(p.port);
          try {
            await r.connect();
            const info = await r.info('replication');
            return (info.match(/^slave\d+:.*state=online/gm) ?? []).length >= count;
          } finally {
            r.disconnect();
          }
        });
      },
      logs() {
        return sentinelDirs.map((d) => `--- ${d}\n${existsSync(join(d, 'sentinel.log')) ? readFileSync(join(d, 'sentinel.log'), 'utf8') : ''}`).join('\n');
      },
      stop: stopAll,
    };
  }
}
