import type { OidcModelStore, OidcPayload } from '../contracts.ts';
import type { RedisClient } from './client.ts';
import type { AcknowledgedWrites } from './acknowledged.ts';
import type { Guard } from './guard.ts';
import type { Keyspace } from './keyspace.ts';
import { lua, runScript } from './scripts.ts';

// A record is a hash: p = payload JSON exactly as given, c = consumed (JSON), g = grantId. Keeping
// `consumed` out of the JSON lets consume be a single HSETNX instead of a cjson decode/encode in Lua,
// which would rewrite the payload (cjson turns [] into {} and rounds numbers to 14 digits).
// uid, userCode and grantId indexes are separate keys in their own slots; they are written before or
// alongside the record and every lookup through them re-checks the record, so a stale index entry
// (record replaced, destroyed or expired) is harmless.

const UPSERT = lua(`
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'p', ARGV[1], 'g', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'c', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 1
`);

// HSETNX would create a missing record, hence the EXISTS check inside the same script.
// Changing a field keeps the key's TTL.
const CONSUME = lua(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], 'c', ARGV[1])
`);

// The set lives as long as its longest-lived member; a member without expiry makes it persistent.
const INDEX_GRANT = lua(`
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SADD', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  redis.call('PERSIST', KEYS[1])
elseif existed == 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl >= 0 and ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
end
return 1
`);

// Deletes the record only if it still belongs to the grant: it may have been re-upserted under another.
const REVOKE_IF_GRANT = lua(`
if redis.call('HGET', KEYS[1], 'g') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

function indexField(payload: OidcPayload, field: 'grantId' | 'uid' | 'userCode'): string | undefined {
  const v = payload[field];
  return typeof v === 'string' ? v : undefined;
}

function toPayload(reply: unknown): OidcPayload | undefined {
  if (!Array.isArray(reply) || typeof reply[0] !== 'string') return undefined;
  const payload = JSON.parse(reply[0]) as OidcPayload;
  if (typeof reply[1] === 'string') payload.consumed = JSON.parse(reply[1]);
  return payload;
}

/**
 * consume, destroy and revokeByGrantId go through `acked` (acknowledged.ts): a consumed code or refresh
 * token, or a revocation, lost on failover would let it be used again. A lost upsert fails safe (the
 * record is simply unknown), so upserts do not wait for replicas.
 */
export function createRedisOidcStore(client: RedisClient, guard: Guard, keys: Keyspace, acked: AcknowledgedWrites): OidcModelStore {
  const writer = acked.client;
  function find(model: string, id: string): Promise<OidcPayload | undefined> {
    return guard(async () => toPayload(await client.hmget(keys.oidc(model, id), 'p', 'c')));
  }

  async function findVia(indexKey: string, model: string, field: 'uid' | 'userCode', value: string): Promise<OidcPayload | undefined> {
    const id = await guard(() => client.get(indexKey));
    if (id === null) return undefined;
    const payload = await find(model, id);
    return payload && payload[field] === value ? payload : undefined;
  }

  return {
    async upsert(model, id, payload, expiresIn) {
      const ttl = expiresIn === undefined ? '' : String(Math.max(1, Math.ceil(expiresIn * 1000)));
      const { consumed, ...rest } = payload;
      const grantId = indexField(payload, 'grantId');
      const uid = indexField(payload, 'uid');
      const userCode = indexField(payload, 'userCode');
      const setIndex = (key: string): Promise<unknown> => (ttl === '' ? client.set(key, id) : client.set(key, id, 'PX', ttl));

      await guard(async () => {
        // The grant index first: a record that exists is always reachable by revokeByGrantId.
        if (grantId !== undefined) await runScript(client, INDEX_GRANT, [keys.oidcGrant(model, grantId)], [id, ttl]);
        const consumedJson = consumed === undefined || consumed === null ? '' : JSON.stringify(consumed);
        await Promise.all([
          runScript(client, UPSERT, [keys.oidc(model, id)], [JSON.stringify(rest), grantId ?? '', consumedJson, ttl]),
          uid === undefined ? undefined : setIndex(keys.oidcUid(model, uid)),
          userCode === undefined ? undefined : setIndex(keys.oidcUserCode(model, userCode)),
        ]);
      });
    },

    find,
    findByUid: (model, uid) => findVia(keys.oidcUid(model, uid), model, 'uid', uid),
    findByUserCode: (model, userCode) => findVia(keys.oidcUserCode(model, userCode), model, 'userCode', userCode),

    consume(model, id) {
      return acked.guard(async () => {
        const since = acked.mark();
        const won = (await runScript(writer, CONSUME, [keys.oidc(model, id)], [Math.floor(Date.now() / 1000)])) === 1;
        // A lost race wrote nothing: nothing to acknowledge.
        if (won) await acked.ack(since);
        return won;
      });
    },

    async destroy(model, id) {
      await acked.guard(async () => {
        const since = acked.mark();
        await writer.del(keys.oidc(model, id));
        await acked.ack(since);
      });
    },

    async revokeByGrantId(model, grantId) {
      const indexKey = keys.oidcGrant(model, grantId);
      await acked.guard(async () => {
        const since = acked.mark();
        const ids = await writer.smembers(indexKey);
        if (ids.length === 0) return;
        // One command per record: in a cluster each record sits in its own slot.
        await Promise.all(ids.map((id) => runScript(writer, REVOKE_IF_GRANT, [keys.oidc(model, id)], [grantId])));
        // SREM only what was seen, so a record indexed meanwhile stays revocable.
        await writer.srem(indexKey, ...ids);
        await acked.ack(since);
      });
    },
  };
}
