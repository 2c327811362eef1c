import { randomUUID } from 'node:crypto';
import type { ConsentStore, Store, StoredConsent } from '../../src/store/contracts.ts';
import type { SqliteStore } from '../../src/store/sqlite/index.ts';
import type { RedisStore } from '../../src/store/redis/index.ts';
import { createKeyspace } from '../../src/store/redis/keyspace.ts';

// Bulk seeding for the broker child (bench/servers/broker.ts), through each store's raw handle: the
// approach of bench/consent-lookup.ts (valid rows, one version per consent, every index filled in),
// in large transactions (SQLite) or pipelines (Redis) rather than one contract call per record.
// Sessions go through the oidc store contract (`store.oidc.upsert('Session', …)`), many in flight.

export const CONSENTS_PER_CARER = 3;

// Deterministic, well spread ids: random-looking keys (as UUIDs would be), recomputable from the index.
function mix(i: number): number {
  let x = (i + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}
export const consentIdOf = (i: number): string => `bench-${mix(i).toString(16).padStart(8, '0')}-${i.toString(36)}`;
export const carerOf = (i: number): string => `bench-carer-${Math.floor(i / CONSENTS_PER_CARER)}`;

/** Filler of the same length as a real sealed, signed consent record. */
function filler(length: number): string {
  return Buffer.alloc(Math.ceil((length * 3) / 4) + 64, 'sealed-jws-consent-record.').toString('base64url').slice(0, length);
}

export function consentOf(i: number, record: string): StoredConsent {
  const c: StoredConsent = {
    id: consentIdOf(i),
    version: 1,
    grantor: `bench-patient-${i >> 1}`,
    status: i % 10 === 9 ? 'proposed' : 'active',
    // Each record differs, as signed ones do.
    record: `${i.toString(36)}.${record.slice(i.toString(36).length + 1)}`,
    updatedAt: 1_700_000_000 + i,
    endsAt: 1_800_000_000 + (mix(i) % 100_000_000),
  };
  // One in ten is a pending invitation: no grantee yet.
  if (i % 10 !== 9) c.grantee = carerOf(i);
  return c;
}

/** Adds consents `from` … `to - 1`. Returns seconds taken. */
export async function seedConsents(store: Store, from: number, to: number, recordLength: number): Promise<number> {
  const t = performance.now();
  const record = filler(recordLength);
  if (store.kind === 'sqlite') seedSqlite(store as SqliteStore, from, to, record);
  else await seedRedis(store as RedisStore, from, to, record);
  return (performance.now() - t) / 1000;
}

function seedSqlite(store: SqliteStore, from: number, to: number, record: string): void {
  const insertVersion = store.db.prepare('INSERT INTO consent_versions (id, version, grantor, grantee, status, record, updated_at, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const insertCurrent = store.db.prepare('INSERT INTO consents (id, version, seq, grantor, grantee, status, updated_at, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  for (let start = from; start < to; start += 50_000) {
    const end = Math.min(to, start + 50_000);
    store.db.exec('BEGIN');
    try {
      for (let i = start; i < end; i++) {
        const c = consentOf(i, record);
        const { lastInsertRowid } = insertVersion.run(c.id, c.version, c.grantor, c.grantee ?? null, c.status, c.record, c.updatedAt, c.endsAt ?? null);
        insertCurrent.run(c.id, c.version, lastInsertRowid, c.grantor, c.grantee ?? null, c.status, c.updatedAt, c.endsAt ?? null);
      }
      store.db.exec('COMMIT');
    } catch (err) {
      store.db.exec('ROLLBACK');
      throw err;
    }
  }
  store.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
}

// One script call writes a whole batch, the layout of src/store/redis/consents.ts: the pointer hash,
// the versions list, the grantor / grantee sets and the ending set. (Standalone Redis only: the keys
// are not declared, which a Cluster would refuse.) Per-command client overhead would otherwise
// dominate: five commands per consent.
const SEED = `
for i = 1, #ARGV, 9 do
  redis.call('HSET', ARGV[i], 'v', '1', 'i', ARGV[i + 3])
  redis.call('RPUSH', ARGV[i] .. ':versions', ARGV[i + 4])
  redis.call('ZADD', ARGV[i + 1], 1, ARGV[i + 5])
  if ARGV[i + 2] ~= '' then redis.call('ZADD', ARGV[i + 2], 1, ARGV[i + 5]) end
  redis.call('ZADD', ARGV[i + 6], ARGV[i + 7], ARGV[i + 8])
end
return #ARGV / 9
`;

async function seedRedis(store: RedisStore, from: number, to: number, record: string): Promise<void> {
  const keys = createKeyspace(store.prefix);
  const BATCH = 1000;
  const inFlight: Promise<unknown>[] = [];
  for (let start = from; start < to; start += BATCH) {
    const end = Math.min(to, start + BATCH);
    const args: Array<string | number> = [];
    for (let i = start; i < end; i++) {
      const c = consentOf(i, record);
      if (keys.consentVersions(c.id) !== `${keys.consent(c.id)}:versions`) throw new Error('redis consent layout changed: update bench/scenarios/seed.ts');
      args.push(
        keys.consent(c.id),
        keys.consentsByGrantor(c.grantor),
        c.grantee ? keys.consentsByGrantee(c.grantee) : '',
        JSON.stringify({ grantor: c.grantor, grantee: c.grantee, status: c.status, endsAt: c.endsAt }),
        JSON.stringify(c),
        c.id,
        keys.consentsEnding(c.status),
        c.endsAt!,
        `${c.id}\u0000${c.version}`,
      );
    }
    inFlight.push(store.redis.eval(SEED, 0, ...args));
    // A few batches in flight keep both ends busy without queueing the whole seed in memory.
    if (inFlight.length >= 4) await inFlight.shift();
  }
  await Promise.all(inFlight);
}

/** A session as oidc-provider 9 stores it after a login (one authorised client). */
export function sessionPayload(i: number, now: number): Record<string, unknown> {
  const uid = randomUUID().replaceAll('-', '');
  return {
    iat: now,
    exp: now + 28_800,
    uid,
    jti: `bench-session-${i}`,
    kind: 'Session',
    accountId: `bench-account-${i}`,
    loginTs: now,
    acr: 'AAL3_ANY',
    amr: ['N3_SMARTCARD'],
    authorizations: { web: { sid: randomUUID(), grantId: randomUUID().replaceAll('-', ''), persistsLogout: true } },
  };
}

/** `count` sessions through the oidc store contract, `inFlight` at a time (SQLite: in transactions). */
export async function seedSessions(store: Store, count: number, inFlight = 2000): Promise<number> {
  const t = performance.now();
  const now = Math.floor(Date.now() / 1000);
  const db = store.kind === 'sqlite' ? (store as SqliteStore).db : undefined;
  for (let start = 0; start < count; start += inFlight) {
    const end = Math.min(count, start + inFlight);
    db?.exec('BEGIN');
    try {
      await Promise.all(
        Array.from({ length: end - start }, (_, k) => {
          const p = sessionPayload(start + k, now);
          return store.oidc.upsert('Session', String(p.jti), p, 28_800);
        }),
      );
      db?.exec('COMMIT');
    } catch (err) {
      db?.exec('ROLLBACK');
      throw err;
    }
  }
  return (performance.now() - t) / 1000;
}

export interface Timing {
  n: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
}

export async function timeCalls(n: number, call: (k: number) => Promise<unknown>): Promise<Timing> {
  const samples = new Float64Array(n);
  const start = performance.now();
  for (let k = 0; k < n; k++) {
    const t = performance.now();
    await call(k);
    samples[k] = performance.now() - t;
  }
  const total = performance.now() - start;
  samples.sort();
  const r = (x: number) => Math.round(x * 10) / 10;
  return { n, meanUs: r((total / n) * 1000), p50Us: r(samples[Math.floor(n * 0.5)] * 1000), p99Us: r(samples[Math.floor(n * 0.99)] * 1000) };
}

/** Store lookups at the current size: random `get` and `listByGrantee` (about 3 consents each). */
export async function storeLookups(consents: ConsentStore, size: number, gets: number, lists: number): Promise<{ get: Timing; listByGrantee: Timing; perList: number }> {
  const random = (n: number) => Math.floor(Math.random() * n);
  // Warm-up: statement cache, script cache, connection.
  for (let k = 0; k < 500; k++) await consents.get(consentIdOf(random(size)));
  let wrong = 0;
  const get = await timeCalls(gets, async () => {
    const i = random(size);
    if ((await consents.get(consentIdOf(i)))?.id !== consentIdOf(i)) wrong++;
  });
  if (wrong) throw new Error(`${wrong} gets returned the wrong consent`);
  let listed = 0;
  const carers = Math.ceil(size / CONSENTS_PER_CARER);
  const listByGrantee = await timeCalls(lists, async () => {
    listed += (await consents.listByGrantee(`bench-carer-${random(carers)}`)).length;
  });
  return { get, listByGrantee, perList: Math.round((listed / lists) * 100) / 100 };
}
