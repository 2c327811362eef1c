import type { Account, AccountStore, Link } from '../contracts.ts';
import type { RedisClient } from './client.ts';
import type { AcknowledgedWrites } from './acknowledged.ts';
import type { Guard } from './guard.ts';
import type { Keyspace } from './keyspace.ts';
import { lua, runScript } from './scripts.ts';

// Accounts and links are hashes. A link key is unique per (provider, subject); the per-account set that
// lists an account's links lives in another slot, so it is maintained with separate commands: the member
// is added before the link is created (a link is never missing from its account's list) and listLinks
// ignores members whose link is gone or now belongs to another account.

const CREATE_ACCOUNT = lua(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'createdAt', ARGV[2], 'sealedProfile', ARGV[3])
return 1
`);

const UPDATE_ACCOUNT = lua(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'sealedProfile', ARGV[1])
return 1
`);

const CREATE_LINK = lua(`
local existing = redis.call('HGET', KEYS[1], 'accountId')
if existing then return {0, existing} end
redis.call('HSET', KEYS[1], 'provider', ARGV[1], 'subject', ARGV[2], 'accountId', ARGV[3], 'evidence', ARGV[4], 'createdAt', ARGV[5])
return {1}
`);

const DELETE_LINK = lua(`
if redis.call('HGET', KEYS[1], 'accountId') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

const SET_IDENTIFIER = lua(`
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
redis.call('SET', KEYS[1], ARGV[1])
return {1}
`);

type CreateResult = { created: true } | { created: false; existingAccountId: string };

function toCreateResult(reply: unknown): CreateResult {
  if (Array.isArray(reply) && reply[0] === 1) return { created: true };
  if (Array.isArray(reply) && reply[0] === 0 && typeof reply[1] === 'string') return { created: false, existingAccountId: reply[1] };
  throw new Error('unexpected reply from create script');
}

const LINK_FIELDS = ['provider', 'subject', 'accountId', 'evidence', 'createdAt'] as const;

function toLink(values: (string | null)[]): Link | undefined {
  const [provider, subject, accountId, evidence, createdAt] = values;
  if (provider === null || subject === null || accountId === null || evidence === null || createdAt === null) return undefined;
  return { provider, subject, accountId, evidence, createdAt: Number(createdAt) };
}

// Links and identifiers are claimed once ("exactly one gets created") and removing a link is a security
// decision: those writes wait for the replicas (acknowledged.ts), so a failover cannot hand the same claim
// out twice or bring a removed link back.
export function createRedisAccountStore(client: RedisClient, guard: Guard, keys: Keyspace, acked: AcknowledgedWrites): AccountStore {
  const writer = acked.client;
  function readLink(member: string): Promise<Link | undefined> {
    return guard(async () => toLink(await client.hmget(keys.link(member), ...LINK_FIELDS)));
  }

  return {
    async createAccount(account: Account) {
      const created = await guard(() => runScript(client, CREATE_ACCOUNT, [keys.account(account.id)], [account.id, account.createdAt, account.sealedProfile]));
      // Overwriting an existing account would silently detach its profile from its links.
      if (created !== 1) throw new Error(`account ${account.id} already exists`);
    },

    getAccount(id) {
      return guard(async () => {
        const [storedId, createdAt, sealedProfile] = await client.hmget(keys.account(id), 'id', 'createdAt', 'sealedProfile');
        if (storedId === null || createdAt === null || sealedProfile === null) return undefined;
        return { id: storedId, createdAt: Number(createdAt), sealedProfile };
      });
    },

    async updateAccount(id, sealedProfile) {
      const updated = await guard(() => runScript(client, UPDATE_ACCOUNT, [keys.account(id)], [sealedProfile]));
      if (updated !== 1) throw new Error(`account ${id} does not exist`);
    },

    createLink(link) {
      const member = keys.linkMember(link.provider, link.subject);
      return acked.guard(async () => {
        const since = acked.mark();
        await writer.sadd(keys.accountLinks(link.accountId), member);
        const result = toCreateResult(await runScript(writer, CREATE_LINK, [keys.link(member)], [link.provider, link.subject, link.accountId, link.evidence, link.createdAt]));
        if (result.created) await acked.ack(since);
        return result;
      });
    },

    findLink(provider, subject) {
      return readLink(keys.linkMember(provider, subject));
    },

    async listLinks(accountId) {
      const members = await guard(() => client.smembers(keys.accountLinks(accountId)));
      const links = await Promise.all(members.map(readLink));
      return links
        .filter((l): l is Link => l !== undefined && l.accountId === accountId)
        .sort((a, b) => a.createdAt - b.createdAt || a.provider.localeCompare(b.provider) || a.subject.localeCompare(b.subject));
    },

    deleteLink(provider, subject, accountId) {
      const member = keys.linkMember(provider, subject);
      return acked.guard(async () => {
        const since = acked.mark();
        const deleted = (await runScript(writer, DELETE_LINK, [keys.link(member)], [accountId])) === 1;
        if (deleted) {
          await writer.srem(keys.accountLinks(accountId), member);
          await acked.ack(since);
        }
        return deleted;
      });
    },

    setIdentifier(kind, hashedValue, accountId) {
      return acked.guard(async () => {
        const since = acked.mark();
        const result = toCreateResult(await runScript(writer, SET_IDENTIFIER, [keys.identifier(kind, hashedValue)], [accountId]));
        if (result.created) await acked.ack(since);
        return result;
      });
    },

    async findByIdentifier(kind, hashedValue) {
      return (await guard(() => client.get(keys.identifier(kind, hashedValue)))) ?? undefined;
    },
  };
}
