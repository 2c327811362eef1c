import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import {
  BASIC_CLIENT,
  BASIC_SECRET,
  CIS2_UPSTREAM,
  EXTERNAL_AUDIENCE,
  ISSUER,
  OPAQUE_RESOURCE,
  PATIENT_SCOPES,
  RESOURCE,
  SAML_UPSTREAM,
  SCOPE,
  SCRIPTED_UPSTREAM,
  WEB_SCOPE,
  type BrokerSpec,
  type ChildMessage,
  type ParentMessage,
  type ServerSpec,
} from './servers/common.ts';
import { LOGIN_CRYPTO, TOKEN_SCENARIOS, ceilingFor, post, type Backend, type Check, type Env, type Kind, type Target, type TokenScenario } from './scenarios/catalogue.ts';
import { brokerBrowser, basic } from './scenarios/http.ts';
import { cannon, coreTimes, flows, paced, percentile, processMemory, type SliceResult } from './scenarios/load.ts';
import { claimsOf, login, type LoginOptions } from './scenarios/login.ts';
import { AssertionPool, clientKeys } from './scenarios/pool.ts';
import { seedConsents, seedSessions } from './scenarios/seed.ts';
import { openStore } from '../src/store/open.ts';
import { writeReport, type ConsentRow, type FixedRate, type MemoryRow, type Measurement, type ProfileRow, type RunResult } from './scenarios/report.ts';
import { summariseProfile } from './profile-summary.ts';
import { startRedis, type RedisPeer } from '../test/peers/redis.ts';
import { freePort } from '../test/peers/ports.ts';
import { generateKeyPair as samlKeyPair, simpleSamlAvailable, startSimpleSaml, type SimpleSamlPeer } from '../test/peers/simplesamlphp.ts';

// `npm run bench`: the broker against its baselines, in one run, on 2 cores.
//
// Servers under test each run in their own process pinned to core 0 (taskset; libuv threadpool too):
// the broker on SQLite and on Redis (bench/servers/broker.ts), and bare oidc-provider on each
// (bench/servers/bare.ts). This driver re-executes itself on core 1 with autocannon, and everything
// else that is not under test lives there too: redis-server, the fake CIS2 upstream (its own process),
// SimpleSAMLphp (php -S), the external issuer's JWKS. Scenarios (bench/scenarios/catalogue.ts) run in
// groups; within a group every (scenario, server) cell is measured in alternating slices, order rotated
// each round, so a slow patch of this shared machine lands on every cell alike. Then: a fixed-rate
// run at 80% of one scenario's maximum (p99), consent lookups and delegated-token introspection at
// 10^3…10^6 stored consents, and the RSS of a broker at idle and with 100,000 sessions.
// Writes bench/results/<timestamp>.json, latest.md and the SVG charts (bench/scenarios/report.ts,
// bench/chart.ts). Settings: bench/README.md.

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const RESULTS = join(HERE, 'results');
const SERVER_CORE = '0';
const LOADGEN_CORE = '1';

const env = process.env;
function num(name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a non-negative number, got ${JSON.stringify(raw)}`);
  return v;
}
const list = (name: string, fallback: string): string[] => [...new Set((env[name] ?? fallback).split(',').map((s) => s.trim()).filter(Boolean))];

const DURATION = num('BENCH_DURATION', 4);
const SLICES = Math.max(1, Math.round(num('BENCH_SLICES', 4)));
const WARMUP = num('BENCH_WARMUP', 0.5);
const CONNECTIONS = Math.max(1, Math.round(num('BENCH_CONNECTIONS', 50)));
const LOGIN_CONNECTIONS = Math.max(1, Math.round(num('BENCH_LOGIN_CONNECTIONS', 32)));
const SAML_CONNECTIONS = Math.max(1, Math.round(num('BENCH_SAML_CONNECTIONS', 4)));
const LOGIN_DURATION = num('BENCH_LOGIN_DURATION', DURATION);
const FIXED_SECONDS = num('BENCH_FIXED_SECONDS', 4);
const FIXED_SCENARIO = env.BENCH_FIXED_SCENARIO ?? 'cc-pkjwt-jwt';
const FIXED_SHARE = num('BENCH_FIXED_SHARE', 0.8);
const SIZES = list('BENCH_SIZES', '1000,100000,1000000').map(Number).sort((a, b) => a - b);
const SESSIONS = Math.round(num('BENCH_SESSIONS', 100_000));
const LOOKUPS = Math.round(num('BENCH_LOOKUPS', 3000));
const CEILING_SECONDS = num('BENCH_CEILING_SECONDS', 3);
const MAX_ASSERTIONS = Math.round(num('BENCH_MAX_ASSERTIONS', 300_000));
const LOG_LEVEL = env.BENCH_LOG_LEVEL ?? 'silent';
const haveRedis = spawnSync('sh', ['-c', 'command -v redis-server'], { stdio: 'ignore' }).status === 0;
const BACKENDS = (list('BENCH_BACKENDS', 'sqlite,redis') as Backend[]).filter((b) => b !== 'redis' || haveRedis);
const BARE = env.BENCH_BARE !== '0';
const DIAGNOSTIC = env.BENCH_DIAGNOSTIC === '1';
const ALL_PARTS = [...TOKEN_SCENARIOS.filter((s) => s.id !== 'introspect-delegated').map((s) => s.id), 'fixed-rate', 'login-oidc', 'login-saml', 'consents', 'memory'];
const PARTS = new Set(list('BENCH_SCENARIOS', ALL_PARTS.join(',')));
const PROFILE = new Set(list('BENCH_PROFILE', ''));
const profiled = (id: string) => PROFILE.has(id.split('@')[0]) || PROFILE.has('all');

for (const b of BACKENDS) if (b !== 'sqlite' && b !== 'redis') throw new Error(`BENCH_BACKENDS: unknown backend ${b}`);
for (const p of PARTS) if (!ALL_PARTS.includes(p)) throw new Error(`BENCH_SCENARIOS: unknown part ${p} (${ALL_PARTS.join(', ')})`);

const haveTaskset = spawnSync('sh', ['-c', 'command -v taskset'], { stdio: 'ignore' }).status === 0;
const totalCores = cpus().length;
const pinned = haveTaskset && totalCores >= 2;

// Re-run this driver on the load generator's core, so it never competes with the servers' core.
// Everything it spawns without taskset (redis-server, php, the fake CIS2) inherits that core.
if (pinned && env.BENCH_PINNED !== '1') {
  const r = spawnSync('taskset', ['-c', LOADGEN_CORE, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...env, BENCH_PINNED: '1' },
  });
  process.exit(r.status ?? 1);
}

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const f0 = (n: number) => Math.round(n).toLocaleString('en-GB');

// ---------------------------------------------------------------------------------------------------
// Child processes

const live = new Set<ChildProcess>();
const cleanups: Array<() => Promise<void>> = [];
function killAll(): void {
  for (const p of live) p.kill('SIGKILL');
}
process.on('exit', killAll);
process.on('SIGINT', () => {
  killAll();
  process.exit(130);
});

function launch(script: string, spec: object, options: { core?: string; nodeArgs?: string[]; quiet?: boolean } = {}): ChildProcess {
  const file = join(HERE, 'servers', script);
  const nodeArgs = options.nodeArgs ?? [];
  const [cmd, args] = pinned && options.core ? ['taskset', ['-c', options.core, process.execPath, ...nodeArgs, file]] : [process.execPath, [...nodeArgs, file]];
  const proc = spawn(cmd, args, { stdio: ['ignore', options.quiet ? 'ignore' : 'inherit', 'inherit', 'ipc'], env: { ...env, BENCH_SPEC: JSON.stringify(spec) } });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  return proc;
}

function nextMessage<T extends ChildMessage['type']>(proc: ChildProcess, type: T, timeoutMs: number, match: (m: Extract<ChildMessage, { type: T }>) => boolean = () => true): Promise<Extract<ChildMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: ChildMessage) => {
      if (m.type !== type || !match(m as Extract<ChildMessage, { type: T }>)) return;
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

interface Child extends Target {
  storeUrl?: string;
  proc: ChildProcess;
  pid: number;
  dir?: string;
  stats(): Promise<Extract<ChildMessage, { type: 'stats' }>>;
  command<T = unknown>(name: string, args?: unknown, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

let commandId = 0;
/** Every server child started, for lookups by name. */
const serverRegistry: Child[] = [];

async function startServer(kind: Kind, backend: Backend, spec: ServerSpec & Partial<BrokerSpec>, dir?: string): Promise<Child> {
  const name = `${kind}-${backend}`;
  // With a log level other than silent the access log is serialised and thrown away (BENCH_CHILD_STDOUT=1 shows it).
  const proc = launch(`${kind}.ts`, spec, { core: SERVER_CORE, nodeArgs: ['--expose-gc'], quiet: env.BENCH_CHILD_STDOUT !== '1' });
  const ready = await nextMessage(proc, 'ready', 60_000);
  const child: Child = {
    name,
    kind,
    backend,
    port: ready.port,
    pid: ready.pid,
    proc,
    dir,
    storeUrl: spec.store,
    fx: { refresh: [], spareRefresh: [] },
    stats() {
      const reply = nextMessage(proc, 'stats', 10_000);
      proc.send({ type: 'stats' } satisfies ParentMessage);
      return reply;
    },
    async command<T>(cmd: string, args?: unknown, timeoutMs = 600_000): Promise<T> {
      const id = ++commandId;
      const reply = nextMessage(proc, 'reply', timeoutMs, (m) => m.id === id);
      proc.send({ type: 'command', id, name: cmd, args } satisfies ParentMessage);
      const r = await reply;
      if (!r.ok) throw new Error(`${name}: ${cmd}: ${r.error}`);
      return r.value as T;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise<void>((r) => proc.once('exit', () => r()));
        proc.send({ type: 'stop' } satisfies ParentMessage);
        const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  serverRegistry.push(child);
  return child;
}

async function cryptoCeiling(): Promise<{ opsPerSecond: number; concurrency: number; unitUs: Record<string, number> }> {
  const proc = launch('ceiling.ts', {}, { core: SERVER_CORE });
  const result = await nextMessage(proc, 'result', (CEILING_SECONDS + 60) * 1000);
  await new Promise<void>((r) => (proc.exitCode !== null ? r() : proc.once('exit', () => r())));
  return { opsPerSecond: Number(result.opsPerSecond), concurrency: Number(result.concurrency), unitUs: result.unitUs as Record<string, number> };
}

// ---------------------------------------------------------------------------------------------------
// Peers on the load generator's core: the external issuer's JWKS, the fake CIS2, SimpleSAMLphp, Redis

interface ExternalIssuer {
  issuer: string;
  jwksUri: string;
  idToken: string;
  server: Server;
}

async function startExternalIssuer(): Promise<ExternalIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
  const kid = 'bench-cis2-rs256';
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  const server = createServer((req, res) => {
    if (req.url === '/cis2/jwks') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const issuer = `${base}/cis2`;
  const idToken = await new SignJWT({ authentication_assurance_level: '3', id_assurance_level: '3', acr: 'AAL3_ANY', amr: ['N3_SMARTCARD'], auth_time: Math.floor(Date.now() / 1000) })
    .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
    .setIssuer(issuer)
    .setAudience(EXTERNAL_AUDIENCE)
    .setSubject('555057896106')
    .setIssuedAt()
    .setExpirationTime('2h')
    .setJti(randomUUID())
    .sign(privateKey);
  return { issuer, jwksUri: `${base}/cis2/jwks`, idToken, server };
}

async function startCis2(brokerJwk: JWK): Promise<{ issuer: string; stop(): Promise<void> }> {
  const proc = launch('cis2.ts', { redirectUris: [`${ISSUER}/upstream/${CIS2_UPSTREAM}/callback`], brokerJwk }, { core: LOADGEN_CORE, quiet: true });
  const result = await nextMessage(proc, 'result', 60_000);
  return {
    issuer: String(result.issuer),
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.send({ type: 'stop' });
      await exited;
    },
  };
}

async function startIdp(): Promise<{ peer: SimpleSamlPeer; sp: { keyPem: string; certPem: string } } | undefined> {
  if (!simpleSamlAvailable) return undefined;
  const sp = samlKeyPair('broker-bench-sp');
  // The IdP's built-in server runs one request at a time per worker; two workers on core 1.
  const workers = env.PHP_CLI_SERVER_WORKERS;
  env.PHP_CLI_SERVER_WORKERS = env.BENCH_PHP_WORKERS ?? '2';
  try {
    const peer = await startSimpleSaml({
      sps: [{ entityId: `${ISSUER}/upstream/${SAML_UPSTREAM}/metadata`, acsUrl: `${ISSUER}/upstream/${SAML_UPSTREAM}/callback`, sloUrl: `${ISSUER}/upstream/${SAML_UPSTREAM}/slo`, signingCertPem: sp.certPem }],
    });
    return { peer, sp };
  } finally {
    if (workers === undefined) delete env.PHP_CLI_SERVER_WORKERS;
    else env.PHP_CLI_SERVER_WORKERS = workers;
  }
}

// ---------------------------------------------------------------------------------------------------
// Fixtures: logins through the scripted upstream (the broker child answers with queued identities)

const P9 = { acr: 'P9.Cp.Cd', aal: 2, proofing: 'P9' as const };
const identity = (subject: string, nhs: string) => ({ subject, claims: { nhs_number: nhs, name: subject }, assurance: P9 });

async function scriptedLogin(t: Child, subject: string, nhs: string, o: Partial<LoginOptions> = {}) {
  await t.command('queue', { identities: [identity(subject, nhs)] });
  return login(brokerBrowser(t.port), { upstream: SCRIPTED_UPSTREAM, ...o });
}

async function ensureOpaque(t: Child): Promise<void> {
  const r = await post(t.port, '/token', new URLSearchParams({ grant_type: 'client_credentials', resource: OPAQUE_RESOURCE, scope: SCOPE }).toString(), { authorization: basic(BASIC_CLIENT, BASIC_SECRET) });
  if (r.status !== 200) throw new Error(`${t.name}: opaque token: ${r.status} ${r.text.slice(0, 200)}`);
  t.fx.opaqueToken = String(r.body.access_token);
}

async function ensureUser(t: Child): Promise<void> {
  const tokens = await scriptedLogin(t, 'bench-user', '9000000025', { scope: WEB_SCOPE, resource: RESOURCE });
  t.fx.userToken = tokens.access_token;
}

async function ensureRefresh(t: Child): Promise<void> {
  const n = CONNECTIONS + 16 - t.fx.refresh.length - t.fx.spareRefresh.length;
  if (n <= 0) return;
  await t.command('queue', { identities: Array.from({ length: n }, () => identity('bench-user', '9000000025')) });
  const tokens: string[] = [];
  let i = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (i < n) {
        i++;
        const r = await login(brokerBrowser(t.port), { upstream: SCRIPTED_UPSTREAM, scope: 'openid offline_access patient/Patient.rs', resource: RESOURCE, prompt: 'consent' });
        if (!r.refresh_token) throw new Error(`${t.name}: no refresh token`);
        tokens.push(r.refresh_token);
      }
    }),
  );
  const chains = Math.max(0, CONNECTIONS - t.fx.refresh.length);
  t.fx.refresh.push(...tokens.slice(0, chains));
  t.fx.spareRefresh.push(...tokens.slice(chains));
}

/** A patient, a carer, an active consent between them, and a fresh delegated token (they live 5 minutes). */
async function ensureDelegated(t: Child): Promise<void> {
  if (!t.fx.consentId) {
    const patient = claimsOf((await scriptedLogin(t, 'bench-patient', '9000000009')).id_token!).sub as string;
    const carer = claimsOf((await scriptedLogin(t, 'bench-carer', '9000000017')).id_token!).sub as string;
    const { consentId, recordLength } = await t.command<{ consentId: string; recordLength: number }>('delegate', { patient, carer, scopes: ['patient/Patient.rs'] });
    Object.assign(t.fx, { patient, carer, consentId, recordLength });
  }
  const tokens = await scriptedLogin(t, 'bench-carer', '9000000017', { scope: `openid ${PATIENT_SCOPES[0]}`, resource: RESOURCE, actAs: t.fx.consentId });
  const claims = claimsOf(tokens.access_token);
  if (claims.sub !== t.fx.patient || (claims.act as { sub?: string } | undefined)?.sub !== t.fx.carer) throw new Error(`${t.name}: not a delegated token: ${JSON.stringify(claims)}`);
  t.fx.delegatedToken = tokens.access_token;
}

async function prepare(t: Child, needs: TokenScenario['needs'] = []): Promise<void> {
  for (const need of needs) {
    if (need === 'opaque' && !t.fx.opaqueToken) await ensureOpaque(t);
    if (need === 'user') await ensureUser(t);
    if (need === 'refresh') await ensureRefresh(t);
    if (need === 'delegated') await ensureDelegated(t);
  }
}

// ---------------------------------------------------------------------------------------------------
// Cells, slices and groups

interface Cell {
  scenario: string;
  title: string;
  unit: 'req' | 'login';
  target: Child;
  connections: number;
  run(seconds: number, record: boolean): Promise<SliceResult>;
  checks: Check[];
  after?: () => Promise<Check[]>;
  crypto?: Partial<Record<string, number>>;
}

interface Acc {
  slices: SliceResult[];
  cpuUs: number;
  wallUs: number;
  loadgenUs: number;
  core: { busy: number; steal: number; total: number };
  loadCore: { busy: number; total: number };
}

async function slice(cell: Cell, seconds: number, acc: Acc): Promise<SliceResult> {
  const s0 = await cell.target.stats();
  const c0 = process.cpuUsage();
  const k0 = coreTimes(SERVER_CORE);
  const l0 = coreTimes(LOADGEN_CORE);
  const t0 = performance.now();
  const r = await cell.run(seconds, true);
  const wallUs = (performance.now() - t0) * 1000;
  const k1 = coreTimes(SERVER_CORE);
  const l1 = coreTimes(LOADGEN_CORE);
  const c1 = process.cpuUsage(c0);
  const s1 = await cell.target.stats();
  acc.slices.push(r);
  acc.cpuUs += s1.cpuUserUs + s1.cpuSystemUs - s0.cpuUserUs - s0.cpuSystemUs;
  acc.wallUs += wallUs;
  acc.loadgenUs += c1.user + c1.system;
  if (k0 && k1) {
    acc.core.busy += k1.busy - k0.busy;
    acc.core.steal += k1.steal - k0.steal;
    acc.core.total += k1.total - k0.total;
  }
  if (l0 && l1) {
    acc.loadCore.busy += l1.busy - l0.busy;
    acc.loadCore.total += l1.total - l0.total;
  }
  return r;
}

const round1 = (n: number) => Math.round(n * 10) / 10;

function summarise(cell: Cell, acc: Acc): Measurement {
  const sum = (f: (s: SliceResult) => number) => acc.slices.reduce((a, s) => a + f(s), 0);
  const seconds = sum((s) => s.seconds);
  const statusCodes: Record<string, number> = {};
  for (const s of acc.slices) for (const [k, v] of Object.entries(s.statusCodes)) statusCodes[k] = (statusCodes[k] ?? 0) + v;
  const all = new Float64Array(sum((s) => s.latencies.length));
  let i = 0;
  for (const s of acc.slices) for (const v of s.latencies) all[i++] = v;
  all.sort();
  const total = sum((s) => s.total);
  const serverCpuPct = (100 * acc.cpuUs) / acc.wallUs;
  const corePct = acc.core.total > 0 ? (100 * acc.core.busy) / acc.core.total : undefined;
  const http = sum((s) => s.httpRequests ?? 0);
  return {
    scenario: cell.scenario,
    title: cell.title,
    server: cell.target.name,
    kind: cell.target.kind,
    backend: cell.target.backend,
    unit: cell.unit,
    connections: cell.connections,
    reqPerSec: total / seconds,
    okPerSec: sum((s) => s.ok2xx) / seconds,
    sliceRates: acc.slices.map((s) => Math.round(s.total / s.seconds)),
    p50: round1(percentile(all, 50)),
    p95: round1(percentile(all, 95)),
    p99: round1(percentile(all, 99)),
    max: round1(all.length ? all[all.length - 1] : NaN),
    seconds: round1(seconds),
    total,
    ok: sum((s) => s.ok2xx),
    non2xx: sum((s) => s.non2xx),
    errors: sum((s) => s.errors),
    timeouts: sum((s) => s.timeouts),
    mismatches: sum((s) => s.mismatches),
    statusCodes,
    firstError: acc.slices.find((s) => s.firstError)?.firstError,
    httpPerOp: http ? round1(http / sum((s) => s.ok2xx + s.errors)) : undefined,
    serverCpuPct: round1(serverCpuPct),
    cpuUsPerOp: Math.round(acc.cpuUs / Math.max(1, total)),
    loadgenCpuPct: round1((100 * acc.loadgenUs) / acc.wallUs),
    loadCorePct: acc.loadCore.total > 0 ? round1((100 * acc.loadCore.busy) / acc.loadCore.total) : undefined,
    otherOnServerCorePct: pinned && corePct !== undefined ? round1(Math.max(0, corePct - serverCpuPct)) : undefined,
    stealPct: pinned && acc.core.total > 0 ? round1((100 * acc.core.steal) / acc.core.total) : undefined,
    checks: cell.checks,
    crypto: cell.crypto,
  };
}

const profileDir = join(RESULTS, 'profiles');
const profiles: ProfileRow[] = [];

/** Warm-up of every cell, then SLICES rounds over the cells, the order rotated each round. */
async function runGroup(name: string, cells: Cell[], seconds: number, stamp: string): Promise<Measurement[]> {
  if (!cells.length) return [];
  log(`\n[${name}] ${cells.map((c) => `${c.scenario}@${c.target.name}`).join(', ')}`);
  for (const c of cells) for (const k of c.checks) log(`  ${c.scenario}@${c.target.name}: ${k.ok ? 'ok  ' : 'FAIL'} ${k.detail}`);
  for (const c of cells) if (WARMUP > 0) await c.run(WARMUP, false);
  const accs = cells.map((): Acc => ({ slices: [], cpuUs: 0, wallUs: 0, loadgenUs: 0, core: { busy: 0, steal: 0, total: 0 }, loadCore: { busy: 0, total: 0 } }));
  const toProfile = cells.filter((c) => profiled(c.scenario) && c.target.kind !== 'provider');
  for (const c of toProfile) await c.target.command('profileStart');
  const sliceSeconds = seconds / SLICES;
  for (let k = 0; k < SLICES; k++) {
    const line: string[] = [];
    for (let j = 0; j < cells.length; j++) {
      const i = (j + k) % cells.length;
      const r = await slice(cells[i], sliceSeconds, accs[i]);
      const bad = r.non2xx + r.errors + r.timeouts + r.mismatches;
      line.push(`${cells[i].scenario}@${cells[i].target.name} ${f0(r.total / r.seconds)}${bad ? ` (${bad} errors${r.firstError ? `: ${r.firstError.slice(0, 120)}` : ''})` : ''}`);
    }
    log(`  slice ${k + 1}: ${line.join(', ')}`);
  }
  for (const c of toProfile) {
    mkdirSync(profileDir, { recursive: true });
    const file = join(profileDir, `${stamp}-${c.scenario}-${c.target.name}.cpuprofile`);
    await c.target.command('profileStop', { file });
    const s = summariseProfile(file, 12);
    const m = accs[cells.indexOf(c)];
    const requests = m.slices.reduce((a, x) => a + x.total, 0);
    profiles.push({ scenario: c.scenario, server: c.target.name, file: relative(ROOT, file), busyMs: Math.round(s.busyMs), requests, selfByFile: s.selfByFile.slice(0, 8), selfByFunction: s.selfByFunction.slice(0, 10), inclusiveByFunction: s.inclusiveByFunction.slice(0, 16) });
  }
  for (const c of cells) if (c.after) c.checks.push(...(await c.after()));
  for (const c of cells) for (const k of c.checks.filter((x) => !x.ok)) log(`  ${c.scenario}@${c.target.name}: FAIL ${k.detail}`);
  return cells.map((c, i) => summarise(c, accs[i]));
}

function tokenCell(s: TokenScenario, t: Child, e: Env, checks: Check[]): Cell {
  return {
    scenario: s.id,
    title: s.title,
    unit: 'req',
    target: t,
    connections: CONNECTIONS,
    checks,
    crypto: s.crypto,
    after: () => s.check(t, e),
    async run(seconds, record) {
      if (s.flow) {
        const flow = s.flow;
        return flows({ concurrency: CONNECTIONS, seconds, flow: (vu) => flow(t, vu) });
      }
      return cannon({ port: t.port, connections: CONNECTIONS, seconds, requests: s.requests(t, e), expectBody: s.expectBody?.(t), record });
    },
  };
}

/** Grows a broker's store to `size` seeded consents (besides the real one). */
async function seedTo(t: Child, size: number): Promise<{ seconds: number; recordLength: number }> {
  const recordLength = t.fx.recordLength ?? 1024;
  const from = t.fx.seeded ?? 0;
  if (size <= from) return { seconds: 0, recordLength };
  let seconds: number;
  if (t.backend === 'sqlite') seconds = (await t.command<{ seconds: number }>('seedConsents', { upTo: size }, 900_000)).seconds;
  else {
    const store = openStore(t.storeUrl!, { redis: { commandTimeoutMs: 120_000 } });
    try {
      await store.ping();
      seconds = await seedConsents(store, from, size, recordLength);
    } finally {
      await store.close();
    }
  }
  t.fx.seeded = size;
  return { seconds, recordLength };
}

/** Store and ledger calls the broker made for one login (diagnostic, from the check before the load). */
const storeCalls: Record<string, Record<string, number>> = {};

/** Skipped cells: a fixture or the check before the load failed; nothing is measured for them. */
const skipped: Array<{ scenario: string; server: string; reason: string }> = [];
function skip(scenario: string, t: Target, reason: string): void {
  skipped.push({ scenario, server: t.name, reason });
  log(`  ${scenario}@${t.name}: NOT MEASURED: ${reason}`);
}

/** The cell if its fixtures can be made and one request passes its check; otherwise recorded as skipped. */
async function checkedCell(s: TokenScenario, t: Child, e: Env): Promise<Cell | undefined> {
  try {
    await prepare(t, s.needs);
  } catch (err) {
    skip(s.id, t, `fixture: ${(err as Error).message}`);
    return undefined;
  }
  const checks = await s.check(t, e);
  const failed = checks.filter((c) => !c.ok);
  if (failed.length) {
    skip(s.id, t, failed.map((c) => c.detail).join('; '));
    return undefined;
  }
  return tokenCell(s, t, e, checks);
}

// ---------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = new Date();
  const wallStart = performance.now();
  const loadStart = loadavg();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  if (!haveRedis) log('redis-server not installed: the Redis backend is skipped');
  if (!pinned) log(`warning: ${haveTaskset ? `only ${totalCores} core(s)` : 'taskset not found'}; servers and load generator are NOT pinned to separate cores`);
  log(`parts: ${[...PARTS].join(', ')}; backends: ${BACKENDS.join(', ')}; ${DURATION} s per cell in ${SLICES} slices, ${WARMUP} s warm-up, ${CONNECTIONS} connections`);

  log(`crypto ceiling: ${CEILING_SECONDS} s of jose signatures on core ${pinned ? SERVER_CORE : 'any'}...`);
  const ceiling = await cryptoCeiling();
  log(`  cc private_key_jwt loop ${f0(ceiling.opsPerSecond)} ops/s; µs each: ${Object.entries(ceiling.unitUs).map(([k, v]) => `${k} ${v}`).join(', ')}`);

  const keys = await clientKeys();
  const pkjwtCells = ['cc-pkjwt-jwt', 'exchange-at', 'exchange-idt', 'exchange-delegated'].filter((p) => PARTS.has(p)).length + (PARTS.has('fixed-rate') ? 1 : 0);
  // Servers reach well under half their crypto ceiling; past the pool, assertions are signed on the fly (reported).
  const perServer = Math.min(MAX_ASSERTIONS, Math.ceil(ceiling.opsPerSecond * 0.5 * (WARMUP + DURATION) * pkjwtCells) + 2000);
  const pool = new AssertionPool(keys, 900);
  log(`pre-signing ${f0(perServer)} client assertions (ES256, exp 900 s)...`);
  log(`  done in ${pool.fill(perServer).toFixed(1)} s`);

  const external = await startExternalIssuer();
  cleanups.push(async () => void external.server.close());
  const e: Env = { pool, externalIdToken: external.idToken };

  const needRedis = BACKENDS.includes('redis');
  const redis: RedisPeer | undefined = needRedis ? await startRedis(['--maxmemory-policy', 'noeviction']) : undefined;
  if (redis) cleanups.push(() => redis.stop());
  const redisUrl = (db: number) => `${redis!.url}/${db}`;

  const cis2Key = await generateKeyPair('RS512', { modulusLength: 2048, extractable: true });
  const cis2PrivateJwk: JWK = { ...(await exportJWK(cis2Key.privateKey)), kid: 'broker-bench-cis2' };
  const cis2PublicJwk: JWK = { ...(await exportJWK(cis2Key.publicKey)), kid: 'broker-bench-cis2', use: 'sig' };
  const needLogins = PARTS.has('login-oidc') || PARTS.has('login-saml') || PARTS.has('memory');
  const cis2 = needLogins ? await startCis2(cis2PublicJwk) : undefined;
  if (cis2) cleanups.push(() => cis2.stop());
  const idp = PARTS.has('login-saml') || PARTS.has('memory') ? await startIdp() : undefined;
  if (idp) cleanups.push(() => idp.peer.stop());
  if (PARTS.has('login-saml') && !idp) log('SimpleSAMLphp (php) not installed: the SAML login is skipped');

  const brokerSpec = async (backend: Backend, db: number): Promise<{ spec: BrokerSpec; dir?: string }> => {
    const dir = backend === 'sqlite' ? mkdtempSync(join(tmpdir(), 'bench-broker-')) : undefined;
    return {
      dir,
      spec: {
        store: backend === 'sqlite' ? `sqlite:${join(dir!, 'store.db')}` : redisUrl(db),
        clientJwk: keys.publicJwk,
        logLevel: LOG_LEVEL,
        port: await freePort(),
        cis2: cis2 ? { issuer: cis2.issuer, privateJwk: cis2PrivateJwk } : undefined,
        saml: idp ? { metadataFile: idp.peer.metadataFile, spKeyPem: idp.sp.keyPem, spCertPem: idp.sp.certPem } : undefined,
        external: { issuer: external.issuer, jwksUri: external.jwksUri },
      },
    };
  };

  const servers: Child[] = [];
  const measurements: Measurement[] = [];
  let fixed: FixedRate | undefined;
  const consentRows: ConsentRow[] = [];
  const memory: MemoryRow[] = [];
  const tokenParts = TOKEN_SCENARIOS.filter((s) => PARTS.has(s.id));
  const needBare = BARE && tokenParts.some((s) => s.kinds.includes('bare'));
  try {
    for (const [i, backend] of BACKENDS.entries()) {
      const { spec, dir } = await brokerSpec(backend, i * 2);
      servers.push(await startServer('broker', backend, spec, dir));
      if (needBare) {
        const bdir = backend === 'sqlite' ? mkdtempSync(join(tmpdir(), 'bench-bare-')) : undefined;
        servers.push(await startServer('bare', backend, { store: backend === 'sqlite' ? `sqlite:${join(bdir!, 'store.db')}` : redisUrl(i * 2 + 1), clientJwk: keys.publicJwk, logLevel: LOG_LEVEL }, bdir));
      }
    }
    if (DIAGNOSTIC && BACKENDS.includes('sqlite')) {
      const pdir = mkdtempSync(join(tmpdir(), 'bench-provider-'));
      const { spec } = await brokerSpec('sqlite', 0);
      servers.push(await startServer('provider', 'sqlite', { ...spec, store: `sqlite:${join(pdir, 'store.db')}` }, pdir));
    }
    log(`servers: ${servers.map((s) => `${s.name} :${s.port} (pid ${s.pid})`).join(', ')}`);
    const brokers = servers.filter((s) => s.kind === 'broker');

    // Single-request scenarios, one group each.
    for (const s of tokenParts) {
      const targets = servers.filter((t) => s.kinds.includes(t.kind));
      const cells: Cell[] = [];
      for (const t of targets) {
        const cell = await checkedCell(s, t, e);
        if (cell) cells.push(cell);
      }
      measurements.push(...(await runGroup(s.id, cells, DURATION, stamp)));
      if (s.id === FIXED_SCENARIO && PARTS.has('fixed-rate')) fixed = await fixedRate(s, e, measurements);
    }
    if (PARTS.has('fixed-rate') && !fixed) {
      const s = TOKEN_SCENARIOS.find((x) => x.id === FIXED_SCENARIO);
      if (s) {
        const t = servers.find((x) => x.kind === 'broker' && x.backend === BACKENDS[0])!;
        const cell = await checkedCell(s, t, e);
        measurements.push(...(await runGroup(`${s.id} (for the fixed-rate run)`, cell ? [cell] : [], DURATION, stamp)));
        fixed = await fixedRate(s, e, measurements);
      }
    }

    // Brokered logins.
    const loginCells = (scenario: 'login-oidc' | 'login-saml'): Cell[] =>
      brokers.map((t) => {
        const o: LoginOptions = scenario === 'login-oidc' ? { upstream: CIS2_UPSTREAM, loginHint: 'gp', scope: 'openid profile' } : { upstream: SAML_UPSTREAM, scope: 'openid profile', credentials: { username: 'alice', password: 'alice-password' } };
        const concurrency = scenario === 'login-oidc' ? LOGIN_CONNECTIONS : SAML_CONNECTIONS;
        const once = async () => {
          const b = brokerBrowser(t.port);
          const tokens = await login(b, o);
          if (!tokens.id_token || !claimsOf(tokens.id_token).sub) throw new Error('no ID token');
          return b.brokerRequests;
        };
        return {
          scenario,
          title: scenario === 'login-oidc' ? 'brokered login through an upstream OIDC provider (fake CIS2, own process), code redeemed' : 'brokered login through a SAML IdP (SimpleSAMLphp), code redeemed',
          unit: 'login',
          target: t,
          connections: concurrency,
          checks: [],
          crypto: LOGIN_CRYPTO[scenario],
          run: (seconds) => flows({ concurrency, seconds, flow: once }),
          after: async () => {
            try {
              await once();
              return [{ ok: true, detail: 'login after the load: ok' }];
            } catch (err) {
              return [{ ok: false, detail: `login after the load: ${(err as Error).message}` }];
            }
          },
        };
      });
    for (const scenario of ['login-oidc', 'login-saml'] as const) {
      if (!PARTS.has(scenario) || (scenario === 'login-saml' && !idp)) continue;
      const cells = loginCells(scenario);
      for (const c of cells) {
        try {
          const o: LoginOptions = scenario === 'login-oidc' ? { upstream: CIS2_UPSTREAM, loginHint: 'gp' } : { upstream: SAML_UPSTREAM, credentials: { username: 'alice', password: 'alice-password' } };
          // The first login creates the account; the second, counted, is what every later one does.
          await login(brokerBrowser(c.target.port), o);
          const b = brokerBrowser(c.target.port);
          await c.target.command('countStart');
          try {
            await login(b, o);
          } finally {
            storeCalls[`${scenario}@${c.target.name}`] = await c.target.command<Record<string, number>>('countStop');
          }
          c.checks.push({ ok: true, detail: `one login: ok (${b.brokerRequests} HTTP requests to the broker, ${b.requests - b.brokerRequests} to the upstream)` });
        } catch (err) {
          c.checks.push({ ok: false, detail: `one login: ${(err as Error).message}` });
        }
      }
      const usable = cells.filter((c) => c.checks.every((k) => k.ok));
      for (const c of cells.filter((x) => !usable.includes(x))) skip(scenario, c.target, c.checks.map((k) => k.detail).join('; '));
      measurements.push(...(await runGroup(scenario, usable, LOGIN_DURATION, stamp)));
    }

    // Consent lookups and delegated-token introspection against the number of consents stored.
    if (PARTS.has('consents')) {
      const intro = TOKEN_SCENARIOS.find((s) => s.id === 'introspect-delegated')!;
      for (const size of SIZES) {
        log(`\n[consents] seeding to ${f0(size)} consents on ${brokers.map((b) => b.name).join(', ')}...`);
        for (const t of brokers) await ensureDelegated(t);
        // SQLite inside its broker (core 0), Redis from here through a store handle of its own (core 1,
        // with redis-server): the two seed in parallel.
        const seeded = await Promise.all(brokers.map((t) => seedTo(t, size)));
        brokers.forEach((t, i) => log(`  ${t.name}: ${seeded[i].seconds.toFixed(1)} s (records ${seeded[i].recordLength} B)`));
        const cells: Cell[] = [];
        for (const [i, t] of brokers.entries()) {
          const l = await t.command<{ size: number; get: ConsentRow['get']; listByGrantee: ConsentRow['listByGrantee']; activeFor: ConsentRow['activeFor']; perList: number }>('lookups', {
            size,
            consentId: t.fx.consentId,
            grantee: t.fx.carer,
            gets: LOOKUPS,
            lists: Math.ceil(LOOKUPS / 2),
            active: Math.ceil(LOOKUPS / 5),
          });
          log(`  ${t.name} lookups µs (mean/p99): get ${l.get.meanUs}/${l.get.p99Us}, listByGrantee ${l.listByGrantee.meanUs}/${l.listByGrantee.p99Us}, activeFor ${l.activeFor.meanUs}/${l.activeFor.p99Us}`);
          consentRows.push({ backend: t.backend, size, seedSeconds: Math.round(seeded[i].seconds * 10) / 10, recordBytes: seeded[i].recordLength, get: l.get, listByGrantee: l.listByGrantee, activeFor: l.activeFor, perList: l.perList });
          const cell = await checkedCell(intro, t, e);
          if (cell) cells.push({ ...cell, scenario: `introspect-delegated@${size}` });
        }
        const ms = await runGroup(`introspect-delegated at ${f0(size)} consents`, cells, DURATION, stamp);
        for (const m of ms) {
          const row = consentRows.find((r) => r.backend === m.backend && r.size === size);
          if (row) row.introspection = { reqPerSec: m.reqPerSec, p50: m.p50, p99: m.p99, errors: m.non2xx + m.errors + m.timeouts + m.mismatches, cpuUsPerOp: m.cpuUsPerOp };
          measurements.push({ ...m, scenario: 'introspect-delegated', consents: size });
        }
      }
    }
  } finally {
    await Promise.all(servers.map((c) => c.stop()));
  }

  // Memory: a fresh broker per backend, idle, then with SESSIONS sessions in its store.
  if (PARTS.has('memory')) {
    if (redis) {
      // The consents and tokens of the runs above go, so used_memory is the sessions' (and the broker's keys).
      const r = new Redis(redis.url);
      await r.flushall();
      r.disconnect();
    }
    for (const [i, backend] of BACKENDS.entries()) {
      const { spec, dir } = await brokerSpec(backend, BACKENDS.length * 2 + i);
      const t = await startServer('broker', backend, spec, dir);
      try {
        await new Promise((r) => setTimeout(r, 2000));
        const read = async () => {
          await t.command('gc');
          await new Promise((r) => setTimeout(r, 1000));
          const m = processMemory(t.pid)!;
          const s = await t.command<{ bytes: number; keys?: number }>('storeInfo');
          return { rss: m.rss, store: s.bytes };
        };
        const idle = await read();
        // Seeded from this process through the same store code and contract, so the broker's RSS holds
        // no trace of the bulk write; then the broker reads every session once, as requests would.
        const seedStore = openStore(spec.store);
        const seconds = await seedSessions(seedStore, SESSIONS);
        await seedStore.close();
        const loaded = await read();
        const { seconds: readSeconds } = await t.command<{ seconds: number }>('readSessions', { count: SESSIONS });
        const touched = await read();
        const row: MemoryRow = {
          backend,
          sessions: SESSIONS,
          idleRssMb: idle.rss / 2 ** 20,
          loadedRssMb: loaded.rss / 2 ** 20,
          readRssMb: touched.rss / 2 ** 20,
          seedSeconds: Math.round(seconds * 10) / 10,
          readSeconds: Math.round(readSeconds * 10) / 10,
          storeBytesIdle: idle.store,
          storeBytesLoaded: touched.store,
          redisServerRssMb: redis && backend === 'redis' ? (processMemory(await redisPid(redis))?.rss ?? NaN) / 2 ** 20 : undefined,
        };
        memory.push(row);
        log(`[memory] ${backend}: broker RSS idle ${row.idleRssMb.toFixed(0)} MB, with ${f0(SESSIONS)} sessions stored ${row.loadedRssMb.toFixed(0)} MB, after reading each once ${row.readRssMb.toFixed(0)} MB; store ${(idle.store / 2 ** 20).toFixed(1)} → ${(touched.store / 2 ** 20).toFixed(1)} MB (seeded in ${row.seedSeconds} s, read in ${row.readSeconds} s)`);
      } finally {
        await t.stop();
      }
    }
  }
  for (const c of cleanups.reverse()) await c().catch(() => {});

  const result: RunResult = {
    startedAt: started.toISOString(),
    stamp,
    wallSeconds: Math.round((performance.now() - wallStart) / 1000),
    command: `npm run bench${envSummary()}`,
    conditions: {
      cpu: `${cpus()[0]?.model ?? '?'}, ${totalCores} cores`,
      loadAverageAtStart: loadStart.map((l) => Math.round(l * 100) / 100),
      pinned,
      serverCore: SERVER_CORE,
      loadgenCore: LOADGEN_CORE,
      node: process.version,
    },
    settings: { duration: DURATION, slices: SLICES, warmup: WARMUP, connections: CONNECTIONS, loginConnections: LOGIN_CONNECTIONS, samlConnections: SAML_CONNECTIONS, loginDuration: LOGIN_DURATION, sizes: SIZES, sessions: SESSIONS, lookups: LOOKUPS, backends: BACKENDS, parts: [...PARTS], logLevel: LOG_LEVEL, fixedScenario: FIXED_SCENARIO, fixedShare: FIXED_SHARE, fixedSeconds: FIXED_SECONDS },
    ceiling,
    assertions: { perServer, fallbacks: Object.fromEntries(pool.fallbacks) },
    measurements: measurements.map((m) => {
      const recipe = m.crypto;
      const c = recipe ? ceilingFor(recipe, ceiling.unitUs) : undefined;
      return { ...m, ceiling: c, vsCeiling: c ? m.reqPerSec / c : undefined };
    }),
    fixed,
    consents: consentRows,
    memory,
    profiles,
    skipped,
    storeCalls,
  };
  const files = writeReport(result, RESULTS, ROOT);
  log(`\nwrote ${files.map((f) => relative(ROOT, f)).join(', ')}`);
  log(`wall time ${result.wallSeconds} s`);
}

async function fixedRate(s: TokenScenario, e: Env, measured: Measurement[]): Promise<FixedRate | undefined> {
  const max = measured.find((m) => m.scenario === s.id && m.kind === 'broker' && m.backend === BACKENDS[0]);
  if (!max) return undefined;
  const t = (await findServer(max.server))!;
  const rate = Math.max(1, Math.round(max.reqPerSec * FIXED_SHARE));
  log(`\n[fixed-rate] ${s.id}@${t.name} at ${f0(rate)} req/s (${FIXED_SHARE * 100}% of ${f0(max.reqPerSec)}) for ${FIXED_SECONDS} s`);
  const s0 = await t.stats();
  const t0 = performance.now();
  const r = await cannon({ port: t.port, connections: CONNECTIONS, seconds: FIXED_SECONDS, overallRate: rate, requests: s.requests(t, e), record: true });
  const wall = (performance.now() - t0) * 1000;
  const s1 = await t.stats();
  const sorted = Float64Array.from(r.latencies).sort();
  // The same rate again, evenly paced (open loop): what a steady 80% load sees.
  let pacedRun: FixedRate['paced'];
  if (s.one) {
    const one = s.one;
    const p0 = await t.stats();
    const pt0 = performance.now();
    const p = await paced({ port: t.port, rate, seconds: FIXED_SECONDS, connections: CONNECTIONS, build: () => one(t, e) });
    const pwall = (performance.now() - pt0) * 1000;
    const p1 = await t.stats();
    const ps = Float64Array.from(p.latencies).sort();
    pacedRun = {
      achievedRate: p.ok2xx / p.seconds,
      p50: round1(percentile(ps, 50)),
      p95: round1(percentile(ps, 95)),
      p99: round1(percentile(ps, 99)),
      errors: p.non2xx + p.errors,
      serverCpuPct: round1((100 * (p1.cpuUserUs + p1.cpuSystemUs - p0.cpuUserUs - p0.cpuSystemUs)) / pwall),
    };
  }
  const out: FixedRate = {
    scenario: s.id,
    server: t.name,
    maxReqPerSec: max.reqPerSec,
    share: FIXED_SHARE,
    targetRate: rate,
    achievedRate: r.total / r.seconds,
    p50: round1(percentile(sorted, 50)),
    p95: round1(percentile(sorted, 95)),
    p99: round1(percentile(sorted, 99)),
    correctedP99: r.correctedP99,
    errors: r.non2xx + r.errors + r.timeouts,
    serverCpuPct: round1((100 * (s1.cpuUserUs + s1.cpuSystemUs - s0.cpuUserUs - s0.cpuSystemUs)) / wall),
    seconds: round1(r.seconds),
    connections: CONNECTIONS,
    paced: pacedRun,
  };
  log(`  autocannon overallRate: achieved ${f0(out.achievedRate)} req/s, p50 ${out.p50} ms, p99 ${out.p99} ms (corrected for coordinated omission: ${out.correctedP99} ms), server CPU ${out.serverCpuPct}%`);
  if (out.paced) log(`  paced (open loop): achieved ${f0(out.paced.achievedRate)} req/s, p50 ${out.paced.p50} ms, p99 ${out.paced.p99} ms, server CPU ${out.paced.serverCpuPct}%`);
  return out;
}

async function findServer(name: string): Promise<Child | undefined> {
  return serverRegistry.find((s) => s.name === name && s.proc.exitCode === null);
}

async function redisPid(peer: RedisPeer): Promise<number> {
  const r = new Redis(peer.url);
  try {
    const info = await r.info('server');
    return Number(/process_id:(\d+)/.exec(info)?.[1]);
  } finally {
    r.disconnect();
  }
}

function envSummary(): string {
  const set = Object.keys(env)
    .filter((k) => k.startsWith('BENCH_') && k !== 'BENCH_PINNED' && k !== 'BENCH_SPEC')
    .sort()
    .map((k) => `${k}=${env[k]}`);
  return set.length ? ` (with ${set.join(' ')})` : '';
}

await main().catch((err: unknown) => {
  log(err instanceof Error ? (err.stack ?? err.message) : String(err));
  killAll();
  process.exit(1);
});
process.exit(0);
