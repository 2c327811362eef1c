import type { ConsentStore, StoredConsent } from '../contracts.ts';
import type { AcknowledgedWrites } from './acknowledged.ts';
import type { RedisClient } from './client.ts';
import type { Guard } from './guard.ts';
import type { Keyspace } from './keyspace.ts';
import { lua, runScript } from './scripts.ts';
import { keySlot } from './slot.ts';
import { checkCreate, checkUpdate } from '../consent-checks.ts';

// Layout (names in keyspace.ts):
//   {consent:<id>}            hash  v = newest version, i = its index fields (JSON)   -- the current pointer
//   {consent:<id>}:versions   list  every version's JSON, oldest first: get = LINDEX -1, history = LRANGE
//   consent-grantor:{<acct>}  zset  consent id, score = the version that put it there
//   consent-grantee:{<acct>}  zset  likewise
//   consent-ending:{<status>} zset  "<id>\0<version>", score = endsAt
// Every lookup touches a fixed number of keys per consent returned; nothing scans the keyspace.
//
// Writes: one Lua script checks the version and appends the new one (the compare-and-set). An index key
// in the record's hash slot, and every index key outside Cluster, is updated by that same script, so it
// changes atomically with the record. In a Cluster the other index keys live on other slots (other nodes)
// and cannot join the script, so they are written in separate steps around it:
//   - additions before the CAS: a consent is never missing from a list it belongs in, even if this
//     process dies right after the CAS, and a write is acknowledged only once record and indexes are in;
//   - removals after the CAS (awaited, but a failure there does not fail the committed write).
// The tradeoff: for a moment (or after a crash, or for a loser of a CAS race) an index may hold entries
// that do not belong, never lack one. Lists therefore read every entry's record (get is always exact)
// and keep only those whose newest version matches, and remove the strays as they meet them. Removals
// are guarded by version so they can never undo a concurrent writer's addition: an account set member
// is removed only if its score (the version that added it) is <= a version known not to belong there,
// and an ending member names its version, so a member of an older version is always safe to drop.
// The ending member's score is only ever lowered by a pre-CAS addition (ZADD LT) and raised back to the
// record's endsAt afterwards, so it is never later than the truth and listEnding cannot miss a consent.

interface IndexFields {
  grantor: string;
  grantee?: string;
  status: string;
  endsAt?: number;
}

/** add: ZADD; raise: ZADD GT; drop: ZREM; drop-upto: ZREM if score <= `score`. */
type IndexOpName = 'add' | 'raise' | 'drop' | 'drop-upto';

interface IndexOp {
  key: string;
  op: IndexOpName;
  member: string;
  score: number;
}

// KEYS: pointer, versions, then one index key per op. ARGV: expected version ('0': must not exist), new
// version, version JSON, index fields JSON, then (op, member, score) per index key. Ops are checked before
// anything is written: Redis does not roll a script back when it stops half-way.
const WRITE = lua(`
local current = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '0' then
  if current then return 0 end
elseif current ~= ARGV[1] then
  return 0
end
for k = 3, #KEYS do
  local op = ARGV[5 + (k - 3) * 3]
  if op ~= 'add' and op ~= 'raise' and op ~= 'drop' and op ~= 'drop-upto' then
    return redis.error_reply('consent index: unknown op')
  end
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'i', ARGV[4])
for k = 3, #KEYS do
  local a = 5 + (k - 3) * 3
  local op, member, score = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  if op == 'add' then
    redis.call('ZADD', KEYS[k], score, member)
  elseif op == 'raise' then
    redis.call('ZADD', KEYS[k], 'GT', score, member)
  elseif op == 'drop' then
    redis.call('ZREM', KEYS[k], member)
  else
    local s = redis.call('ZSCORE', KEYS[k], member)
    if s and tonumber(s) <= tonumber(score) then redis.call('ZREM', KEYS[k], member) end
  end
end
return 1
`);

const DROP_UPTO = lua(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`);


/** Only the contract's fields, without undefined ones, in a fixed order. */
function normalize(c: StoredConsent): StoredConsent {
  const out: StoredConsent = { id: c.id, version: c.version, grantor: c.grantor, status: c.status, record: c.record, updatedAt: c.updatedAt };
  if (c.grantee !== undefined) out.grantee = c.grantee;
  if (c.endsAt !== undefined) out.endsAt = c.endsAt;
  return out;
}

function indexFields(c: StoredConsent): IndexFields {
  return { grantor: c.grantor, grantee: c.grantee, status: c.status, endsAt: c.endsAt };
}

/** Byte order, as Redis orders members and SQLite orders TEXT, so both backends sort alike. */
function compareText(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function byUpdated(a: StoredConsent, b: StoredConsent): number {
  return a.updatedAt - b.updatedAt || compareText(a.id, b.id);
}

function byEnding(a: StoredConsent, b: StoredConsent): number {
  return (a.endsAt ?? 0) - (b.endsAt ?? 0) || compareText(a.id, b.id);
}

// NUL sorts below every other character, so among equal scores members sort by id as the results do.
function endingMember(id: string, version: number): string {
  return `${id}\u0000${version}`;
}

function parseEndingMember(member: string): { id: string; version: number } | undefined {
  const at = member.lastIndexOf('\u0000');
  if (at === -1) return undefined;
  const version = Number(member.slice(at + 1));
  return Number.isSafeInteger(version) ? { id: member.slice(0, at), version } : undefined;
}

/** The scores' bound as Redis writes it. */
function scoreBound(at: number): string {
  if (at === Infinity) return '+inf';
  if (at === -Infinity) return '-inf';
  return String(at);
}

/** Index cleanups are best effort: a stray left behind is filtered on read and removed by the next reader. */
async function settle(ops: Promise<unknown>[]): Promise<void> {
  await Promise.allSettled(ops);
}

/**
 * Creates and updates go through `acked` (acknowledged.ts): with storeOptions.waitReplicas a change is
 * reported only once the replicas hold it. Reads use the shared connection.
 */
export function createRedisConsentStore(client: RedisClient, guard: Guard, keys: Keyspace, acked: AcknowledgedWrites): ConsentStore {
  const { client: writer, guard: writeGuard } = acked;
  function accountKey(kind: 'grantor' | 'grantee', accountId: string): string {
    return kind === 'grantor' ? keys.consentsByGrantor(accountId) : keys.consentsByGrantee(accountId);
  }

  /** What moving the indexes from `before` (absent for a create) to `next` takes. */
  function plan(next: StoredConsent, before: { version: number; fields: IndexFields } | undefined): { adds: IndexOp[]; drops: IndexOp[] } {
    const adds: IndexOp[] = [];
    const drops: IndexOp[] = [];
    const { id, version } = next;
    // An account set that keeps the consent is left alone: its member's score (the version that added it)
    // stays below every version that could remove it.
    for (const kind of ['grantor', 'grantee'] as const) {
      const was = before?.fields[kind];
      const now = next[kind];
      if (now !== undefined && now !== was) adds.push({ key: accountKey(kind, now), op: 'raise', member: id, score: version });
      if (was !== undefined && was !== now) drops.push({ key: accountKey(kind, was), op: 'drop-upto', member: id, score: version });
    }
    if (next.endsAt !== undefined) adds.push({ key: keys.consentsEnding(next.status), op: 'add', member: endingMember(id, version), score: next.endsAt });
    if (before?.fields.endsAt !== undefined) {
      drops.push({ key: keys.consentsEnding(before.fields.status), op: 'drop', member: endingMember(id, before.version), score: 0 });
    }
    return { adds, drops };
  }

  function dropUpTo(on: RedisClient, key: string, member: string, version: number): Promise<unknown> {
    return runScript(on, DROP_UPTO, [key], [member, version]);
  }

  /** Writes `next` if the current version is `before.version` (or, without `before`, if there is none). */
  async function write(next: StoredConsent, before: { version: number; fields: IndexFields } | undefined): Promise<boolean> {
    const pointer = keys.consent(next.id);
    const slot = keySlot(pointer);
    const inScript = (op: IndexOp): boolean => !writer.isCluster || keySlot(op.key) === slot;
    const { adds, drops } = plan(next, before);
    const early = adds.filter((op) => !inScript(op));
    const late = drops.filter((op) => !inScript(op));
    const inline = [...drops, ...adds].filter(inScript);
    const since = acked.mark();

    if (early.length > 0) {
      // Spare the indexes a stray entry when the answer is already known.
      if (before === undefined && (await writer.exists(pointer)) === 1) return false;
      await Promise.all(early.map((op) => (op.op === 'raise' ? writer.zadd(op.key, 'GT', op.score, op.member) : writer.zadd(op.key, 'LT', op.score, op.member))));
    }
    const reply = await runScript(
      writer,
      WRITE,
      [pointer, keys.consentVersions(next.id), ...inline.map((op) => op.key)],
      [before?.version ?? 0, next.version, JSON.stringify(next), JSON.stringify(indexFields(next)), ...inline.flatMap((op) => [op.op, op.member, op.score])],
    );
    if (reply !== 1) return false;
    // The write is committed on the primary. If replicas do not acknowledge it in time, the caller is told
    // it failed (StoreUnavailableError, so a 503), although the write may still be present: on this primary
    // and, later, on the replicas. A lost CAS (false above) needs no WAIT: nothing was written.
    await acked.ack(since);
    await settle([
      ...late.map((op) => (op.op === 'drop' ? writer.zrem(op.key, op.member) : dropUpTo(writer, op.key, op.member, op.score))),
      // A losing writer's ZADD LT may have pulled the ending score below this version's endsAt.
      ...early.filter((op) => op.op === 'add').map((op) => writer.zadd(op.key, 'XX', 'GT', op.score, op.member)),
    ]);
    return true;
  }

  async function newest(id: string): Promise<StoredConsent | undefined> {
    const json = await client.lindex(keys.consentVersions(id), -1);
    return json === null ? undefined : (JSON.parse(json) as StoredConsent);
  }

  function listBy(kind: 'grantor' | 'grantee', accountId: string): Promise<StoredConsent[]> {
    const key = accountKey(kind, accountId);
    return guard(async () => {
      const ids = await client.zrange(key, 0, '-1');
      const records = await Promise.all(ids.map(newest));
      const found: StoredConsent[] = [];
      const strays: Promise<unknown>[] = [];
      ids.forEach((id, i) => {
        const record = records[i];
        // No record yet: a create in progress (or one that died before its CAS). Not listed, not removed.
        if (record === undefined) return;
        if (record[kind] === accountId) found.push(record);
        else strays.push(dropUpTo(client, key, id, record.version));
      });
      await settle(strays);
      return found.sort(byUpdated);
    });
  }

  /** Up to `limit` consents of one status ending by `at`, exact: the `limit` first by (endsAt, id). */
  function endingOf(status: string, at: number, limit: number): Promise<StoredConsent[]> {
    const key = keys.consentsEnding(status);
    const pageSize = Math.min(1000, Math.max(limit, 64));
    const max = scoreBound(at);
    return guard(async () => {
      const found: StoredConsent[] = [];
      const strays: string[] = [];
      const raises: { member: string; endsAt: number }[] = [];
      // Offsets stay valid because strays are removed only after the scan.
      for (let offset = 0; ; offset += pageSize) {
        const flat = await client.zrange(key, '-inf', max, 'BYSCORE', 'LIMIT', offset, pageSize, 'WITHSCORES');
        const entries: { member: string; score: number; id: string; version: number }[] = [];
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const parsed = parseEndingMember(flat[i]);
          if (parsed) entries.push({ member: flat[i], score: Number(flat[i + 1]), ...parsed });
        }
        const ids = [...new Set(entries.map((e) => e.id))];
        const records = new Map(await Promise.all(ids.map(async (id) => [id, await newest(id)] as const)));
        for (const e of entries) {
          const record = records.get(e.id);
          // Not created yet, or a newer version being written: leave it to its writer.
          if (record === undefined || e.version > record.version) continue;
          if (e.version < record.version || record.status !== status || record.endsAt === undefined) {
            strays.push(e.member);
            continue;
          }
          if (record.endsAt > e.score) raises.push({ member: e.member, endsAt: record.endsAt });
          if (record.endsAt <= at) found.push(record);
        }
        if (flat.length < pageSize * 2) break;
        // Scores are never later than the record's endsAt and members sort by id within a score, so once
        // the scan has passed the limit-th best (endsAt, id), nothing further can displace it.
        if (found.length >= limit && entries.length > 0) {
          found.sort(byEnding);
          const cut = found[limit - 1];
          const last = entries[entries.length - 1];
          const cutEnds = cut.endsAt ?? 0;
          if (last.score > cutEnds || (last.score === cutEnds && compareText(last.id, cut.id) >= 0)) break;
        }
      }
      await settle([strays.length > 0 ? client.zrem(key, ...strays) : Promise.resolve(), ...raises.map((r) => client.zadd(key, 'XX', 'GT', r.endsAt, r.member))]);
      return found;
    });
  }

  return {
    async create(consent) {
      checkCreate(consent);
      const next = normalize(consent);
      return writeGuard(() => write(next, undefined));
    },

    async update(consent, expectedVersion) {
      checkUpdate(consent, expectedVersion);
      const next = normalize(consent);
      return writeGuard(async () => {
        // The fields the indexes hold for `expectedVersion`; if the CAS then succeeds they are still these,
        // as a version never changes once written.
        const [version, fields] = await writer.hmget(keys.consent(next.id), 'v', 'i');
        if (version !== String(expectedVersion) || fields === null) return false;
        return write(next, { version: expectedVersion, fields: JSON.parse(fields) as IndexFields });
      });
    },

    get(id) {
      return guard(() => newest(id));
    },

    async history(id) {
      const versions = await guard(() => client.lrange(keys.consentVersions(id), 0, -1));
      return versions.map((json) => JSON.parse(json) as StoredConsent);
    },

    listByGrantor: (accountId) => listBy('grantor', accountId),
    listByGrantee: (accountId) => listBy('grantee', accountId),

    async listEnding(at, statuses, limit) {
      const n = Math.floor(limit);
      if (Number.isNaN(at)) throw new TypeError('listEnding needs a time, not NaN');
      if (!(n > 0) || statuses.length === 0) return [];
      const lists = await Promise.all([...new Set(statuses)].map((status) => endingOf(status, at, n)));
      return lists.flat().sort(byEnding).slice(0, n);
    },
  };
}
