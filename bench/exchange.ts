import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import autocannon from 'autocannon';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { CLIENT_ID, ISSUER, SCOPE, type ChildMessage, type ParentMessage } from './servers/common.ts';

// `node bench/exchange.ts`: RFC 8693 token exchanges per second on one broker process (the real
// composition root, SQLite store, audit ledger on), with private_key_jwt (ES256, a fresh pre-signed
// assertion per request), for two subject tokens:
//   broker AT   the broker's own ES256 access token of a user grant (signature, revocation list and
//               grant lookup, then policy, then an ES256 JWT access token and an audit entry);
//   CIS2 ID     an RS256 ID token of a CIS2-like issuer, its JWKS served by this driver on loopback
//               (fetched once, then cached).
// and, as the yardstick on the same process, a plain client_credentials grant (what bench/run.ts
// measures). The broker runs pinned to core 0 (taskset), this driver and autocannon on core 1, as
// bench/run.ts does. The scenarios alternate in slices so a noisy patch hits them alike; on a shared
// machine, the ratio to client_credentials and the CPU per exchange say more than req/s.
//
// Environment: BENCH_DURATION (15 s per scenario), BENCH_SLICES (5), BENCH_WARMUP (3), BENCH_CONNECTIONS (50),
// BENCH_LOG_LEVEL (silent), BENCH_PROFILE=1 (run the broker under --cpu-prof into bench/results/profiles/).
// Writes bench/results/exchange-<timestamp>.json and prints a table.

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results');
const env = process.env;
const num = (name: string, fallback: number): number => {
  const v = Number(env[name] ?? fallback);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
};
const DURATION = num('BENCH_DURATION', 15);
const SLICES = Math.round(num('BENCH_SLICES', 5));
const WARMUP = num('BENCH_WARMUP', 3);
const CONNECTIONS = Math.round(num('BENCH_CONNECTIONS', 50));
const LOG_LEVEL = env.BENCH_LOG_LEVEL ?? 'silent';
const TARGET = 1500;
const RESOURCE2 = 'https://api2.test';
const CIS2_AUDIENCE = 'bench-cis2-client';
const TE = 'urn:ietf:params:oauth:grant-type:token-exchange';

const pinned = spawnSync('sh', ['-c', 'command -v taskset'], { stdio: 'ignore' }).status === 0 && cpus().length >= 2;
if (pinned && env.BENCH_PINNED !== '1') {
  const r = spawnSync('taskset', ['-c', '1', process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit', env: { ...env, BENCH_PINNED: '1' } });
  process.exit(r.status ?? 1);
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const f0 = (n: number) => Math.round(n).toLocaleString('en-GB');

// ---------------------------------------------------------------------------------------------------
// The CIS2-like issuer: an RS256 key and its JWKS on loopback

async function startIssuer(): Promise<{ issuer: string; jwksUri: string; key: CryptoKey; kid: string; server: Server }> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
  const kid = 'bench-cis2-rs256';
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  const server = createServer((req, res) => {
    if (req.url === '/cis2/jwks') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { issuer: `${base}/cis2`, jwksUri: `${base}/cis2/jwks`, key: privateKey, kid, server };
}

// ---------------------------------------------------------------------------------------------------
// The broker child

interface Child {
  proc: ChildProcess;
  port: number;
  subjectToken: string;
  stats(): Promise<Extract<ChildMessage, { type: 'stats' }>>;
  stop(): Promise<void>;
}

function waitFor<T extends ChildMessage['type']>(proc: ChildProcess, type: T, ms: number): Promise<Extract<ChildMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      proc.off('message', on);
      proc.off('exit', exited);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no "${type}" from the broker within ${ms} ms`));
    }, ms);
    const on = (m: ChildMessage) => {
      if (m.type !== type) return;
      cleanup();
      resolve(m as Extract<ChildMessage, { type: T }>);
    };
    const exited = (code: number | null) => {
      cleanup();
      reject(new Error(`broker exited (${code}) before "${type}"`));
    };
    proc.on('message', on);
    proc.once('exit', exited);
  });
}

async function startBroker(clientJwk: JWK, issuer: { issuer: string; jwksUri: string }): Promise<Child> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-exchange-'));
  const spec = { store: `sqlite:${join(dir, 'store.db')}`, clientJwk, logLevel: LOG_LEVEL, cis2Issuer: issuer.issuer, cis2JwksUri: issuer.jwksUri };
  const file = join(HERE, 'servers', 'exchange.ts');
  const profile = env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${join(RESULTS, 'profiles')}`, `--cpu-prof-name=exchange-${Date.now()}.cpuprofile`] : [];
  const [cmd, args] = pinned ? ['taskset', ['-c', '0', process.execPath, ...profile, file]] : [process.execPath, [...profile, file]];
  const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { ...env, BENCH_SPEC: JSON.stringify(spec) } });
  process.once('exit', () => proc.kill('SIGKILL'));
  const [result, ready] = await Promise.all([waitFor(proc, 'result', 60_000), waitFor(proc, 'ready', 60_000)]);
  return {
    proc,
    port: ready.port,
    subjectToken: String(result.subjectToken),
    async stats() {
      const reply = waitFor(proc, 'stats', 5000);
      proc.send({ type: 'stats' } satisfies ParentMessage);
      return reply;
    },
    async stop() {
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.send({ type: 'stop' } satisfies ParentMessage);
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Requests

interface Scenario {
  name: string;
  label: string;
  bodyPrefix: string;
  assertions: string[];
  cursor: number;
}

function bodyPrefix(subjectToken: string, subjectType: string): string {
  return new URLSearchParams({
    grant_type: TE,
    subject_token: subjectToken,
    subject_token_type: `urn:ietf:params:oauth:token-type:${subjectType}`,
    resource: RESOURCE2,
    scope: SCOPE,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  }).toString() + '&client_assertion=';
}

async function presign(key: CryptoKey, kid: string, count: number, ttl: number): Promise<string[]> {
  const now = Math.floor(Date.now() / 1000);
  const out: string[] = [];
  for (let i = 0; i < count; i += 500) {
    const batch: Promise<string>[] = [];
    for (let j = i; j < Math.min(count, i + 500); j++) {
      batch.push(new SignJWT({ iss: CLIENT_ID, sub: CLIENT_ID, aud: ISSUER, jti: randomUUID(), iat: now, exp: now + ttl }).setProtectedHeader({ alg: 'ES256', kid }).sign(key));
    }
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

function next(s: Scenario): string {
  const a = s.assertions[s.cursor++];
  if (a === undefined) throw new Error(`${s.name}: ran out of pre-signed assertions; raise the pool size`);
  return s.bodyPrefix + a;
}

async function post(port: number, body: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** One exchange must succeed with an at+jwt for RESOURCE2 and an act chain; its assertion replayed must fail. */
async function sanity(port: number, s: Scenario): Promise<string[]> {
  const body = next(s);
  const first = await post(port, body);
  const problems: string[] = [];
  const exchange = s.name !== 'cc';
  if (first.status !== 200 || (exchange && first.body.issued_token_type !== 'urn:ietf:params:oauth:token-type:access_token')) problems.push(`grant: ${first.status} ${JSON.stringify(first.body)}`);
  else if (exchange) {
    const claims = decodeJwt(String(first.body.access_token));
    if (claims.aud !== RESOURCE2 || (claims.act as { sub?: string } | undefined)?.sub !== CLIENT_ID) problems.push(`exchanged token: ${JSON.stringify(claims)}`);
  }
  const replay = await post(port, body);
  if (replay.status !== 401 || replay.body.error !== 'invalid_client') problems.push(`replayed assertion: ${replay.status} ${JSON.stringify(replay.body)}`);
  return problems;
}

interface Slice {
  seconds: number;
  total: number;
  ok: number;
  non2xx: number;
  errors: number;
  latencies: number[];
  cpuUs: number;
}

function load(port: number, s: Scenario, seconds: number): Promise<Omit<Slice, 'cpuUs'>> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections: CONNECTIONS,
        duration: seconds,
        timeout: 10,
        requests: [{ method: 'POST', path: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded' }, setupRequest: (req) => ({ ...req, body: next(s) }) }],
      },
      (err, r) => (err ? reject(err) : resolve({ seconds: r.duration, total: r.requests.total, ok: r['2xx'], non2xx: r.non2xx, errors: r.errors, latencies })),
    );
    (instance as NodeJS.EventEmitter).on('response', (_c: unknown, _s: number, _b: number, ms: number) => latencies.push(ms));
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] : NaN;
}

async function main(): Promise<void> {
  const started = new Date();
  const issuer = await startIssuer();
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const clientKid = 'bench-svc-es256';
  const clientJwk: JWK = { ...(await exportJWK(publicKey)), kid: clientKid, alg: 'ES256', use: 'sig' };
  const broker = await startBroker(clientJwk, issuer);
  const idToken = await new SignJWT({ iss: issuer.issuer, aud: CIS2_AUDIENCE, sub: '555057896106', authentication_assurance_level: '3', acr: 'AAL3_ANY', amr: ['N3_SMARTCARD'], auth_time: Math.floor(Date.now() / 1000) })
    .setProtectedHeader({ alg: 'RS256', kid: issuer.kid, typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime('2h')
    .setJti(randomUUID())
    .sign(issuer.key);

  // Comfortably above what one core can do for the whole run.
  const perScenario = Math.ceil(3500 * (WARMUP + DURATION + 5));
  const ttl = Math.round(2 * (WARMUP + DURATION) * 2 + 300);
  log(`pre-signing ${f0(3 * perScenario)} client assertions...`);
  const scenarios: Scenario[] = [
    { name: 'broker-at', label: 'broker access token (ES256, user grant)', bodyPrefix: bodyPrefix(broker.subjectToken, 'access_token'), assertions: await presign(privateKey, clientKid, perScenario, ttl), cursor: 0 },
    { name: 'cis2-id', label: 'CIS2-like ID token (RS256, remote JWKS)', bodyPrefix: bodyPrefix(idToken, 'id_token'), assertions: await presign(privateKey, clientKid, perScenario, ttl), cursor: 0 },
    {
      name: 'cc',
      label: 'yardstick: client_credentials (no exchange)',
      bodyPrefix: `${new URLSearchParams({ grant_type: 'client_credentials', resource: RESOURCE2, scope: SCOPE, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' })}&client_assertion=`,
      assertions: await presign(privateKey, clientKid, perScenario, ttl),
      cursor: 0,
    },
  ];
  const results = new Map<string, Slice[]>();
  const checks = new Map<string, string[]>();
  try {
    for (const s of scenarios) {
      const problems = await sanity(broker.port, s);
      checks.set(s.name, problems);
      log(`  ${s.label}: ${problems.length ? `FAIL ${problems.join('; ')}` : 'ok (exchange issued; replayed assertion refused)'}`);
      if (problems.length) throw new Error('sanity check failed');
      results.set(s.name, []);
    }
    for (const s of scenarios) {
      log(`warm-up ${s.name}: ${WARMUP} s`);
      await load(broker.port, s, WARMUP);
    }
    const sliceSeconds = DURATION / SLICES;
    for (let k = 0; k < SLICES; k++) {
      const order = scenarios.map((_, i) => scenarios[(i + k) % scenarios.length]);
      const line: string[] = [];
      for (const s of order) {
        const before = await broker.stats();
        const r = await load(broker.port, s, sliceSeconds);
        const after = await broker.stats();
        results.get(s.name)!.push({ ...r, cpuUs: after.cpuUserUs + after.cpuSystemUs - before.cpuUserUs - before.cpuSystemUs });
        line.push(`${s.name} ${f0(r.total / r.seconds)}${r.non2xx + r.errors ? ` (${r.non2xx + r.errors} errors)` : ''}`);
      }
      log(`  slice ${k + 1}: ${line.join(', ')} req/s`);
    }
    for (const s of scenarios) {
      const after = await sanity(broker.port, s);
      if (after.length) log(`  ${s.name}: FAIL after load: ${after.join('; ')}`);
      checks.get(s.name)!.push(...after);
    }
  } finally {
    await broker.stop();
    issuer.server.close();
  }

  const rows = scenarios.map((s) => {
    const slices = results.get(s.name) ?? [];
    const sum = (f: (x: Slice) => number) => slices.reduce((a, x) => a + f(x), 0);
    const all = slices.flatMap((x) => x.latencies).sort((a, b) => a - b);
    const seconds = sum((x) => x.seconds);
    return {
      scenario: s.name,
      label: s.label,
      exchangesPerSec: sum((x) => x.ok) / seconds,
      reqPerSec: sum((x) => x.total) / seconds,
      sliceReqPerSec: slices.map((x) => Math.round(x.total / x.seconds)),
      p50: percentile(all, 50),
      p99: percentile(all, 99),
      errors: sum((x) => x.non2xx + x.errors),
      cpuUsPerExchange: sum((x) => x.cpuUs) / Math.max(1, sum((x) => x.total)),
      checks: checks.get(s.name) ?? [],
    };
  });
  const cc = rows.find((r) => r.scenario === 'cc');
  const table = [
    '| subject token | grants/s (2xx) | per slice | p50 ms | p99 ms | errors | server CPU µs per grant | capacity at 100% of one core | ÷ client_credentials |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.label} | ${f0(r.exchangesPerSec)} | ${r.sliceReqPerSec.join(' / ')} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.errors} | ${f0(r.cpuUsPerExchange)} | ${f0(1e6 / r.cpuUsPerExchange)}/s | ${cc ? (r.exchangesPerSec / cc.exchangesPerSec).toFixed(2) : 'n/a'} |`),
  ].join('\n');
  const verdicts = rows.filter((r) => r.scenario !== 'cc').map((r) => `${r.scenario}: ${f0(r.exchangesPerSec)}/s → ${r.exchangesPerSec >= TARGET ? 'PASS' : 'FAIL'} (target ≥ ${f0(TARGET)}/s on one core; by CPU per exchange ${f0(1e6 / r.cpuUsPerExchange)}/s)`);
  log('');
  log(table);
  log('');
  for (const v of verdicts) log(v);
  mkdirSync(RESULTS, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  writeFileSync(
    join(RESULTS, `exchange-${stamp}.json`),
    JSON.stringify({ started: started.toISOString(), node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, loadavg: loadavg(), pinned, duration: DURATION, slices: SLICES, connections: CONNECTIONS, rows }, null, 2),
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    log(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
