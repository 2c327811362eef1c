import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Measurement, RunResult } from './scenarios/report.ts';

// SVG charts of a bench run, no dependencies: throughput per scenario (one bar per server and store,
// the target as a tick) and lookup cost against the number of consents stored. Written by
// bench/run.ts; to redraw from a saved run: node bench/chart.ts bench/results/<timestamp>.json

const COLORS: Record<string, string> = {
  'broker-sqlite': '#005eb8',
  'broker-redis': '#41b6e6',
  'bare-sqlite': '#768692',
  'bare-redis': '#aeb7bd',
  'provider-sqlite': '#ffb81c',
};
const TARGETS: Record<string, number> = { 'cc-pkjwt-jwt': 2000, 'exchange-at': 1500, 'exchange-idt': 1500, 'exchange-delegated': 1500, 'introspect-opaque': 5000, 'introspect-delegated': 5000, 'login-oidc': 300 };
const NAMES: Record<string, string> = {
  'cc-basic-jwt': 'cc, basic, JWT AT',
  'cc-pkjwt-jwt': 'cc, private_key_jwt, JWT AT',
  'cc-basic-opaque': 'cc, basic, opaque AT',
  refresh: 'refresh rotation',
  'exchange-at': 'exchange: broker AT',
  'exchange-idt': 'exchange: external ID token',
  'exchange-delegated': 'exchange: delegated (act)',
  'introspect-opaque': 'introspect opaque',
  'introspect-delegated': 'introspect delegated',
  'login-oidc': 'login via OIDC upstream',
  'login-saml': 'login via SAML IdP',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (n: number) => Math.round(n).toLocaleString('en-GB');

function niceMax(v: number): number {
  const p = 10 ** Math.floor(Math.log10(Math.max(1, v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function throughputChart(r: RunResult): string {
  const smallest = Math.min(...r.consents.map((c) => c.size));
  const ms = r.measurements.filter((m) => m.consents === undefined || m.consents === smallest);
  const scenarios = [...new Set(ms.map((m) => m.scenario))];
  const barH = 14;
  const gap = 10;
  const left = 210;
  const width = 900;
  const plotW = width - left - 90;
  const top = 58;
  const rows: Array<{ scenario: string; bars: Measurement[] }> = scenarios.map((s) => ({ scenario: s, bars: ms.filter((m) => m.scenario === s) }));
  const height = top + rows.reduce((a, g) => a + g.bars.length * barH + gap, 0) + 40;
  const max = niceMax(Math.max(...ms.map((m) => m.okPerSec), ...scenarios.map((s) => TARGETS[s] ?? 0)));
  const x = (v: number) => left + (v / max) * plotW;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Arial, Helvetica, sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  out.push(`<text x="10" y="18" font-size="14" font-weight="bold">Throughput per scenario (2xx per second; logins per second for logins)</text>`);
  out.push(`<text x="10" y="34" fill="#425563">${esc(`${r.startedAt} · one core per server (taskset), TLS off, ${String(r.settings.connections)} connections · ${r.conditions.cpu} · | = target`)}</text>`);
  for (let i = 0; i <= 5; i++) {
    const v = (max / 5) * i;
    out.push(`<line x1="${x(v)}" y1="${top - 6}" x2="${x(v)}" y2="${height - 34}" stroke="#e8edee"/>`);
    out.push(`<text x="${x(v)}" y="${height - 22}" text-anchor="middle" fill="#425563">${fmt(v)}</text>`);
  }
  let y = top;
  for (const g of rows) {
    out.push(`<text x="${left - 8}" y="${y + (g.bars.length * barH) / 2 + 4}" text-anchor="end" font-weight="bold">${esc(NAMES[g.scenario] ?? g.scenario)}</text>`);
    const t = TARGETS[g.scenario];
    for (const m of g.bars) {
      const color = COLORS[m.server] ?? '#999';
      out.push(`<rect x="${left}" y="${y + 1}" width="${Math.max(1, x(m.okPerSec) - left)}" height="${barH - 2}" fill="${color}"><title>${esc(`${m.scenario} on ${m.server}: ${fmt(m.okPerSec)}/s, p99 ${m.p99} ms`)}</title></rect>`);
      out.push(`<text x="${x(m.okPerSec) + 4}" y="${y + barH - 3}" fill="#212b32">${fmt(m.okPerSec)}</text>`);
      y += barH;
    }
    if (t) out.push(`<line x1="${x(t)}" y1="${y - g.bars.length * barH - 2}" x2="${x(t)}" y2="${y + 2}" stroke="#d5281b" stroke-width="2"/>`);
    y += gap;
  }
  let lx = 10;
  for (const [server, color] of Object.entries(COLORS)) {
    if (!ms.some((m) => m.server === server)) continue;
    out.push(`<rect x="${lx}" y="42" width="10" height="10" fill="${color}"/><text x="${lx + 14}" y="51">${esc(server.replace('-', ' · '))}</text>`);
    lx += 130;
  }
  out.push('</svg>');
  return out.join('\n');
}

export function consentChart(r: RunResult): string {
  const width = 900;
  const height = 420;
  const panelW = 380;
  const top = 60;
  const plotH = 230;
  const sizes = [...new Set(r.consents.map((c) => c.size))].sort((a, b) => a - b);
  // Logarithmic x: 10^3, 10^5 and 10^6 at their true distances.
  const lo = Math.log10(sizes[0] ?? 1);
  const hi = Math.log10(sizes[sizes.length - 1] ?? 10);
  const lx = (i: number, x0: number) => x0 + (hi > lo ? ((Math.log10(sizes[i]) - lo) / (hi - lo)) * (panelW - 60) : (panelW - 60) / 2);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Arial, Helvetica, sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  out.push(`<text x="10" y="18" font-size="14" font-weight="bold">Consent lookup cost against the number of consents stored</text>`);
  out.push(`<text x="10" y="34" fill="#425563">${esc(`${r.startedAt} · broker process on one core, TLS off · lookups one at a time in-process; introspection over HTTP, ${String(r.settings.connections)} connections`)}</text>`);

  const panel = (x0: number, title: string, series: Array<{ name: string; color: string; dash?: string; values: Array<number | undefined> }>, unit: string) => {
    const all = series.flatMap((s) => s.values.filter((v): v is number => v !== undefined && Number.isFinite(v)));
    const max = niceMax(Math.max(1, ...all) * 1.1);
    const y = (v: number) => top + plotH - (v / max) * plotH;
    out.push(`<text x="${x0}" y="${top - 10}" font-weight="bold">${esc(title)}</text>`);
    for (let i = 0; i <= 4; i++) {
      const v = (max / 4) * i;
      out.push(`<line x1="${x0 + 40}" y1="${y(v)}" x2="${x0 + panelW - 10}" y2="${y(v)}" stroke="#e8edee"/>`);
      out.push(`<text x="${x0 + 36}" y="${y(v) + 4}" text-anchor="end" fill="#425563">${fmt(v)}</text>`);
    }
    sizes.forEach((s, i) => out.push(`<text x="${lx(i, x0 + 50)}" y="${top + plotH + 16}" text-anchor="middle" fill="#425563">${fmt(s)}</text>`));
    out.push(`<text x="${x0 + panelW / 2}" y="${top + plotH + 32}" text-anchor="middle" fill="#425563">consents stored (${unit})</text>`);
    series.forEach((s, k) => {
      const pts = s.values.map((v, i) => (v === undefined || !Number.isFinite(v) ? undefined : `${lx(i, x0 + 50)},${y(v)}`)).filter(Boolean);
      if (pts.length) out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
      s.values.forEach((v, i) => {
        if (v !== undefined && Number.isFinite(v)) out.push(`<circle cx="${lx(i, x0 + 50)}" cy="${y(v)}" r="3" fill="${s.color}"><title>${esc(`${s.name} at ${fmt(sizes[i])}: ${v.toFixed(1)}`)}</title></circle>`);
      });
      out.push(`<line x1="${x0 + 50}" y1="${top + plotH + 46 + k * 14}" x2="${x0 + 70}" y2="${top + plotH + 46 + k * 14}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/><text x="${x0 + 75}" y="${top + plotH + 50 + k * 14}">${esc(s.name)}</text>`);
    });
  };
  const at = (backend: string, f: (c: RunResult['consents'][number]) => number | undefined) => sizes.map((s) => {
    const c = r.consents.find((x) => x.backend === backend && x.size === s);
    return c ? f(c) : undefined;
  });
  const backends = [...new Set(r.consents.map((c) => c.backend))];
  const color = (b: string) => (b === 'sqlite' ? '#005eb8' : '#da291c');
  panel(
    10,
    'µs per lookup (mean)',
    backends.flatMap((b) => [
      { name: `${b}: get`, color: color(b), values: at(b, (c) => c.get.meanUs) },
      { name: `${b}: activeFor (read + unseal + verify)`, color: color(b), dash: '5,3', values: at(b, (c) => c.activeFor.meanUs) },
    ]),
    'log scale',
  );
  panel(
    470,
    'delegated-token introspection, req/s',
    backends.map((b) => ({ name: `${b}`, color: color(b), values: at(b, (c) => c.introspection?.reqPerSec) })),
    'log scale',
  );
  out.push('</svg>');
  return out.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node bench/chart.ts bench/results/<timestamp>.json');
    process.exit(2);
  }
  const r = JSON.parse(readFileSync(file, 'utf8')) as RunResult;
  const base = file.replace(/\.json$/, '');
  writeFileSync(`${base}-throughput.svg`, throughputChart(r));
  if (r.consents.length) writeFileSync(`${base}-consents.svg`, consentChart(r));
  console.log(`wrote ${base}-throughput.svg${r.consents.length ? ` and ${base}-consents.svg` : ''}`);
}
