import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { consentChart, throughputChart } from '../chart.ts';
import { ANCHORS } from './anchors.ts';
import type { Check } from './catalogue.ts';
import type { Timing } from './seed.ts';
import type { Row } from '../profile-summary.ts';

// The run's JSON, bench/results/latest.md and the SVG charts. Every figure carries its conditions:
// TLS off, which core, which backend, how many connections.

export interface Measurement {
  scenario: string;
  title: string;
  server: string;
  kind: string;
  backend: string;
  unit: 'req' | 'login';
  connections: number;
  /** Stored consents, for the scaling rows. */
  consents?: number;
  reqPerSec: number;
  okPerSec: number;
  sliceRates: number[];
  p50: number;
  p95: number;
  p99: number;
  max: number;
  seconds: number;
  total: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  mismatches: number;
  statusCodes: Record<string, number>;
  firstError?: string;
  httpPerOp?: number;
  serverCpuPct: number;
  cpuUsPerOp: number;
  loadgenCpuPct: number;
  loadCorePct?: number;
  otherOnServerCorePct?: number;
  stealPct?: number;
  checks: Check[];
  crypto?: Partial<Record<string, number>>;
  ceiling?: number;
  vsCeiling?: number;
}

export interface FixedRate {
  scenario: string;
  server: string;
  maxReqPerSec: number;
  share: number;
  targetRate: number;
  achievedRate: number;
  p50: number;
  p95: number;
  p99: number;
  correctedP99?: number;
  errors: number;
  serverCpuPct: number;
  seconds: number;
  connections: number;
  /** The same rate, evenly paced (open loop, undici), latency from each scheduled send time. */
  paced?: { achievedRate: number; p50: number; p95: number; p99: number; errors: number; serverCpuPct: number };
}

export interface ConsentRow {
  backend: string;
  size: number;
  seedSeconds: number;
  recordBytes: number;
  get: Timing;
  listByGrantee: Timing;
  activeFor: Timing;
  perList: number;
  introspection?: { reqPerSec: number; p50: number; p99: number; errors: number; cpuUsPerOp: number };
}

export interface MemoryRow {
  backend: string;
  sessions: number;
  idleRssMb: number;
  /** After the sessions were written (by the driver, through the store contract). */
  loadedRssMb: number;
  /** After the broker read each session once through its store. */
  readRssMb: number;
  seedSeconds: number;
  readSeconds: number;
  storeBytesIdle: number;
  storeBytesLoaded: number;
  redisServerRssMb?: number;
}

export interface ProfileRow {
  scenario: string;
  server: string;
  file: string;
  busyMs: number;
  requests: number;
  selfByFile: Row[];
  selfByFunction: Row[];
  inclusiveByFunction: Row[];
}

export interface RunResult {
  startedAt: string;
  stamp: string;
  wallSeconds: number;
  command: string;
  conditions: { cpu: string; loadAverageAtStart: number[]; pinned: boolean; serverCore: string; loadgenCore: string; node: string };
  settings: Record<string, unknown>;
  ceiling: { opsPerSecond: number; concurrency: number; unitUs: Record<string, number> };
  assertions: { perServer: number; fallbacks: Record<string, number> };
  measurements: Measurement[];
  fixed?: FixedRate;
  consents: ConsentRow[];
  memory: MemoryRow[];
  profiles: ProfileRow[];
  skipped: Array<{ scenario: string; server: string; reason: string }>;
  /** Store and ledger calls of one login, by scenario@server. */
  storeCalls?: Record<string, Record<string, number>>;
}

const f0 = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? 'n/a' : Math.round(n).toLocaleString('en-GB'));
const f1 = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(1));
const f2 = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(2));
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const BACKEND: Record<string, string> = { sqlite: 'SQLite (embedded)', redis: 'Redis' };
const KIND: Record<string, string> = { broker: 'broker', bare: 'bare oidc-provider', provider: 'broker provider, no Koa (diagnostic)' };
const label = (m: Measurement) => `${KIND[m.kind] ?? m.kind} · ${BACKEND[m.backend] ?? m.backend}`;
const errorsOf = (m: Measurement) => m.non2xx + m.errors + m.timeouts + m.mismatches;

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

function gitRevision(root: string): string {
  const rev = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  if (rev.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' });
  return rev.stdout.trim() + (dirty.stdout.trim() ? ' (uncommitted changes)' : '');
}

function redisVersion(): string {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return /v=([\d.]+)/.exec(r.stdout ?? '')?.[1] ?? '?';
}

/** The broker row and its bare oidc-provider counterpart on the same backend. */
function bareOf(ms: Measurement[], m: Measurement): Measurement | undefined {
  if (m.kind === 'bare') return undefined;
  return ms.find((x) => x.kind === 'bare' && x.scenario === m.scenario && x.backend === m.backend && x.consents === m.consents);
}

function find(ms: Measurement[], scenario: string, backend = 'sqlite', kind = 'broker'): Measurement | undefined {
  return ms.find((m) => m.scenario === scenario && m.backend === backend && m.kind === kind);
}

interface Verdict {
  target: string;
  result: string;
  pass: boolean | undefined;
}

function verdicts(r: RunResult): Verdict[] {
  const ms = r.measurements;
  const out: Verdict[] = [];
  const capacity = (m: Measurement) => `server used ${f0(m.serverCpuPct)}% of its core; at 100% of the core its CPU per request gives ${f0(1e6 / m.cpuUsPerOp)}/s`;
  const cc = find(ms, 'cc-pkjwt-jwt');
  const ccBare = cc && bareOf(ms, cc);
  if (cc && ccBare) {
    const ratio = cc.reqPerSec / ccBare.reqPerSec;
    const byCpu = ccBare.cpuUsPerOp / cc.cpuUsPerOp;
    const slices = cc.sliceRates.map((v, i) => v / (ccBare.sliceRates[i] ?? NaN)).filter(Number.isFinite).sort((a, b) => a - b);
    out.push({ target: 'client_credentials + private_key_jwt ≥ 0.85 × bare oidc-provider (SQLite)', result: `${f2(ratio)} by req/s (per-slice ${f2(slices[0])}–${f2(slices[slices.length - 1])}); ${f2(byCpu)} by server CPU per request`, pass: ratio >= 0.85 });
  }
  if (cc) out.push({ target: 'client_credentials + private_key_jwt ≥ 2,000/s on one core (SQLite)', result: `${f0(cc.okPerSec)}/s (${capacity(cc)})`, pass: cc.okPerSec >= 2000 });
  for (const id of ['exchange-at', 'exchange-idt', 'exchange-delegated']) {
    const m = find(ms, id);
    if (m) out.push({ target: `token exchange ≥ 1,500/s (${m.title.replace('token exchange: ', '')}, SQLite)`, result: `${f0(m.okPerSec)}/s (${capacity(m)})`, pass: m.okPerSec >= 1500 });
  }
  const io = find(ms, 'introspect-opaque');
  if (io) out.push({ target: 'introspection ≥ 5,000/s (opaque, SQLite)', result: `${f0(io.okPerSec)}/s (${capacity(io)})`, pass: io.okPerSec >= 5000 });
  const sizes = [...new Set(r.consents.map((c) => c.size))].sort((a, b) => a - b);
  const idel = ms.find((m) => m.scenario === 'introspect-delegated' && m.backend === 'sqlite' && m.consents === sizes[0]);
  if (idel) out.push({ target: `introspection ≥ 5,000/s (delegated, ${f0(sizes[0])} consents, SQLite)`, result: `${f0(idel.okPerSec)}/s (${capacity(idel)})`, pass: idel.okPerSec >= 5000 });
  const lo = find(ms, 'login-oidc');
  if (lo) out.push({ target: 'brokered OIDC login ≥ 300/s (SQLite)', result: `${f0(lo.okPerSec)} logins/s, ${f1(lo.httpPerOp)} HTTP requests to the broker each (${capacity(lo)}; load generator core ${f0(lo.loadCorePct)}% busy)`, pass: lo.okPerSec >= 300 });
  if (sizes.length > 1) {
    for (const backend of ['sqlite', 'redis']) {
      const rows = r.consents.filter((c) => c.backend === backend).sort((a, b) => a.size - b.size);
      if (rows.length < 2) continue;
      const first = rows[0];
      const last = rows[rows.length - 1];
      const g = last.get.meanUs / first.get.meanUs;
      const a = last.activeFor.meanUs / first.activeFor.meanUs;
      const l = last.listByGrantee.meanUs / first.listByGrantee.meanUs;
      const i = first.introspection && last.introspection ? first.introspection.cpuUsPerOp > 0 ? last.introspection.cpuUsPerOp / first.introspection.cpuUsPerOp : NaN : NaN;
      const worst = Math.max(g, a, l, Number.isFinite(i) ? i : 0);
      out.push({
        target: `lookup cost flat within 2× from ${f0(first.size)} to ${f0(last.size)} consents (${BACKEND[backend]})`,
        result: `× ${f2(g)} get, × ${f2(l)} listByGrantee, × ${f2(a)} activeFor (mean µs); × ${f2(i)} server CPU per delegated introspection`,
        pass: worst <= 2,
      });
    }
  }
  const measured = new Set(ms.map((m) => `${m.scenario}|${m.server}`));
  for (const x of r.skipped ?? []) {
    if (x.server !== 'broker-sqlite' || measured.has(`${x.scenario}|${x.server}`)) continue;
    out.push({ target: `${x.scenario} (SQLite)`, result: `not measured: ${x.reason}`, pass: undefined });
  }
  if (r.fixed) {
    const f = r.fixed;
    out.push({
      target: `p99 < 50 ms at ${f.share * 100}% of max throughput (${f.scenario}, ${f.server})`,
      result: `autocannon overallRate: p99 ${f1(f.p99)} ms at ${f0(f.achievedRate)} req/s (coordinated-omission-corrected ${f1(f.correctedP99)} ms)${f.paced ? `; evenly paced at the same rate: p99 ${f1(f.paced.p99)} ms at ${f0(f.paced.achievedRate)} req/s` : ''}`,
      pass: f.p99 < 50,
    });
  }
  return out;
}

function table(r: RunResult): string {
  const ms = r.measurements.filter((m) => m.consents === undefined || m.consents === Math.min(...r.consents.map((c) => c.size)));
  const rows = ms.map((m) => {
    const bare = bareOf(r.measurements, m);
    const unit = m.unit === 'login' ? 'logins/s' : 'req/s';
    const title = m.consents !== undefined ? `${m.title} (${f0(m.consents)} consents stored)` : m.title;
    return `| ${title} | ${label(m)} | ${f0(m.okPerSec)} ${unit} | ${f1(m.p50)} | ${f1(m.p95)} | ${f1(m.p99)} | ${errorsOf(m)} | ${f0(m.cpuUsPerOp)} | ${bare ? f2(m.reqPerSec / bare.reqPerSec) : ''} | ${m.vsCeiling !== undefined ? `${f2(m.vsCeiling)} of ${f0(m.ceiling)}` : ''} |`;
  });
  return [
    '| scenario | server · store | throughput (2xx) | p50 ms | p95 ms | p99 ms | errors | server CPU µs/op | ÷ bare | ÷ crypto ceiling |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
}

function attention(r: RunResult): string[] {
  const out: string[] = [];
  for (const m of r.measurements) {
    const where = `${m.scenario}${m.consents ? `@${m.consents}` : ''} on ${label(m)}`;
    if (errorsOf(m)) out.push(`${where}: ${m.non2xx} non-2xx, ${m.errors} errors, ${m.timeouts} timeouts, ${m.mismatches} body mismatches; status codes ${JSON.stringify(m.statusCodes)}${m.firstError ? `; first error: ${m.firstError}` : ''}`);
    for (const c of m.checks) if (!c.ok) out.push(`${where}: check failed: ${c.detail}`);
    if (r.conditions.pinned && m.serverCpuPct < 85) {
      out.push(`${where}: the server used only ${f0(m.serverCpuPct)}% of its core${(m.otherOnServerCorePct ?? 0) > 5 ? ` (other processes took ${f0(m.otherOnServerCorePct)}% of it)` : (m.loadCorePct ?? 0) > 90 ? ` - the load generator's core was ${f0(m.loadCorePct)}% busy and is the limit` : ''}`);
    } else if ((m.otherOnServerCorePct ?? 0) > 5) out.push(`${where}: other processes used ${f0(m.otherOnServerCorePct)}% of the server core while it was measured`);
    if ((m.stealPct ?? 0) > 5) out.push(`${where}: hypervisor steal ${f0(m.stealPct)}% on the server core`);
    if (m.sliceRates.length > 1) {
      const spread = Math.max(...m.sliceRates) / Math.min(...m.sliceRates);
      if (spread > 1.3) out.push(`${where}: slices varied ${f0(Math.min(...m.sliceRates))}–${f0(Math.max(...m.sliceRates))}/s (noisy machine: compare CPU µs/op)`);
    }
  }
  for (const x of r.skipped ?? []) out.push(`${x.scenario} on ${x.server}: NOT MEASURED - ${x.reason}`);
  for (const [server, n] of Object.entries(r.assertions.fallbacks)) if (n) out.push(`${server}: the assertion pool ran out; ${n} assertions were signed on the load generator's core during the run`);
  return out;
}

export function markdown(r: RunResult, root: string): string {
  const ms = r.measurements;
  const v = verdicts(r);
  const sizes = [...new Set(r.consents.map((c) => c.size))].sort((a, b) => a - b);
  const conditions: Array<[string, string]> = [
    ['date', r.startedAt],
    ['revision', gitRevision(root)],
    ['command', `\`${r.command}\`; wall time ${r.wallSeconds} s`],
    ['CPU', `${r.conditions.cpu}; load average at start ${r.conditions.loadAverageAtStart.join(' ')} (a shared machine: other work runs on both cores)`],
    ['pinning', r.conditions.pinned ? `each server under test in its own process on core ${r.conditions.serverCore} (taskset, libuv threadpool included); on core ${r.conditions.loadgenCore}: the driver, autocannon, redis-server, the fake CIS2 process, SimpleSAMLphp (php -S), the external issuer's JWKS` : 'none (taskset missing or one core)'],
    ['TLS', 'off everywhere (plain HTTP on 127.0.0.1; keep-alive)'],
    ['Node', r.conditions.node],
    ['packages', `oidc-provider ${versionOf('oidc-provider')}, jose ${versionOf('jose')}, koa ${versionOf('koa')}, ioredis ${versionOf('ioredis')}, autocannon ${versionOf('autocannon')}; redis-server ${redisVersion()}`],
    ['stores', 'SQLite: node:sqlite, WAL, a fresh file per server in the temp dir. Redis: one local redis-server (no persistence), a database per server'],
    ['load', `autocannon, ${String(r.settings.connections)} keep-alive connections, pipelining 1; each cell ${String(r.settings.warmup)} s warm-up, then ${String(r.settings.duration)} s in ${String(r.settings.slices)} slices interleaved with the other cells of its group. Logins: ${String(r.settings.loginConnections)} (OIDC) and ${String(r.settings.samlConnections)} (SAML) concurrent browsers for ${String(r.settings.loginDuration)} s`],
    ['broker', 'the real composition root (createBroker), profile none, audit ledger on, rate limits off (one load generator on one IP), log level silent'],
  ];

  const consentTable = r.consents.length
    ? [
        '| store | consents | seeded in | get µs mean / p99 | listByGrantee µs mean / p99 | activeFor µs mean / p99 | delegated introspection req/s | p99 ms | server CPU µs/req |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
        ...r.consents.map(
          (c) =>
            `| ${BACKEND[c.backend]} | ${f0(c.size)} | ${f1(c.seedSeconds)} s | ${f1(c.get.meanUs)} / ${f1(c.get.p99Us)} | ${f1(c.listByGrantee.meanUs)} / ${f1(c.listByGrantee.p99Us)} | ${f1(c.activeFor.meanUs)} / ${f1(c.activeFor.p99Us)} | ${f0(c.introspection?.reqPerSec)} | ${f1(c.introspection?.p99)} | ${f0(c.introspection?.cpuUsPerOp)} |`,
        ),
      ].join('\n')
    : '';

  const memTable = r.memory.length
    ? [
        '| store | broker RSS idle | with the sessions stored | after reading each once | sessions | store size idle → with sessions | redis-server RSS |',
        '|---|---:|---:|---:|---:|---:|---:|',
        ...r.memory.map((m) => `| ${BACKEND[m.backend]} | ${f0(m.idleRssMb)} MB | ${f0(m.loadedRssMb)} MB | ${f0(m.readRssMb)} MB | ${f0(m.sessions)} (written in ${f1(m.seedSeconds)} s, read in ${f1(m.readSeconds)} s) | ${mb(m.storeBytesIdle)} → ${mb(m.storeBytesLoaded)} MB${m.backend === 'redis' ? ' (used_memory)' : ' (file + WAL)'} | ${m.redisServerRssMb !== undefined ? `${f0(m.redisServerRssMb)} MB` : ''} |`),
      ].join('\n')
    : '';

  const anchorRows = ANCHORS.map((a) => {
    const ours = a.scenario === 'memory' ? r.memory.map((m) => `${BACKEND[m.backend]}: broker ${f0(m.idleRssMb)} MB idle, ${f0(m.readRssMb)} MB with ${f0(m.sessions)} sessions read; store +${mb(m.storeBytesLoaded - m.storeBytesIdle)} MB`).join('; ') : a.scenario ? ms.filter((m) => m.scenario === a.scenario && m.kind === 'broker' && (m.consents === undefined || m.consents === sizes[0])).map((m) => `${f0(m.okPerSec)}/s (${m.backend})`).join(', ') : '';
    return `| ${a.system} | ${a.figure} | ${a.conditions} | ${ours || 'n/a'} |`;
  });

  const detail = [
    '| scenario | server · store | connections | per slice /s | server CPU | others on server core | load-generator core | p max ms | status codes |',
    '|---|---|---:|---|---:|---:|---:|---:|---|',
    ...ms.map((m) => `| ${m.scenario}${m.consents ? `@${f0(m.consents)}` : ''} | ${label(m)} | ${m.connections} | ${m.sliceRates.map(f0).join(' / ')} | ${f0(m.serverCpuPct)}% | ${m.otherOnServerCorePct === undefined ? 'n/a' : `${f0(m.otherOnServerCorePct)}%`} | ${m.loadCorePct === undefined ? 'n/a' : `${f0(m.loadCorePct)}%`} | ${f1(m.max)} | ${JSON.stringify(m.statusCodes)} |`),
  ].join('\n');

  const profiles = r.profiles.map((p) =>
    [
      `### ${p.scenario} on ${p.server} (${f0(p.busyMs)} ms busy, ${f0(p.requests)} requests, ${f0((p.busyMs * 1000) / Math.max(1, p.requests))} µs each; \`${p.file}\`)`,
      '',
      '| self time by file / package | % of busy |',
      '|---|---:|',
      ...p.selfByFile.map((x) => `| ${x.key} | ${f1(x.pct)} |`),
      '',
      '| self time by function | % |',
      '|---|---:|',
      ...p.selfByFunction.map((x) => `| \`${x.key}\` | ${f1(x.pct)} |`),
      '',
      '| inclusive time by function | % |',
      '|---|---:|',
      ...p.inclusiveByFunction.map((x) => `| \`${x.key}\` | ${f1(x.pct)} |`),
      '',
    ].join('\n'),
  );

  const att = attention(r);
  return [
    '# Benchmark: the broker beside its baselines',
    '',
    `Written by \`npm run bench\` (bench/run.ts) on ${r.startedAt}; every figure below is in \`bench/results/${r.stamp}.json\`. Charts: [throughput](latest-throughput.svg), [lookup cost against stored consents](latest-consents.svg).`,
    '',
    '## Conditions',
    '',
    '| | |',
    '|---|---|',
    ...conditions.map(([k, val]) => `| ${k} | ${val} |`),
    '',
    '## Results (one core per server, TLS off)',
    '',
    table(r),
    '',
    '- throughput = 2xx responses (or completed logins) per second, over all slices. p50/p95/p99 over every response (logins: whole login, all its requests).',
    '- server CPU µs/op = the server process\'s CPU time (all threads) per request or login: less sensitive than req/s to neighbours on a shared machine; 1,000,000 ÷ it is what a whole core would do.',
    '- ÷ bare = broker req/s ÷ bare oidc-provider req/s on the same store, measured interleaved in the same group.',
    `- ÷ crypto ceiling = req/s ÷ the rate at which one core could only make and check that scenario's signatures (jose, no HTTP, no store); unit costs on the servers' core: ${Object.entries(r.ceiling.unitUs).map(([k, val]) => `${k} ${val} µs`).join(', ')}. Opaque tokens and opaque introspection carry no signature: no ceiling.`,
    '',
    '![throughput per scenario](latest-throughput.svg)',
    '',
    '## Targets',
    '',
    '| target | measured | verdict |',
    '|---|---|---|',
    ...v.map((x) => `| ${x.target} | ${x.result} | ${x.pass === undefined ? 'n/a' : x.pass ? 'PASS' : '**FAIL**'} |`),
    '',
    ...(r.fixed
      ? [
          '## Latency at a fixed rate',
          '',
          `${r.fixed.scenario} on ${r.fixed.server}, ${f0(r.fixed.targetRate)} req/s (${r.fixed.share * 100}% of the ${f0(r.fixed.maxReqPerSec)} req/s measured above), ${r.fixed.connections} keep-alive connections, ${f1(r.fixed.seconds)} s each:`,
          '',
          '| load | achieved | p50 ms | p95 ms | p99 ms | errors | server CPU |',
          '|---|---:|---:|---:|---:|---:|---:|',
          `| autocannon \`overallRate\` | ${f0(r.fixed.achievedRate)} req/s | ${f1(r.fixed.p50)} | ${f1(r.fixed.p95)} | **${f1(r.fixed.p99)}** (corrected for coordinated omission: ${f1(r.fixed.correctedP99)}) | ${r.fixed.errors} | ${f0(r.fixed.serverCpuPct)}% |`,
          ...(r.fixed.paced ? [`| evenly paced, open loop (undici) | ${f0(r.fixed.paced.achievedRate)} req/s | ${f1(r.fixed.paced.p50)} | ${f1(r.fixed.paced.p95)} | **${f1(r.fixed.paced.p99)}** | ${r.fixed.paced.errors} | ${f0(r.fixed.paced.serverCpuPct)}% |`] : []),
          '',
          "autocannon's rate limit is a per-second budget per connection, spent back to back from the start of each second: its connections run closed-loop at full concurrency until the budget is used, then idle. Its latencies are those of saturated bursts. The paced row sends at evenly spaced times instead and measures from each scheduled send time (queueing included).",
          '',
        ]
      : []),
    ...(Object.keys(r.storeCalls ?? {}).length
      ? [
          '## Store calls per login',
          '',
          'Counted in the broker during the one login checked before the load (diagnostic): every call of the store contract (oidc models by model name, accounts, consents, replay) and of the audit ledger.',
          '',
          '| login | calls | of which writes | detail |',
          '|---|---:|---:|---|',
          ...Object.entries(r.storeCalls ?? {}).map(([k, calls]) => {
            const total = Object.values(calls).reduce((a, b) => a + b, 0);
            const writes = Object.entries(calls)
              .filter(([name]) => /\.(upsert|consume|destroy|revokeByGrantId|create|update|rememberOnce|createAccount|updateAccount|createLink|setIdentifier|append|hit)\b/.test(name))
              .reduce((a, [, n]) => a + n, 0);
            return `| ${k} | ${total} | ${writes} | ${Object.entries(calls).map(([name, n]) => `${name} ×${n}`).join(', ')} |`;
          }),
          '',
        ]
      : []),
    ...(consentTable
      ? [
          '## Consent lookups against the number of consents stored',
          '',
          `Seeded through each store's raw handle (SQLite: 50,000-row transactions inside the broker; Redis: one Lua call per 1,000 consents from the driver) with records as long as a real sealed, signed consent; one real consent (invitation accepted) among them. Lookups timed one at a time inside the broker process on the servers' core: \`get\` and \`listByGrantee\` of random seeded consents/carers (about ${r.consents[0]?.perList ?? 3} each), \`activeFor\` = the delegated-token hot path (read, unseal, verify the record's signature). Then introspection of a delegated token (${String(r.settings.connections)} connections) at each size.`,
          '',
          consentTable,
          '',
          '![lookup cost against stored consents](latest-consents.svg)',
          '',
        ]
      : []),
    ...(memTable
      ? [
          '## Memory',
          '',
          `A fresh broker process per store (same configuration as above): RSS (VmRSS of /proc/<pid>/status) after a GC (the child runs with --expose-gc) and a 1 s pause - at idle; after ${f0(r.memory[0]?.sessions)} sessions (as oidc-provider stores them after a login) were written into its store through the oidc store contract (\`store.oidc.upsert('Session', …)\`, 2,000 in flight, from the driver's process with the same store code, so the broker's heap holds no trace of the bulk write); and after the broker read every one of them once through its own store, as requests carrying their cookies would. Sessions live in the store (SQLite file or Redis), not in the broker's heap; the store column shows what they cost there.`,
          '',
          memTable,
          '',
        ]
      : []),
    '## Published figures of other systems (NOT measured here)',
    '',
    'Quoted from ../shared/reference/anchors.md section (b) with their conditions. Different hardware, TLS, databases and cluster sizes: they place our figures, they are not a like-for-like comparison (the bare oidc-provider rows above are).',
    '',
    '| system | published figure | their conditions | ours, this run (one core, TLS off) |',
    '|---|---|---|---|',
    ...anchorRows,
    '',
    ...(profiles.length ? ['## CPU profiles (one scenario each, inspector sampling at 200 µs)', '', ...profiles] : []),
    '## Detail',
    '',
    detail,
    '',
    ...(att.length ? ['## Attention', '', ...att.map((a) => `- ${a}`), ''] : []),
  ].join('\n');
}

export function writeReport(r: RunResult, dir: string, root: string): string[] {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, `${r.stamp}.json`);
  writeFileSync(json, `${JSON.stringify({ ...r, targets: verdicts(r) }, null, 2)}\n`);
  const files = [json];
  const tp = join(dir, `${r.stamp}-throughput.svg`);
  writeFileSync(tp, throughputChart(r));
  copyFileSync(tp, join(dir, 'latest-throughput.svg'));
  files.push(tp);
  if (r.consents.length) {
    const cs = join(dir, `${r.stamp}-consents.svg`);
    writeFileSync(cs, consentChart(r));
    copyFileSync(cs, join(dir, 'latest-consents.svg'));
    files.push(cs);
  }
  const md = join(dir, `${r.stamp}.md`);
  writeFileSync(md, markdown(r, root));
  copyFileSync(md, join(dir, 'latest.md'));
  files.push(md, join(dir, 'latest.md'));
  return files;
}
