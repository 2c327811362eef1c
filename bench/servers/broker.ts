import { statSync } from 'node:fs';
import { parseConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { createBroker } from '../../src/server.ts';
import type { SqliteStore } from '../../src/store/sqlite/index.ts';
import type { RedisStore } from '../../src/store/redis/index.ts';
import type { UpstreamIdentity } from '../../src/identity/upstream.ts';
import { scriptedConnector } from '../../test/helpers/scripted-connector.ts';
import { seedConsents, seedSessions, storeLookups, timeCalls } from '../scenarios/seed.ts';
import { SCRIPTED_UPSTREAM, profilerCommands, readSpec, serve, type BrokerSpec } from './common.ts';
import { brokerConfigInput } from './config.ts';

// The broker under test: the real composition root (src/server.ts) with the bench configuration
// (bench/servers/config.ts) on a port chosen by the driver, its store a SQLite file or a Redis
// database. Besides HTTP it answers the driver's commands over IPC for what has no HTTP face:
// queueing identities for fixture logins (a scripted upstream), delegations, bulk seeding of
// consents and sessions, in-process lookup timings, a GC before a memory reading, and CPU profiles
// of one scenario at a time (inspector, so a profile holds only that scenario).

const spec = readSpec<BrokerSpec>();
const config = parseConfig(brokerConfigInput(spec), {});
const scripted = scriptedConnector(SCRIPTED_UPSTREAM);
// As src/main.ts does: pino at the configured level (silent by default in the benchmark).
const broker = await createBroker(config, { log: createLogger(config.logLevel), env: {}, connectors: [scripted.connector], allowInsecureUpstreams: true });
const server = await broker.listen(spec.port, '127.0.0.1');
const store = broker.store;

let seeded = 0;
let recordLength = 1024;

// Diagnostic: store and ledger calls counted while `counting` is on (one login, say). The adapter and the
// ledger's callers look these methods up at call time, so wrapping them here sees every call.
const calls = new Map<string, number>();
let counting = false;
function count(target: object, prefix: string, byModel = false): void {
  const o = target as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    const original = o[key];
    if (typeof original !== 'function') continue;
    o[key] = function (this: unknown, ...args: unknown[]) {
      if (counting) {
        const name = `${prefix}.${key}${byModel && typeof args[0] === 'string' ? `(${args[0]})` : ''}`;
        calls.set(name, (calls.get(name) ?? 0) + 1);
      }
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    };
  }
}
count(store.oidc, 'oidc', true);
count(store.accounts, 'accounts');
count(store.consents, 'consents');
count(store.replay, 'replay');
count(store.rateLimits, 'rateLimits');
count(broker.ledger, 'ledger');

const actor = (accountId: string) => ({ accountId, assurance: { aal: 2, proofing: 'P9' as const } });

serve(server, () => broker.close(), {
  /** Identities the scripted upstream answers with, in order. */
  async queue(args: { identities: Array<Omit<UpstreamIdentity, 'provider' | 'authTime'>> }) {
    scripted.queue.push(...args.identities);
    return scripted.queue.length;
  },
  /** A patient invites a carer, who accepts: an active consent. Its stored record length sizes the seeded ones. */
  async delegate(args: { patient: string; carer: string; scopes: string[] }) {
    const { code } = await broker.delegation.invite(actor(args.patient), { access: { scopes: args.scopes }, period: { end: new Date(Date.now() + 30 * 86_400_000).toISOString() } });
    const record = await broker.delegation.respond(actor(args.carer), code, 'accept');
    const stored = await store.consents.get(record.id);
    recordLength = stored?.record.length ?? recordLength;
    return { consentId: record.id, recordLength };
  },
  /** Grows the store to `upTo` seeded consents (besides the real ones). */
  async seedConsents(args: { upTo: number }) {
    const from = seeded;
    const seconds = args.upTo > seeded ? await seedConsents(store, seeded, args.upTo, recordLength) : 0;
    seeded = Math.max(seeded, args.upTo);
    return { from, to: seeded, seconds, recordLength };
  },
  /** Lookups among `size` seeded consents, one call at a time, in this process (the servers' core). */
  async lookups(args: { size: number; consentId: string; grantee: string; gets: number; lists: number; active: number }) {
    const { get, listByGrantee, perList } = await storeLookups(store.consents, args.size, args.gets, args.lists);
    let inactive = 0;
    // The hot path of delegated-token introspection and refresh: one read, unseal, signature check.
    const activeFor = await timeCalls(args.active, async () => {
      if (!(await broker.delegation.activeFor(args.consentId, args.grantee))) inactive++;
    });
    if (inactive) throw new Error(`activeFor found the consent inactive ${inactive} times`);
    return { size: args.size, get, listByGrantee, activeFor, perList };
  },
  async seedSessions(args: { count: number }) {
    return { seconds: await seedSessions(store, args.count) };
  },
  /** Reads every seeded session once through this broker's store (100 at a time), as requests carrying their cookies would. */
  async readSessions(args: { count: number }) {
    const t = performance.now();
    let missing = 0;
    for (let start = 0; start < args.count; start += 100) {
      const found = await Promise.all(Array.from({ length: Math.min(100, args.count - start) }, (_, k) => store.oidc.find('Session', `bench-session-${start + k}`)));
      missing += found.filter((x) => !x).length;
    }
    if (missing) throw new Error(`${missing} sessions not found`);
    return { seconds: (performance.now() - t) / 1000 };
  },
  /** Collects garbage (the child runs with --expose-gc) so the driver's RSS reading is not mid-cycle. */
  async gc() {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) return { gc: false };
    gc();
    await new Promise((r) => setTimeout(r, 300));
    gc();
    return { gc: true, heapUsed: process.memoryUsage().heapUsed };
  },
  /** Where the data lives: the SQLite file (and WAL), or the Redis database's memory. */
  async storeInfo() {
    if (store.kind === 'sqlite') {
      const file = (store as SqliteStore).db.prepare('PRAGMA database_list').all()[0] as { file: string };
      const size = (p: string) => {
        try {
          return statSync(p).size;
        } catch {
          return 0;
        }
      };
      return { kind: 'sqlite', bytes: size(file.file) + size(`${file.file}-wal`) };
    }
    const info = await (store as RedisStore).redis.info('memory');
    const used = /used_memory:(\d+)/.exec(info)?.[1];
    const keys = await (store as RedisStore).redis.dbsize();
    return { kind: 'redis', bytes: Number(used), keys };
  },
  async countStart() {
    calls.clear();
    counting = true;
    return true;
  },
  async countStop() {
    counting = false;
    return Object.fromEntries([...calls].sort((a, b) => b[1] - a[1]));
  },
  ...profilerCommands(),
});
