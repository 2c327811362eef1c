// Consent lookup cost against the number of consents stored: it should stay flat.
//   node bench/consent-lookup.ts [--sqlite 1000,100000,1000000] [--redis 1000,100000] [--gets 20000] [--lists 5000] [--record-bytes 1024]
// SQLite: one temp file grown to each size in turn, seeded through the store's raw `db` handle in large
// transactions (valid rows: one version per consent, current pointer and index columns filled in). Redis
// (only if redis-server is installed): a private server on a free port, seeded through the store's own
// `create` with many calls in flight, which ioredis pipelines on its one connection. Then, at each size,
// `get` of random ids and `listByGrantee` of random carers (about 3 consents each at every size), one call
// at a time, each timed. Prints µs per call (mean, p50, p99).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ConsentStore, StoredConsent } from '../src/store/contracts.ts';
import { openRedisStore } from '../src/store/redis/index.ts';
import { openSqliteStore } from '../src/store/sqlite/index.ts';
import { startRedis } from '../test/peers/redis.ts';

const { values } = parseArgs({
  options: {
    sqlite: { type: 'string', default: '1000,100000,1000000' },
    redis: { type: 'string', default: '1000,100000' },
    gets: { type: 'string', default: '20000' },
    lists: { type: 'string', default: '5000' },
    'record-bytes': { type: 'string', default: '1024' },
  },
});
const sizes = (s: string): number[] => (s === '' ? [] : s.split(',').map(Number)).sort((a, b) => a - b);
const SQLITE_SIZES = sizes(values.sqlite);
const REDIS_SIZES = sizes(values.redis);
const GETS = Number(values.gets);
const LISTS = Number(values.lists);
const RECORD_BYTES = Number(values['record-bytes']);
const CONSENTS_PER_CARER = 3;

// Deterministic, well spread ids: random-looking keys (as UUIDs would be), recomputable from the index.
function mix(i: number): number {
  let x = (i + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}
const idOf = (i: number): string => `consent-${mix(i).toString(16).padStart(8, '0')}-${i.toString(36)}`;
const carerOf = (i: number): string => `carer-${Math.floor(i / CONSENTS_PER_CARER)}`;
const RECORD = Buffer.alloc(Math.ceil((RECORD_BYTES * 3) / 4) + 64, 'jws-consent-record.').toString('base64url');

function consentOf(i: number): StoredConsent {
  const c: StoredConsent = {
    id: idOf(i),
    version: 1,
    grantor: `patient-${i >> 1}`,
    status: i % 10 === 9 ? 'proposed' : 'active',
    // Each record differs, as signed ones do.
    record: `${i.toString(36)}.${RECORD.slice(0, RECORD_BYTES - 8)}`,
    updatedAt: 1_700_000_000 + i,
    endsAt: 1_800_000_000 + (mix(i) % 100_000_000),
  };
  // One in ten is a pending invitation: no grantee yet.
  if (i % 10 !== 9) c.grantee = carerOf(i);
  return c;
}

const random = (n: number): number => Math.floor(Math.random() * n);

interface Timing {
  mean: number;
  p50: number;
  p99: number;
}

async function timeCalls(n: number, call: (k: number) => Promise<unknown>): Promise<Timing> {
  const samples = new Float64Array(n);
  const start = performance.now();
  for (let k = 0; k < n; k++) {
    const t = performance.now();
    await call(k);
    samples[k] = performance.now() - t;
  }
  const total = performance.now() - start;
  samples.sort();
  return { mean: (total / n) * 1000, p50: samples[Math.floor(n * 0.5)] * 1000, p99: samples[Math.floor(n * 0.99)] * 1000 };
}

interface Row {
  backend: string;
  size: number;
  seedSeconds: number;
  get: Timing;
  list: Timing;
  perList: number;
}

async function measure(backend: string, size: number, seedSeconds: number, consents: ConsentStore): Promise<Row> {
  // Warm up (statement cache, script cache, connection) so the first calls do not count.
  for (let k = 0; k < 2000; k++) await consents.get(idOf(random(size)));
  for (let k = 0; k < 500; k++) await consents.listByGrantee(carerOf(random(size)));
  let wrong = 0;
  const get = await timeCalls(GETS, async () => {
    const i = random(size);
    if ((await consents.get(idOf(i)))?.id !== idOf(i)) wrong++;
  });
  let listed = 0;
  const carers = Math.ceil(size / CONSENTS_PER_CARER);
  const list = await timeCalls(LISTS, async () => {
    listed += (await consents.listByGrantee(`carer-${random(carers)}`)).length;
  });
  if (wrong > 0) throw new Error(`${backend} at ${size}: ${wrong} gets returned the wrong consent`);
  return { backend, size, seedSeconds, get, list, perList: listed / LISTS };
}

async function sqliteRows(dir: string): Promise<Row[]> {
  const rows: Row[] = [];
  const store = openSqliteStore(join(dir, 'consents.db'), { purgeIntervalMs: 0 });
  try {
    const insertVersion = store.db.prepare(
      'INSERT INTO consent_versions (id, version, grantor, grantee, status, record, updated_at, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    const insertCurrent = store.db.prepare(
      'INSERT INTO consents (id, version, seq, grantor, grantee, status, updated_at, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    let seeded = 0;
    for (const size of SQLITE_SIZES) {
      const t = performance.now();
      while (seeded < size) {
        const end = Math.min(size, seeded + 50_000);
        store.db.exec('BEGIN');
        for (let i = seeded; i < end; i++) {
          const c = consentOf(i);
          const { lastInsertRowid } = insertVersion.run(c.id, c.version, c.grantor, c.grantee ?? null, c.status, c.record, c.updatedAt, c.endsAt ?? null);
          insertCurrent.run(c.id, c.version, lastInsertRowid, c.grantor, c.grantee ?? null, c.status, c.updatedAt, c.endsAt ?? null);
        }
        store.db.exec('COMMIT');
        seeded = end;
      }
      store.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
      const seedSeconds = (performance.now() - t) / 1000;
      rows.push(await measure('sqlite', size, seedSeconds, store.consents));
      report(rows[rows.length - 1]);
    }
  } finally {
    await store.close();
  }
  return rows;
}

async function redisRows(): Promise<Row[]> {
  const rows: Row[] = [];
  const peer = await startRedis();
  const store = openRedisStore(peer.url, { prefix: 'bench:', commandTimeoutMs: 10_000 });
  try {
    await store.ping();
    let seeded = 0;
    for (const size of REDIS_SIZES) {
      const t = performance.now();
      while (seeded < size) {
        const end = Math.min(size, seeded + 2_000);
        const created = await Promise.all(Array.from({ length: end - seeded }, (_, k) => store.consents.create(consentOf(seeded + k))));
        if (!created.every(Boolean)) throw new Error('seeding redis: a create was refused');
        seeded = end;
      }
      const seedSeconds = (performance.now() - t) / 1000;
      rows.push(await measure('redis', size, seedSeconds, store.consents));
      report(rows[rows.length - 1]);
    }
  } finally {
    await store.close();
    await peer.stop();
  }
  return rows;
}

const fmt = (n: number, digits = 1): string => n.toFixed(digits);

function line(r: Row): string {
  return `| ${r.backend} | ${r.size.toLocaleString('en-GB')} | ${fmt(r.seedSeconds)} | ${fmt(r.get.mean)} | ${fmt(r.get.p50)} | ${fmt(r.get.p99)} | ${fmt(r.list.mean)} | ${fmt(r.list.p50)} | ${fmt(r.list.p99)} | ${fmt(r.perList, 2)} |`;
}

function report(r: Row): void {
  process.stderr.write(`done: ${r.backend} ${r.size} (seed ${fmt(r.seedSeconds)} s)\n`);
}

function hasRedis(): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v redis-server'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const started = performance.now();
const dir = mkdtempSync(join(tmpdir(), 'consent-bench-'));
const rows: Row[] = [];
try {
  rows.push(...(await sqliteRows(dir)));
  if (REDIS_SIZES.length > 0) {
    if (hasRedis()) rows.push(...(await redisRows()));
    else process.stderr.write('redis-server not installed: redis skipped\n');
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

console.log(`\nconsent lookups: ${GETS.toLocaleString('en-GB')} random get, ${LISTS.toLocaleString('en-GB')} random listByGrantee per size; one call at a time; µs per call; records ${RECORD_BYTES} B`);
console.log('| backend | consents | seed s | get mean | get p50 | get p99 | listByGrantee mean | p50 | p99 | consents per list |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(line(r));
console.log(`\nnode ${process.version}, total ${fmt((performance.now() - started) / 1000)} s`);
