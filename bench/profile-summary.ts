import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { relative } from 'node:path';

// Summarises a V8 .cpuprofile (node --cpu-prof): where a server's CPU time goes, by function (self
// and inclusive time) and by file or package. Used by bench/run.ts for BENCH_PROFILE=…, or by hand:
//   node bench/profile-summary.ts bench/results/profiles/<run>/broker.cpuprofile [top]

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface Row {
  key: string;
  ms: number;
  pct: number;
}

export interface ProfileSummary {
  totalMs: number;
  busyMs: number;
  idlePct: number;
  /** Self time (µs) per file or package, idle excluded. */
  fileUs: Map<string, number>;
  selfByFunction: Row[];
  inclusiveByFunction: Row[];
  selfByFile: Row[];
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function fileOf(url: string): string {
  if (!url) return '(native/vm)';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/');
    const pkg = rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
    return `${pkg}: ${rest.slice(pkg.includes('/') ? 2 : 1).join('/')}`;
  }
  return path.startsWith(ROOT) ? relative(ROOT, path) : path;
}

/** File or package a sample is charged to; Node's internals grouped by area. */
function bucketOf(frame: CallFrame): string {
  const { url } = frame;
  if (url.startsWith('wasm://')) return 'wasm';
  if (!url) return frame.functionName || '(native/vm)';
  if (url.startsWith('node:')) {
    const path = url.slice('node:'.length);
    if (path.includes('crypto')) return 'node: crypto (incl. WebCrypto sign/verify)';
    if (/(^|\/)_?http/.test(path)) return 'node: http';
    if (path.includes('stream')) return 'node: streams';
    if (path.includes('modules') || path.includes('bootstrap') || path.includes('amaro')) return 'node: module loading';
    return 'node: other';
  }
  return fileOf(url).split(':')[0];
}

function functionKey(frame: CallFrame): string {
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  return `${fileOf(frame.url)}:${frame.lineNumber + 1} ${name}`;
}

function top(map: Map<string, number>, total: number, n: number): Row[] {
  map.delete('(idle)');
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([key, us]) => ({ key, ms: us / 1000, pct: (100 * us) / total }));
}

export function summariseProfile(file: string, n = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = profile.timeDeltas.reduce((a, b) => a + b, 0);
  let idleUs = 0;

  const selfFn = new Map<string, number>();
  const selfFile = new Map<string, number>();
  for (const [id, us] of self) {
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === '(idle)') idleUs += us;
    selfFn.set(functionKey(frame), (selfFn.get(functionKey(frame)) ?? 0) + us);
    const f = bucketOf(frame);
    selfFile.set(f, (selfFile.get(f) ?? 0) + us);
  }

  // Inclusive time: each function once per stack, however often it recurses.
  const inclusive = new Map<string, number>();
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const c of node.children ?? []) parents.set(c, node.id);
  for (const [id, us] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parents.get(cur)) {
      const frame = byId.get(cur)!.callFrame;
      if (frame.functionName === '(root)') continue;
      const key = functionKey(frame);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }

  const busy = total - idleUs;
  inclusive.delete('(idle)');
  return {
    totalMs: total / 1000,
    busyMs: busy / 1000,
    idlePct: (100 * idleUs) / total,
    fileUs: new Map([...selfFile].filter(([k]) => k !== '(idle)')),
    selfByFunction: top(selfFn, busy, n),
    inclusiveByFunction: top(inclusive, busy, n),
    selfByFile: top(selfFile, busy, n),
  };
}

export function formatSummary(title: string, s: ProfileSummary): string {
  const rows = (list: Row[]) => list.map((r) => `  ${r.pct.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms  ${r.key}`).join('\n');
  return [
    `${title}: ${s.totalMs.toFixed(0)} ms sampled, ${s.busyMs.toFixed(0)} ms busy (idle ${s.idlePct.toFixed(1)}%); percentages are of busy time`,
    ' self time by file/package:',
    rows(s.selfByFile),
    ' self time by function:',
    rows(s.selfByFunction),
    ' inclusive time by function:',
    rows(s.inclusiveByFunction),
  ].join('\n');
}

/**
 * Self CPU time per request, by file or package, for several profiled servers side by side (requests =
 * how many each served while profiled, so per-request figures compare across uneven runs).
 */
export function compareProfiles(runs: Array<{ name: string; summary: ProfileSummary; requests: number }>, n = 20): string {
  const keys = new Set<string>();
  for (const r of runs) for (const k of r.summary.fileUs.keys()) keys.add(k);
  const per = (r: (typeof runs)[number], k: string) => (r.summary.fileUs.get(k) ?? 0) / r.requests;
  const base = runs[0];
  const rows = [...keys]
    .map((k) => ({ k, v: runs.map((r) => per(r, k)) }))
    .sort((a, b) => Math.max(...b.v) - Math.max(...a.v))
    .slice(0, n);
  const col = (x: number) => x.toFixed(1).padStart(9);
  const head = `${'µs CPU per request (self time)'.padEnd(44)}${runs.map((r) => r.name.padStart(9)).join('')}${runs.slice(1).map((r) => `  Δ${r.name}`.padStart(11)).join('')}`;
  // Start-up work (loading and type-stripping modules) is not per request.
  const STARTUP = ['node: module loading', 'wasm'];
  const total = runs.map((r) => (r.summary.busyMs * 1000 - STARTUP.reduce((a, k) => a + (r.summary.fileUs.get(k) ?? 0), 0)) / r.requests);
  const lines = rows.map((row) => `${row.k.slice(0, 43).padEnd(44)}${row.v.map(col).join('')}${row.v.slice(1).map((x) => `${x - row.v[0] >= 0 ? '+' : ''}${(x - row.v[0]).toFixed(1)}`.padStart(11)).join('')}`);
  const delta = (xs: number[]) => xs.slice(1).map((x) => `${x - xs[0] >= 0 ? '+' : ''}${(x - xs[0]).toFixed(1)}`.padStart(11)).join('');
  // Every server does the same crypto per request, so scaling each to the first one's crypto time
  // removes "this run happened on a slower machine moment" and leaves the work each one adds.
  const CRYPTO = 'node: crypto (incl. WebCrypto sign/verify)';
  const crypto = runs.map((r) => per(r, CRYPTO));
  const normalised = total.map((t, i) => (crypto[i] > 0 ? (t * crypto[0]) / crypto[i] : NaN));
  return [
    head,
    ...lines,
    `${'total busy (start-up excluded)'.padEnd(44)}${total.map(col).join('')}${delta(total)}`,
    `${'total busy, scaled to equal crypto time'.padEnd(44)}${normalised.map(col).join('')}${delta(normalised)}`,
    `${'implied throughput ratio vs ' + base.name + ' (CPU-bound)'}`.padEnd(44) + normalised.map((x) => (normalised[0] / x).toFixed(2).padStart(9)).join(''),
    `(Δ = minus ${base.name}; requests counted from assertions used, approx.; module loading and wasm (type stripping) are start-up, left out of the totals)`,
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, n] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node bench/profile-summary.ts FILE.cpuprofile [top]');
    process.exit(2);
  }
  console.log(formatSummary(file, summariseProfile(file, n ? Number(n) : 25)));
}
