import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createPrivateKey, randomUUID, sign as signSync, type JsonWebKey, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import autocannon from 'autocannon';
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { CLIENT_ID, ISSUER, RESOURCE, SCOPE, type ChildMessage, type ParentMessage, type ServerSpec } from './servers/common.ts';
import { compareProfiles, formatSummary, summariseProfile } from './profile-summary.ts';

// `npm run bench`: client_credentials with private_key_jwt and JWT access tokens (ES256), against the
// broker and, in the same run, a bare oidc-provider configured the same way (bench/servers/bare.ts).
//
// Each server runs in its own process pinned to one core (taskset -c 0, libuv threadpool included);
// this driver and autocannon run on another core (taskset -c 1). Every request carries a fresh client
// assertion, pre-signed before any load. All servers are started together and measured in
// alternating slices (bare, broker, … then again in rotated order), so a slow patch of a shared
// machine lands on every server alike; each server's figures aggregate its slices.
// Writes bench/results/<timestamp>.json and bench/results/latest.md.
//
// Environment (all optional):
//   BENCH_DURATION=15       seconds measured per server, split into BENCH_SLICES=10 slices
//   BENCH_WARMUP=3          seconds of warm-up per server before the first slice
//   BENCH_CONNECTIONS=50    keep-alive connections
//   BENCH_SERVERS=bare,broker,provider   which servers (provider = diagnostic, see bench/servers/provider.ts)
//   BENCH_LOG_LEVEL=silent  the broker's log level (info = access log serialised to /dev/null)
//   BENCH_PROFILE=broker    comma list of servers to run under --cpu-prof (a summary is printed)
//   BENCH_CEILING_SECONDS=3 length of the crypto-ceiling loop
//   BENCH_MAX_ASSERTIONS=300000  cap on pre-signed assertions (memory); beyond it they are signed
//                                synchronously on the load generator's core, which is reported

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const RESULTS = join(HERE, 'results');
const SERVER_CORE = '0';
const LOADGEN_CORE = '1';

const env = process.env;
const DURATION = num('BENCH_DURATION', 15);
const SLICES = Math.max(1, Math.round(num('BENCH_SLICES', 10)));
const WARMUP = num('BENCH_WARMUP', 3);
const CONNECTIONS = Math.round(num('BENCH_CONNECTIONS', 50));
const CEILING_SECONDS = num('BENCH_CEILING_SECONDS', 3);
const MAX_ASSERTIONS = Math.round(num('BENCH_MAX_ASSERTIONS', 300_000));
const LOG_LEVEL = env.BENCH_LOG_LEVEL ?? 'silent';
const SERVERS = [...new Set((env.BENCH_SERVERS ?? 'bare,broker,provider').split(',').map((s) => s.trim()).filter(Boolean))] as ServerName[];
const PROFILE = new Set((env.BENCH_PROFILE ?? '').split(',').map((s) => s.trim()).filter(Boolean));

const TARGET_RATIO = 0.85;
const TARGET_GRANTS = 2000;

type ServerName = 'bare' | 'broker' | 'provider';
const LABELS: Record<ServerName, string> = {
  bare: 'bare oidc-provider',
  broker: 'broker',
  provider: 'broker provider, no Koa (diagnostic)',
};
const SCENARIO = 'client_credentials, private_key_jwt, JWT AT (ES256)';

function num(name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return v;
}

const haveTaskset = spawnSync('sh', ['-c', 'command -v taskset'], { stdio: 'ignore' }).status === 0;
const totalCores = cpus().length;
const pinned = haveTaskset && totalCores >= 2;

// Re-run this driver on the load generator's core, so it never competes with the servers' core.
if (pinned && env.BENCH_PINNED !== '1') {
  const r = spawnSync('taskset', ['-c', LOADGEN_CORE, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...env, BENCH_PINNED: '1' },
  });
  process.exit(r.status ?? 1);
}

for (const s of SERVERS) if (!(s in LABELS)) throw new Error(`BENCH_SERVERS: unknown server ${s} (bare, broker, provider)`);

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

// ---------------------------------------------------------------------------------------------------
// Child processes

interface Child {
  name: ServerName;
  proc: ChildProcess;
  port: number;
  dir: string;
  stats(): Promise<Extract<ChildMessage, { type: 'stats' }>>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
function killAll(): void {
  for (const p of live) p.kill('SIGKILL');
}
process.on('exit', killAll);
process.on('SIGINT', () => {
  killAll();
  process.exit(130);
});

function launch(script: string, spec: object, nodeArgs: string[] = [], quietStdout = false): ChildProcess {
  const file = join(HERE, 'servers', script);
  const [cmd, args] = pinned ? ['taskset', ['-c', SERVER_CORE, process.execPath, ...nodeArgs, file]] : [process.execPath, [...nodeArgs, file]];
  const proc = spawn(cmd, args, {
    stdio: ['ignore', quietStdout ? 'ignore' : 'inherit', 'inherit', 'ipc'],
    env: { ...env, BENCH_SPEC: JSON.stringify(spec) },
  });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  return proc;
}

function nextMessage<T extends ChildMessage['type']>(proc: ChildProcess, type: T, timeoutMs: number): Promise<Extract<ChildMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: ChildMessage) => {
      if (m.type !== type) return;
      cleanup();
      resolve(m as Extract<ChildMessage, { type: T }>);
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(new Error(`child exited (code ${code}, signal ${signal}) before sending "${type}"`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`child sent no "${type}" within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      proc.off('message', onMessage);
      proc.off('exit', onExit);
    };
    proc.on('message', onMessage);
    proc.once('exit', onExit);
  });
}

async function startServer(name: ServerName, clientJwk: JWK, profileDir: string | undefined): Promise<Child> {
  const dir = mkdtempSync(join(tmpdir(), `bench-${name}-`));
  const spec: ServerSpec = { store: `sqlite:${join(dir, 'store.db')}`, clientJwk, logLevel: LOG_LEVEL };
  const nodeArgs = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}.cpuprofile`] : [];
  const proc = launch(`${name}.ts`, spec, nodeArgs, LOG_LEVEL !== 'silent');
  const { port } = await nextMessage(proc, 'ready', 30_000);
  return {
    name,
    proc,
    port,
    dir,
    async stats() {
      const reply = nextMessage(proc, 'stats', 5000);
      proc.send({ type: 'stats' } satisfies ParentMessage);
      return reply;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise<void>((r) => proc.once('exit', () => r()));
        proc.send({ type: 'stop' } satisfies ParentMessage);
        const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function cryptoCeiling(): Promise<{ opsPerSecond: number; concurrency: number }> {
  const proc = launch('ceiling.ts', {});
  const result = await nextMessage(proc, 'result', (CEILING_SECONDS + 30) * 1000);
  await new Promise<void>((r) => (proc.exitCode !== null ? r() : proc.once('exit', () => r())));
  return { opsPerSecond: Number(result.opsPerSecond), concurrency: Number(result.concurrency) };
}

// ---------------------------------------------------------------------------------------------------
// Client assertions

const BODY_PREFIX =
  'grant_type=client_credentials' +
  `&client_assertion_type=${encodeURIComponent('urn:ietf:params:oauth:client-assertion-type:jwt-bearer')}` +
  `&resource=${encodeURIComponent(RESOURCE)}` +
  `&scope=${encodeURIComponent(SCOPE)}` +
  '&client_assertion=';
const CLIENT_KID = 'bench-svc-es256';

interface ClientKeys {
  privateKey: CryptoKey;
  keyObject: KeyObject;
  publicJwk: JWK;
}

async function clientKeys(): Promise<ClientKeys> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return {
    privateKey,
    keyObject: createPrivateKey({ key: (await exportJWK(privateKey)) as JsonWebKey, format: 'jwk' }),
    publicJwk: { ...(await exportJWK(publicKey)), kid: CLIENT_KID, alg: 'ES256', use: 'sig' },
  };
}

/**
 * One pool of pre-signed assertions (aud = the common issuer). Each server has its own store, so each
 * walks the pool with its own cursor; past the end, assertions are signed synchronously (counted).
 */
class AssertionPool {
  private readonly keys: ClientKeys;
  private readonly ttl: number;
  private pool: string[] = [];
  private readonly cursors = new Map<string, number>();
  readonly fallbacks = new Map<string, number>();

  constructor(keys: ClientKeys, ttl: number) {
    this.keys = keys;
    this.ttl = ttl;
  }

  private claims(now: number) {
    return { iss: CLIENT_ID, sub: CLIENT_ID, aud: ISSUER, jti: randomUUID(), iat: now, exp: now + this.ttl };
  }

  /** Pre-signs `count` assertions with jose (SignJWT, ES256), in batches. */
  async fill(count: number): Promise<number> {
    const t = performance.now();
    const now = Math.floor(Date.now() / 1000);
    const BATCH = 500;
    for (let i = 0; i < count; i += BATCH) {
      const batch: Promise<string>[] = [];
      for (let j = i; j < Math.min(count, i + BATCH); j++) {
        batch.push(new SignJWT(this.claims(now)).setProtectedHeader({ alg: 'ES256', kid: CLIENT_KID }).sign(this.keys.privateKey));
      }
      for (const a of await Promise.all(batch)) this.pool.push(a);
    }
    return (performance.now() - t) / 1000;
  }

  get size(): number {
    return this.pool.length;
  }

  used(server: string): number {
    return this.cursors.get(server) ?? 0;
  }

  next(server: string): string {
    const i = this.cursors.get(server) ?? 0;
    this.cursors.set(server, i + 1);
    if (i < this.pool.length) return this.pool[i];
    this.fallbacks.set(server, (this.fallbacks.get(server) ?? 0) + 1);
    return this.signNow();
  }

  private signNow(): string {
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const input = `${enc({ alg: 'ES256', kid: CLIENT_KID })}.${enc(this.claims(Math.floor(Date.now() / 1000)))}`;
    const sig = signSync('sha256', Buffer.from(input), { key: this.keys.keyObject, dsaEncoding: 'ieee-p1363' });
    return `${input}.${sig.toString('base64url')}`;
  }
}

// ---------------------------------------------------------------------------------------------------
// Per-core CPU accounting (Linux /proc/stat): other processes competing for the servers' core

interface CoreTimes {
  busy: number;
  steal: number;
  total: number;
}

function coreTimes(core: string): CoreTimes | undefined {
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

// ---------------------------------------------------------------------------------------------------
// Checks and load

interface Check {
  ok: boolean;
  detail: string;
}

async function tokenRequest(port: number, assertion: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: BODY_PREFIX + assertion,
  });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
  } catch {
    return { status: res.status, body: { raw: text.slice(0, 200) } };
  }
}

/** One grant must succeed with an ES256 at+jwt for the resource; replaying its assertion must fail. */
async function sanity(server: ServerName, port: number, pool: AssertionPool): Promise<Check[]> {
  const assertion = pool.next(server);
  const first = await tokenRequest(port, assertion);
  let ok = first.status === 200 && typeof first.body.access_token === 'string';
  let detail = `grant: ${first.status}`;
  if (ok) {
    const at = first.body.access_token as string;
    const header = decodeProtectedHeader(at);
    const claims = decodeJwt(at);
    ok = header.alg === 'ES256' && header.typ === 'at+jwt' && claims.aud === RESOURCE && claims.client_id === CLIENT_ID && claims.iss === ISSUER;
    detail += ` ${header.alg} ${header.typ} aud=${String(claims.aud)} scope=${String(claims.scope)}`;
  } else {
    detail += ` ${JSON.stringify(first.body)}`;
  }
  const replay = await tokenRequest(port, assertion);
  const description = replay.body.error_description ? ` (${String(replay.body.error_description)})` : '';
  return [
    { ok, detail },
    { ok: replay.status === 401 && replay.body.error === 'invalid_client', detail: `replayed assertion: ${replay.status} ${String(replay.body.error)}${description}` },
  ];
}

interface SliceResult {
  seconds: number;
  total: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  latencies: number[];
}

function load(server: ServerName, port: number, seconds: number, pool: AssertionPool, record: boolean): Promise<SliceResult> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections: CONNECTIONS,
        pipelining: 1,
        duration: seconds,
        timeout: 10,
        requests: [
          {
            method: 'POST',
            path: '/token',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            setupRequest: (req) => {
              req.body = BODY_PREFIX + pool.next(server);
              return req;
            },
          },
        ],
      },
      (err, r) => {
        if (err) return reject(err);
        const statusCodes: Record<string, number> = {};
        for (const [code, v] of Object.entries(r.statusCodeStats ?? {})) statusCodes[code] = v.count ?? 0;
        resolve({ seconds: r.duration, total: r.requests.total, ok2xx: r['2xx'], non2xx: r.non2xx, errors: r.errors, timeouts: r.timeouts, statusCodes, latencies });
      },
    );
    // autocannon emits (client, statusCode, bytes, responseTimeMs); its typings omit the client.
    if (record) (instance as NodeJS.EventEmitter).on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => latencies.push(ms));
  });
}

function percentile(sorted: Float64Array, p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

interface Measurement {
  server: ServerName;
  reqPerSec: number;
  grantsPerSec: number;
  sliceReqPerSec: number[];
  p50: number;
  p90: number;
  p99: number;
  max: number;
  seconds: number;
  total: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  serverCpuPct: number;
  /** Server CPU time per response (all threads), µs: less sensitive than req/s to a busy machine. */
  cpuUsPerRequest: number;
  loadgenCpuPct: number;
  /** Share of the server core used by other processes while this server was under load. */
  otherOnCorePct?: number;
  stealPct?: number;
  serverRssMb: number;
  serverRssAtStartMb: number;
  assertionsUsed: number;
  assertionFallbacks: number;
  checks: Check[];
}

interface Accumulator {
  slices: SliceResult[];
  cpuUs: number;
  wallUs: number;
  loadgenUs: number;
  coreBusy: number;
  coreSteal: number;
  coreTotal: number;
  rss: number;
  rssAtStart: number;
  checks: Check[];
}

async function slice(child: Child, seconds: number, pool: AssertionPool, acc: Accumulator): Promise<SliceResult> {
  const s0 = await child.stats();
  const c0 = process.cpuUsage();
  const k0 = coreTimes(SERVER_CORE);
  const t0 = performance.now();
  const r = await load(child.name, child.port, seconds, pool, true);
  const wallUs = (performance.now() - t0) * 1000;
  const k1 = coreTimes(SERVER_CORE);
  const c1 = process.cpuUsage(c0);
  const s1 = await child.stats();
  acc.slices.push(r);
  acc.cpuUs += s1.cpuUserUs + s1.cpuSystemUs - s0.cpuUserUs - s0.cpuSystemUs;
  acc.wallUs += wallUs;
  acc.loadgenUs += c1.user + c1.system;
  if (k0 && k1) {
    acc.coreBusy += k1.busy - k0.busy;
    acc.coreSteal += k1.steal - k0.steal;
    acc.coreTotal += k1.total - k0.total;
  }
  acc.rss = Math.max(acc.rss, s1.rss);
  return r;
}

function summarise(name: ServerName, acc: Accumulator, pool: AssertionPool): Measurement {
  const sum = (f: (s: SliceResult) => number) => acc.slices.reduce((a, s) => a + f(s), 0);
  const seconds = sum((s) => s.seconds);
  const statusCodes: Record<string, number> = {};
  for (const s of acc.slices) for (const [k, v] of Object.entries(s.statusCodes)) statusCodes[k] = (statusCodes[k] ?? 0) + v;
  const all = new Float64Array(sum((s) => s.latencies.length));
  let i = 0;
  for (const s of acc.slices) for (const v of s.latencies) all[i++] = v;
  all.sort();
  const serverCpuPct = (100 * acc.cpuUs) / acc.wallUs;
  const corePct = acc.coreTotal > 0 ? (100 * acc.coreBusy) / acc.coreTotal : undefined;
  const round1 = (n: number) => Math.round(n * 10) / 10;
  return {
    server: name,
    reqPerSec: sum((s) => s.total) / seconds,
    grantsPerSec: sum((s) => s.ok2xx) / seconds,
    sliceReqPerSec: acc.slices.map((s) => Math.round(s.total / s.seconds)),
    p50: round1(percentile(all, 50)),
    p90: round1(percentile(all, 90)),
    p99: round1(percentile(all, 99)),
    max: round1(all.length ? all[all.length - 1] : NaN),
    seconds,
    total: sum((s) => s.total),
    ok2xx: sum((s) => s.ok2xx),
    non2xx: sum((s) => s.non2xx),
    errors: sum((s) => s.errors),
    timeouts: sum((s) => s.timeouts),
    statusCodes,
    serverCpuPct,
    cpuUsPerRequest: acc.cpuUs / sum((s) => s.total),
    loadgenCpuPct: (100 * acc.loadgenUs) / acc.wallUs,
    otherOnCorePct: pinned && corePct !== undefined ? Math.max(0, corePct - serverCpuPct) : undefined,
    stealPct: pinned && acc.coreTotal > 0 ? (100 * acc.coreSteal) / acc.coreTotal : undefined,
    serverRssMb: acc.rss / 2 ** 20,
    serverRssAtStartMb: acc.rssAtStart / 2 ** 20,
    assertionsUsed: pool.used(name),
    assertionFallbacks: pool.fallbacks.get(name) ?? 0,
    checks: acc.checks,
  };
}

// ---------------------------------------------------------------------------------------------------
// Reporting

function versionOf(pkg: string): string {
  try {
    const require = createRequire(import.meta.url);
    let dir = dirname(require.resolve(pkg));
    for (;;) {
      try {
        const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (meta.name === pkg) return meta.version ?? '?';
      } catch {
        // keep climbing
      }
      const up = dirname(dir);
      if (up === dir) return '?';
      dir = up;
    }
  } catch {
    return '?';
  }
}

function gitRevision(): string {
  const rev = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: HERE, encoding: 'utf8' });
  if (rev.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: HERE, encoding: 'utf8' });
  return rev.stdout.trim() + (dirty.stdout.trim() ? ' (uncommitted changes)' : '');
}

const f0 = (n: number) => Math.round(n).toLocaleString('en-GB');
const f2 = (n: number) => n.toFixed(2);
const pct = (n: number | undefined) => (n === undefined ? 'n/a' : `${n.toFixed(0)}%`);

async function main(): Promise<void> {
  const started = new Date();
  const loadStart = loadavg();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const profileDir = PROFILE.size ? join(RESULTS, 'profiles', stamp) : undefined;
  if (!pinned) log(`warning: ${haveTaskset ? `only ${totalCores} core(s)` : 'taskset not found'}; servers and load generator are NOT pinned to separate cores`);

  log(`crypto ceiling: ${CEILING_SECONDS} s of ES256 verify + ES256 sign (jose) on core ${pinned ? SERVER_CORE : 'any'}...`);
  const ceiling = await cryptoCeiling();
  log(`  ${f0(ceiling.opsPerSecond)} ops/s (${ceiling.concurrency} loop${ceiling.concurrency > 1 ? 's' : ''})`);

  const keys = await clientKeys();
  // No server gets far past the crypto ceiling; 1.5x covers warm-up, slices and checks.
  const perServer = Math.min(MAX_ASSERTIONS, Math.ceil(ceiling.opsPerSecond * (WARMUP + DURATION) * 1.5) + 1000);
  // Assertions live 5 minutes, longer only if this run could outlast that.
  const expectedRun = 60 + SERVERS.length * (WARMUP + DURATION + 2 * SLICES);
  const ttl = Math.max(300, expectedRun + 120);
  const pool = new AssertionPool(keys, ttl);
  log(`pre-signing ${f0(perServer)} client assertions (jose SignJWT, ES256, exp ${ttl} s)...`);
  const signSeconds = await pool.fill(perServer);
  log(`  done in ${signSeconds.toFixed(1)} s`);

  const children = new Map<ServerName, Child>();
  const accs = new Map<ServerName, Accumulator>();
  let measurements: Measurement[] = [];
  try {
    for (const name of SERVERS) {
      const child = await startServer(name, keys.publicJwk, PROFILE.has(name) ? profileDir : undefined);
      children.set(name, child);
      const checks = await sanity(name, child.port, pool);
      for (const c of checks) log(`  ${LABELS[name]}: ${c.ok ? 'ok  ' : 'FAIL'} ${c.detail}`);
      const { rss } = await child.stats();
      accs.set(name, { slices: [], cpuUs: 0, wallUs: 0, loadgenUs: 0, coreBusy: 0, coreSteal: 0, coreTotal: 0, rss: 0, rssAtStart: rss, checks });
    }
    for (const name of SERVERS) {
      log(`warm-up ${LABELS[name]}: ${WARMUP} s`);
      await load(name, children.get(name)!.port, WARMUP, pool, false);
    }
    const sliceSeconds = DURATION / SLICES;
    log(`measuring: ${SLICES} slice(s) of ${sliceSeconds.toFixed(1)} s per server, order rotated each time, ${CONNECTIONS} connections`);
    for (let k = 0; k < SLICES; k++) {
      const order = SERVERS.map((_, i) => SERVERS[(i + k) % SERVERS.length]);
      const line: string[] = [];
      for (const name of order) {
        const r = await slice(children.get(name)!, sliceSeconds, pool, accs.get(name)!);
        line.push(`${name} ${f0(r.total / r.seconds)}${r.non2xx + r.errors ? ` (${r.non2xx + r.errors} errors)` : ''}`);
      }
      log(`  slice ${k + 1}: ${line.join(', ')} req/s`);
    }
    for (const name of SERVERS) {
      const after = await sanity(name, children.get(name)!.port, pool);
      for (const c of after) if (!c.ok) log(`  ${LABELS[name]}: FAIL after load: ${c.detail}`);
      accs.get(name)!.checks.push(...after);
    }
    measurements = SERVERS.map((name) => summarise(name, accs.get(name)!, pool));
  } finally {
    await Promise.all([...children.values()].map((c) => c.stop()));
  }

  const by = (name: ServerName) => measurements.find((m) => m.server === name);
  const bare = by('bare');
  const broker = by('broker');
  const ratio = (m: Measurement) => (bare ? m.reqPerSec / bare.reqPerSec : NaN);
  const errorsOf = (m: Measurement) => m.non2xx + m.errors;
  // Slice k of one server against slice k of bare: how stable the ratio was during the run.
  const sliceRatios = (m: Measurement) => (bare ? m.sliceReqPerSec.map((v, i) => v / bare.sliceReqPerSec[i]) : []);
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const range = (xs: number[]) => (xs.length ? `${f2(Math.min(...xs))}–${f2(median(xs))}–${f2(Math.max(...xs))}` : 'n/a');

  const table = [
    '| scenario | server | req/s | p50 ms | p99 ms | errors | ratio | vs crypto ceiling |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...measurements.map(
      (m) => `| ${SCENARIO} | ${LABELS[m.server]} | ${f0(m.reqPerSec)} | ${m.p50} | ${m.p99} | ${errorsOf(m)} | ${bare ? f2(ratio(m)) : 'n/a'} | ${f2(m.reqPerSec / ceiling.opsPerSecond)} |`,
    ),
    `| crypto ceiling: ES256 verify + ES256 sign (jose, no HTTP, no store) | one core | ${f0(ceiling.opsPerSecond)} ops/s | | | | | 1.00 |`,
  ].join('\n');

  const targets: string[] = [];
  if (broker && bare) {
    const r = ratio(broker);
    const cpuRatio = bare.cpuUsPerRequest / broker.cpuUsPerRequest;
    targets.push(
      `broker ≥ ${TARGET_RATIO} × bare: ${f2(r)} → ${r >= TARGET_RATIO ? 'PASS' : 'FAIL'} (per-slice min–median–max ${range(sliceRatios(broker))}; by server CPU per request ${f2(cpuRatio)})`,
    );
  }
  if (broker) {
    targets.push(`broker ≥ ${f0(TARGET_GRANTS)} grants/s on one core (SQLite): ${f0(broker.grantsPerSec)} grants/s (2xx only) → ${broker.grantsPerSec >= TARGET_GRANTS ? 'PASS' : 'FAIL'}`);
    targets.push(`for scale: this core's crypto ceiling is ${f0(ceiling.opsPerSecond)} ops/s; the broker reaches ${f2(broker.reqPerSec / ceiling.opsPerSecond)} of it${bare ? `, bare oidc-provider ${f2(bare.reqPerSec / ceiling.opsPerSecond)}` : ''}`);
  }

  const oddities: string[] = [];
  for (const m of measurements) {
    const label = LABELS[m.server];
    if (errorsOf(m) || m.timeouts) oddities.push(`${label}: ${m.non2xx} non-2xx, ${m.errors} connection errors, ${m.timeouts} timeouts; status codes ${JSON.stringify(m.statusCodes)}`);
    for (const c of m.checks) if (!c.ok) oddities.push(`${label}: check failed: ${c.detail}`);
    if (m.assertionFallbacks) oddities.push(`${label}: pool exhausted, ${m.assertionFallbacks} assertions signed on the load generator's core during the run`);
    if (pinned && m.serverCpuPct < 90) {
      oddities.push(`${label}: server used only ${m.serverCpuPct.toFixed(0)}% of its core${(m.otherOnCorePct ?? 0) > 5 ? ` (other processes took ${m.otherOnCorePct!.toFixed(0)}% of it)` : ' - it was not the bottleneck'}`);
    } else if ((m.otherOnCorePct ?? 0) > 5) {
      oddities.push(`${label}: other processes used ${m.otherOnCorePct!.toFixed(0)}% of the server core while it was measured`);
    }
    if ((m.stealPct ?? 0) > 5) oddities.push(`${label}: hypervisor steal ${m.stealPct!.toFixed(0)}% on the server core`);
    if (pinned && m.loadgenCpuPct > 90) oddities.push(`${label}: load generator at ${m.loadgenCpuPct.toFixed(0)}% of its core - it may be the bottleneck`);
    const spread = Math.max(...m.sliceReqPerSec) / Math.min(...m.sliceReqPerSec);
    if (m.sliceReqPerSec.length > 1 && spread > 1.25) oddities.push(`${label}: slices varied ${f0(Math.min(...m.sliceReqPerSec))}–${f0(Math.max(...m.sliceReqPerSec))} req/s (the machine is noisy)`);
  }

  const conditions: Array<[string, string]> = [
    ['date', started.toISOString()],
    ['revision', gitRevision()],
    ['CPU', `${cpus()[0]?.model ?? '?'}, ${totalCores} cores; load average at start ${loadStart.map((l) => l.toFixed(2)).join(' ')}`],
    ['pinning', pinned ? `each server process on core ${SERVER_CORE} (taskset; its libuv threadpool too); driver + autocannon on core ${LOADGEN_CORE}` : 'none (taskset missing or one core)'],
    ['Node', process.version],
    ['packages', `oidc-provider ${versionOf('oidc-provider')}, jose ${versionOf('jose')}, koa ${versionOf('koa')}, autocannon ${versionOf('autocannon')}`],
    ['store', 'SQLite (node:sqlite, WAL, synchronous=NORMAL), a fresh file per server in the temp dir; replay check = one INSERT per assertion'],
    ['TLS', 'off (plain HTTP on 127.0.0.1)'],
    ['load', `autocannon, ${CONNECTIONS} keep-alive connections, pipelining 1; ${WARMUP} s warm-up per server, then ${DURATION} s per server measured in ${SLICES} interleaved slice(s)`],
    ['requests', `POST /token: client_credentials, private_key_jwt (ES256, fresh jti each, pre-signed), resource ${RESOURCE}, scope ${SCOPE}; JWT access token ES256`],
    ['broker log level', LOG_LEVEL],
  ];

  const detailRows = measurements.map(
    (m) =>
      `| ${LABELS[m.server]} | ${f0(m.grantsPerSec)} | ${m.sliceReqPerSec.map(f0).join(' / ')} | ${bare && m !== bare ? range(sliceRatios(m)) : ''} | ${f0(m.cpuUsPerRequest)} | ${m.p90} | ${m.max} | ${m.serverCpuPct.toFixed(0)}% | ${pct(m.otherOnCorePct)} | ${m.loadgenCpuPct.toFixed(0)}% | ${m.serverRssAtStartMb.toFixed(0)} → ${m.serverRssMb.toFixed(0)} MB |`,
  );
  const detail = [
    '| server | grants/s (2xx) | req/s per slice | ratio per slice (min–median–max) | server CPU µs per request | p90 ms | max ms | server CPU | others on server core | load generator CPU | server RSS (at start → peak) |',
    '|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...detailRows,
  ].join('\n');

  console.log(`\n## ${SCENARIO}\n\n${table}\n\n${targets.map((t) => `- ${t}`).join('\n')}\n\n${detail}`);
  if (oddities.length) console.log(`\nattention:\n${oddities.map((o) => `  - ${o}`).join('\n')}`);

  const profiles: Record<string, string> = {};
  if (profileDir) {
    const profiled: Array<{ name: string; summary: ReturnType<typeof summariseProfile>; requests: number }> = [];
    for (const name of SERVERS) {
      const file = `${name}.cpuprofile`;
      if (!readdirSync(profileDir).includes(file)) continue;
      const path = join(profileDir, file);
      profiles[file] = relative(ROOT, path);
      const summary = summariseProfile(path, 15);
      profiled.push({ name, summary, requests: pool.used(name) });
      console.log(`\n${formatSummary(relative(ROOT, path), summary)}`);
    }
    if (profiled.length > 1) console.log(`\n${compareProfiles(profiled)}`);
  }

  mkdirSync(RESULTS, { recursive: true });
  const json = {
    scenario: SCENARIO,
    startedAt: started.toISOString(),
    conditions: Object.fromEntries(conditions),
    settings: { duration: DURATION, slices: SLICES, warmup: WARMUP, connections: CONNECTIONS, servers: SERVERS, logLevel: LOG_LEVEL, pinned, serverCore: SERVER_CORE, loadgenCore: LOADGEN_CORE },
    ceiling,
    assertions: { perServer, presignSeconds: signSeconds, ttlSeconds: ttl },
    measurements: measurements.map((m) => ({ ...m, sliceRatios: m === bare ? undefined : sliceRatios(m) })),
    summary: {
      bareReqPerSec: bare?.reqPerSec,
      brokerReqPerSec: broker?.reqPerSec,
      brokerGrantsPerSec: broker?.grantsPerSec,
      ratio: broker && bare ? broker.reqPerSec / bare.reqPerSec : undefined,
      brokerVsCeiling: broker ? broker.reqPerSec / ceiling.opsPerSecond : undefined,
      targets,
    },
    oddities,
    profiles,
  };
  const jsonFile = join(RESULTS, `${stamp}.json`);
  writeFileSync(jsonFile, `${JSON.stringify(json, null, 2)}\n`);

  const md = [
    '# Benchmark: token endpoint, broker vs bare oidc-provider',
    '',
    `Written by \`npm run bench\` (bench/run.ts) on ${started.toISOString()}; raw figures in \`bench/results/${stamp}.json\`.`,
    '',
    '## Conditions',
    '',
    '| | |',
    '|---|---|',
    ...conditions.map(([k, v]) => `| ${k} | ${v} |`),
    '',
    '## Results',
    '',
    table,
    '',
    "ratio = req/s ÷ bare oidc-provider's req/s. errors = non-2xx responses + connection errors. p50/p99 over every response in the measured slices.",
    `vs crypto ceiling = req/s ÷ ops/s of a loop doing one ES256 verify + one ES256 sign (jose) on the servers' core (${ceiling.concurrency} loop${ceiling.concurrency > 1 ? 's' : ''}).`,
    "The diagnostic row is the broker's own provider configuration (buildProvider) on node:http without the broker's Koa app: broker ÷ it is the Koa wrapper's share, it ÷ bare the provider configuration's share.",
    '',
    '## Targets',
    '',
    ...targets.map((t) => `- ${t}`),
    '',
    '## Detail',
    '',
    detail,
    '',
    ...(oddities.length ? ['## Attention', '', ...oddities.map((o) => `- ${o}`), ''] : []),
  ].join('\n');
  writeFileSync(join(RESULTS, 'latest.md'), md);
  console.log(`\nwrote ${relative(ROOT, jsonFile)} and ${relative(ROOT, join(RESULTS, 'latest.md'))}`);
}

await main();
