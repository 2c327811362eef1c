import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { z } from 'zod';
import { StoreUnavailableError } from '../../store/errors.ts';
import type { BackendQuery, ChainHead, LedgerBackend, ScannedEntry, StoredCheckpoint } from '../backend.ts';
import { GENESIS_HEAD } from '../backend.ts';
import { GENESIS_HASH } from '../chain.ts';
import { decodeEntry, entriesOrThrow, parseJsonText } from '../decode.ts';
import type { StoredEntry } from '../entry.ts';
import { LedgerContentionError } from '../errors.ts';
import { isJsonObject } from '../json.ts';

export interface RedisLedgerOptions {
  /** Key prefix shared with the rest of the broker's keys. Default "broker:". */
  prefix?: string;
  /** Optimistic append attempts before giving up with LedgerContentionError. Default 1000. */
  maxAttempts?: number;
}

// Optimistic append: Node reads the head, computes sha256 and sends the entries; the script stores them only
// if the head is still the one the hashes were computed from. Redis Lua has no SHA-256, and computing the
// chain hash anywhere but from the true previous head would fork the chain. On a conflict the script returns
// the current head, so the retry needs no extra round trip.
//
// Appends queued in this process while a script is in flight go together in the next script (group commit):
// one round trip and one head check for all of them. Each caller's entry is still its own chain entry and
// its promise resolves only once the script that stored it returned. This is what keeps retries low when
// several processes append at once: a conflict costs one retry per batch, not per entry.
//
// KEYS: stream, head, then each entry's index keys in order. ARGV: expected seq, expected hash, genesis hash,
// entry count, then per entry (body, number of index keys), then the new head's hash and time.
const APPEND_LUA = `
local cur = redis.call('HMGET', KEYS[2], 'seq', 'hash', 'time')
local curSeq = tonumber(cur[1]) or 0
local curHash = cur[2] or ARGV[3]
if curSeq ~= tonumber(ARGV[1]) or curHash ~= ARGV[2] then
  return {'conflict', string.format('%d', curSeq), curHash, cur[3] or ''}
end
local n = tonumber(ARGV[4])
local k = 3
local a = 5
local seq = curSeq
for i = 1, n do
  seq = seq + 1
  local id = string.format('%d', seq)
  redis.call('XADD', KEYS[1], id .. '-0', 'e', ARGV[a])
  for j = 1, tonumber(ARGV[a + 1]) do
    redis.call('ZADD', KEYS[k], seq, id)
    k = k + 1
  end
  a = a + 2
end
redis.call('HSET', KEYS[2], 'seq', string.format('%d', seq), 'hash', ARGV[a], 'time', ARGV[a + 1])
return {'ok', string.format('%d', seq)}
`;

/** Entries per append script: bounds how long one script holds Redis. */
const MAX_GROUP = 64;

// Several processes may sign a checkpoint for the same seq; the first one stays.
const PUT_CHECKPOINT_LUA = `
if redis.call('ZCOUNT', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
end
return 1
`;

const sha1 = (s: string): string => createHash('sha1').update(s).digest('hex');

const appendReply = z.union([
  z.tuple([z.literal('ok'), z.string()]),
  z.tuple([z.literal('conflict'), z.string(), z.string(), z.string()]),
]);
const streamReply = z.array(z.tuple([z.string(), z.array(z.string())]));
const stringList = z.array(z.string());
const headReply = z.tuple([z.string().nullable(), z.string().nullable(), z.string().nullable()]);

function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}

/** A Redis reply error is our bug (wrong type, script error); anything else means Redis is out of reach. */
async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isReplyError(err) || err instanceof LedgerContentionError || err instanceof z.ZodError) throw err;
    throw new StoreUnavailableError('audit ledger redis unavailable', { cause: err });
  }
}

function seqOfId(id: string): number | null {
  const m = /^(\d+)-0$/.exec(id);
  return m ? Number(m[1]) : null;
}

function decodeStreamItem([id, fields]: [string, string[]]): ScannedEntry {
  const seq = seqOfId(id);
  if (seq === null) return { seq: Number(id.split('-')[0]) || 0, error: `unexpected stream id ${id}` };
  const idx = fields.indexOf('e');
  const body = idx >= 0 && idx % 2 === 0 ? parseJsonText(fields[idx + 1] ?? '') : undefined;
  if (!isJsonObject(body)) return { seq, error: 'malformed entry (not a JSON object)' };
  return decodeEntry(seq, { ...body, seq });
}

/** The seq is the stream id; everything else is one JSON field. */
function encodeStreamBody(e: StoredEntry): string {
  const { seq: _seq, ...rest } = e;
  return JSON.stringify(rest);
}

/**
 * The ledger on Redis: a stream (id = seq) plus a head hash, appended by one Lua script. Every key carries the
 * `{audit}` hash tag so the script's keys live in one cluster slot. Per-process appends are queued so this
 * process never races itself; only other processes cause retries.
 */
export type RedisLedgerBackend = LedgerBackend & {
  /** Appends retried because another process moved the head first (also counted by the ledger's metrics). */
  readonly stats: { conflicts: number };
};

export function redisLedgerBackend(redis: Redis | Cluster, options: RedisLedgerOptions = {}): RedisLedgerBackend {
  const base = `${options.prefix ?? 'broker:'}{audit}:`;
  const keys = {
    stream: `${base}entries`,
    head: `${base}head`,
    checkpoints: `${base}checkpoints`,
    index: (kind: 'subject' | 'actor' | 'client' | 'consent', value: string) => `${base}ix:${kind}:${value}`,
  };
  const maxAttempts = options.maxAttempts ?? 1000;
  const stats = { conflicts: 0 };
  let cachedHead: ChainHead | undefined;

  interface Pending {
    build: (head: ChainHead) => StoredEntry;
    resolve: (r: { entry: StoredEntry; attempts: number }) => void;
    reject: (err: unknown) => void;
  }
  const pending: Pending[] = [];
  let draining = false;

  async function script(lua: string, keyList: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await redis.call('EVALSHA', [sha1(lua), keyList.length, ...keyList, ...args]);
    } catch (err) {
      if (isReplyError(err) && err instanceof Error && err.message.startsWith('NOSCRIPT')) {
        return redis.call('EVAL', [lua, keyList.length, ...keyList, ...args]);
      }
      throw err;
    }
  }

  async function readHead(): Promise<ChainHead> {
    const [seq, hash, time] = headReply.parse(await redis.call('HMGET', [keys.head, 'seq', 'hash', 'time']));
    if (seq === null || hash === null) return GENESIS_HEAD;
    return { seq: Number(seq), hash, time: time || null };
  }

  /** Stores a group of entries as consecutive chain entries, retrying from the fresh head on conflict. */
  async function appendGroup(builds: ((head: ChainHead) => StoredEntry)[]): Promise<{ entries: StoredEntry[]; attempts: number }> {
    let head = cachedHead ?? (await readHead());
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const entries: StoredEntry[] = [];
      const keyList = [keys.stream, keys.head];
      const args: (string | number)[] = [head.seq, head.hash, GENESIS_HASH, builds.length];
      let at = head;
      for (const build of builds) {
        const e = build(at);
        const ix = indexKeys(e);
        entries.push(e);
        keyList.push(...ix);
        args.push(encodeStreamBody(e), ix.length);
        at = { seq: e.seq, hash: e.hash, time: e.time };
      }
      args.push(at.hash, at.time ?? '');
      const reply = appendReply.parse(await script(APPEND_LUA, keyList, args));
      if (reply[0] === 'ok') {
        cachedHead = at;
        return { entries, attempts: attempt };
      }
      stats.conflicts++;
      // Retry at once from the head the script returned. No backoff: a writer that sleeps comes back to a
      // head that moved again while it slept and loses every time; retrying immediately is a fair race.
      head = { seq: Number(reply[1]), hash: reply[2], time: reply[3] || null };
    }
    cachedHead = undefined;
    throw new LedgerContentionError();
  }

  async function drain(): Promise<void> {
    draining = true;
    try {
      while (pending.length > 0) {
        const group = pending.splice(0, MAX_GROUP);
        try {
          const { entries, attempts } = await appendGroup(group.map((p) => p.build));
          group.forEach((p, i) => p.resolve({ entry: entries[i], attempts }));
        } catch (err) {
          // The script is atomic: either every entry of the group was stored or none was.
          for (const p of group) p.reject(err);
        }
      }
    } finally {
      draining = false;
    }
  }

  function indexKeys(e: Pick<StoredEntry, 'subjectIndex' | 'actorIndex' | 'client' | 'consent'>): string[] {
    const out: string[] = [];
    if (e.subjectIndex !== null) out.push(keys.index('subject', e.subjectIndex));
    if (e.actorIndex !== null) out.push(keys.index('actor', e.actorIndex));
    if (e.client !== null) out.push(keys.index('client', e.client));
    if (e.consent !== null) out.push(keys.index('consent', e.consent));
    return out;
  }

  async function xrange(from: number | string, to: number | string, count: number, reverse = false): Promise<ScannedEntry[]> {
    const reply = await redis.call(reverse ? 'XREVRANGE' : 'XRANGE', [keys.stream, String(from), String(to), 'COUNT', count]);
    return streamReply.parse(reply).map(decodeStreamItem);
  }

  async function fetchSeqs(seqs: number[]): Promise<ScannedEntry[]> {
    if (seqs.length === 0) return [];
    const pipe = redis.pipeline();
    for (const s of seqs) pipe.call('XRANGE', [keys.stream, `${s}-0`, `${s}-0`]);
    const results = (await pipe.exec()) ?? [];
    const out: ScannedEntry[] = [];
    for (const [err, reply] of results) {
      if (err) throw err;
      for (const item of streamReply.parse(reply)) out.push(decodeStreamItem(item));
    }
    return out;
  }

  async function firstSeq(): Promise<number | null> {
    const items = streamReply.parse(await redis.call('XRANGE', [keys.stream, '-', '+', 'COUNT', 1]));
    return items.length ? seqOfId(items[0][0]) : null;
  }

  /** Smallest seq in [lo, hi] whose time >= t, or hi + 1. Valid because the ledger never lets time decrease. */
  async function seqAtOrAfterTime(t: string, lo: number, hi: number): Promise<number> {
    let answer = hi + 1;
    while (lo <= hi) {
      const mid = Math.floor((lo + hi) / 2);
      const [found] = entriesOrThrow(await xrange(mid, '+', 1));
      if (!found || found.seq > hi || found.time >= t) {
        if (found && found.seq <= hi) answer = Math.min(answer, found.seq);
        hi = mid - 1;
      } else {
        lo = found.seq + 1;
      }
    }
    return answer;
  }

  function matches(e: StoredEntry, q: BackendQuery): boolean {
    if (q.subjectIndex !== undefined && e.subjectIndex !== q.subjectIndex) return false;
    if (q.actorIndex !== undefined && e.actorIndex !== q.actorIndex) return false;
    if (q.client !== undefined && e.client !== q.client) return false;
    if (q.consent !== undefined && e.consent !== q.consent) return false;
    if (q.types && q.types.length > 0 && !q.types.includes(e.type)) return false;
    if (q.fromTime !== undefined && e.time < q.fromTime) return false;
    if (q.toTime !== undefined && e.time >= q.toTime) return false;
    return true;
  }

  async function query(q: BackendQuery): Promise<StoredEntry[]> {
    const first = await firstSeq();
    if (first === null) return [];
    const head = await readHead();
    let lo = Math.max(first, (q.afterSeq ?? 0) + 1);
    let hi = Math.min(head.seq, (q.beforeSeq ?? Number.MAX_SAFE_INTEGER) - 1);
    if (q.fromTime !== undefined) lo = Math.max(lo, await seqAtOrAfterTime(q.fromTime, lo, hi));
    if (q.toTime !== undefined) hi = Math.min(hi, (await seqAtOrAfterTime(q.toTime, lo, hi)) - 1);
    const out: StoredEntry[] = [];
    if (lo > hi || q.limit <= 0) return out;
    const batch = Math.min(1000, Math.max(100, q.limit * 2));
    const desc = q.order === 'desc';

    const indexKey =
      q.subjectIndex !== undefined ? keys.index('subject', q.subjectIndex)
      : q.actorIndex !== undefined ? keys.index('actor', q.actorIndex)
      : q.consent !== undefined ? keys.index('consent', q.consent)
      : q.client !== undefined ? keys.index('client', q.client)
      : undefined;

    while (lo <= hi && out.length < q.limit) {
      let scanned: ScannedEntry[];
      if (indexKey !== undefined) {
        const seqs = stringList
          .parse(await redis.call(desc ? 'ZREVRANGEBYSCORE' : 'ZRANGEBYSCORE', desc ? [indexKey, hi, lo, 'LIMIT', 0, batch] : [indexKey, lo, hi, 'LIMIT', 0, batch]))
          .map(Number);
        if (seqs.length === 0) break;
        scanned = await fetchSeqs(seqs);
        if (desc) hi = seqs[seqs.length - 1] - 1;
        else lo = seqs[seqs.length - 1] + 1;
      } else {
        scanned = desc ? await xrange(hi, lo, batch, true) : await xrange(lo, hi, batch);
        if (scanned.length === 0) break;
        if (desc) hi = scanned[scanned.length - 1].seq - 1;
        else lo = scanned[scanned.length - 1].seq + 1;
      }
      for (const e of entriesOrThrow(scanned)) {
        if (matches(e, q)) out.push(e);
        if (out.length >= q.limit) break;
      }
    }
    return out;
  }

  const backend = {
    kind: 'redis' as const,
    stats,

    head: () => guard(readHead),

    append(build: (head: ChainHead) => StoredEntry) {
      return guard(
        () =>
          new Promise<{ entry: StoredEntry; attempts: number }>((resolve, reject) => {
            pending.push({ build, resolve, reject });
            if (!draining) void drain();
          }),
      );
    },

    range: (fromSeq: number, toSeq: number, limit: number) => guard(() => xrange(fromSeq, Number.isFinite(toSeq) ? toSeq : '+', limit)),

    query: (q: BackendQuery) => guard(() => query(q)),

    firstSeq: () => guard(firstSeq),

    putCheckpoint: (cp: StoredCheckpoint) =>
      guard(async () => {
        await script(PUT_CHECKPOINT_LUA, [keys.checkpoints], [cp.seq, `${cp.seq}:${cp.jws}`]);
      }),

    checkpoints: () =>
      guard(async () => stringList.parse(await redis.call('ZRANGEBYSCORE', [keys.checkpoints, '-inf', '+inf'])).map(decodeCheckpoint)),

    latestCheckpoint: () =>
      guard(async () => {
        const [member] = stringList.parse(await redis.call('ZREVRANGEBYSCORE', [keys.checkpoints, '+inf', '-inf', 'LIMIT', 0, 1]));
        return member === undefined ? null : decodeCheckpoint(member);
      }),

    truncateThrough: (anchorSeq: number) =>
      guard(async () => {
        // Index sorted sets are per value, so find which ones the removed entries touched before trimming.
        const touched = new Set<string>();
        let from = 0;
        for (;;) {
          const page = await xrange(from, anchorSeq, 1000);
          for (const s of page) if (s.entry) for (const k of indexKeys(s.entry)) touched.add(k);
          if (page.length < 1000) break;
          from = page[page.length - 1].seq + 1;
        }
        const tx = redis.multi();
        for (const k of touched) tx.call('ZREMRANGEBYSCORE', [k, '-inf', anchorSeq]);
        tx.call('XTRIM', [keys.stream, 'MINID', `${anchorSeq + 1}-0`]);
        tx.call('ZREMRANGEBYSCORE', [keys.checkpoints, '-inf', `(${anchorSeq}`]);
        const results = (await tx.exec()) ?? [];
        const trimmed = results[touched.size];
        if (!trimmed || trimmed[0]) throw trimmed?.[0] ?? new Error('XTRIM did not run');
        return Number(trimmed[1]);
      }),
  };
  return backend;
}

/** Members are "<seq>:<jws>", so listing needs no WITHSCORES (whose reply shape differs between RESP2 and 3). */
function decodeCheckpoint(member: string): StoredCheckpoint {
  const i = member.indexOf(':');
  const seq = Number(member.slice(0, i));
  return { seq: Number.isSafeInteger(seq) ? seq : -1, jws: member.slice(i + 1), head: null, iat: null };
}
