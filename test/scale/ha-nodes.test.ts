import { createHash, randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeProtectedHeader } from 'jose';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { createSealer, parseDataKey } from '../../src/crypto/seal.ts';
import { rotateKey } from '../../src/oidc/keys.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { openRedisStore, type RedisStore } from '../../src/store/redis/index.ts';
import { API, REDIRECT, TEST_KEK, clientKey, testConfig } from '../helpers/broker.ts';
import { UserAgent, loginThroughDemo } from '../helpers/browser.ts';
import { freePort } from '../peers/ports.ts';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';

// Two broker nodes (in-process, same issuer, same KEK) on one Redis, for catalogue rows that are about
// "every node": HA-10 (revoking a refresh token kills the grant everywhere) and HA-14 (a signing-key
// rotation under load: every node publishes both keys during the overlap, nothing fails, tokens signed
// with the old key stay valid on every node).

const webBasic = `Basic ${Buffer.from('web:web-secret-0123456789').toString('base64')}`;
const rsBasic = `Basic ${Buffer.from('rs:rs-secret-0123456789ab').toString('base64')}`;
const otherBasic = `Basic ${Buffer.from('other:other-secret-0123456789').toString('base64')}`;
const FORM = 'application/x-www-form-urlencoded';

interface Node {
  broker: Broker;
  server: Server;
  base: string;
}

describe.skipIf(!redisAvailable)('two nodes on one Redis', () => {
  let redis: RedisPeer;
  let nodes: Node[] = [];
  let issuer: string;

  beforeAll(async () => {
    redis = await startRedis();
    const ports = [await freePort(), await freePort()];
    issuer = `http://localhost:${ports[0]}`;
    const cfg = testConfig(ports[0], redis.url, await clientKey(), { issuer, rateLimits: { tokenPerIp: 0, tokenPerClient: 0, loginPerIp: 0 } });
    const config = parseConfig(cfg, {});
    // The first node creates the signing keys; the second loads them from Redis.
    for (const port of ports) {
      const broker = await createBroker({ ...config, port }, { log: pino({ level: 'silent' }), env: {} });
      const server = await broker.listen(port, '127.0.0.1');
      nodes.push({ broker, server, base: `http://localhost:${(server.address() as AddressInfo).port}` });
    }
  }, 60_000);
  afterAll(async () => {
    for (const n of nodes) {
      n.server.closeAllConnections();
      await n.broker.close();
    }
    nodes = [];
    await redis?.stop();
  });

  const post = (node: Node, path: string, auth: string, params: Record<string, string>) =>
    fetch(`${node.base}${path}`, { method: 'POST', headers: { authorization: auth, 'content-type': FORM }, body: new URLSearchParams(params) });
  const introspect = async (node: Node, token: string) => (await (await post(node, '/token/introspection', rsBasic, { token })).json()) as { active: boolean };
  const clientToken = async (node: Node) => {
    const res = await post(node, '/token', otherBasic, { grant_type: 'client_credentials', resource: API, scope: 'system/Patient.rs' });
    return { status: res.status, token: res.status === 200 ? ((await res.json()) as { access_token: string }).access_token : undefined };
  };

  it('HA-10: a refresh token revoked on node A is dead on node B, with its grant', async () => {
    const [a, b] = nodes;
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const url = `${a.base}/auth?${new URLSearchParams({ client_id: 'web', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid offline_access patient/Patient.rs', resource: API, code_challenge: challenge, code_challenge_method: 'S256', state: 's', nonce: 'n', prompt: 'consent' })}`;
    const back = await loginThroughDemo(new UserAgent(), url, 'patient', a.base);
    const code = back.searchParams.get('code');
    expect(code).toBeTruthy();
    // Code redeemed on B: the login state is shared.
    const tokenRes = await post(b, '/token', webBasic, { grant_type: 'authorization_code', code: code!, redirect_uri: REDIRECT, code_verifier: verifier });
    expect(tokenRes.status).toBe(200);
    const tokens = (await tokenRes.json()) as { refresh_token?: string; access_token: string };
    expect(tokens.refresh_token).toBeTruthy();
    // The refresh token works on B (rotated, if the policy rotates), and the access token is live on both.
    const first = await post(b, '/token', webBasic, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token! });
    expect(first.status).toBe(200);
    const refreshed = (await first.json()) as { refresh_token?: string; access_token: string };
    const rt = refreshed.refresh_token ?? tokens.refresh_token!;
    for (const node of [a, b]) expect((await introspect(node, refreshed.access_token)).active).toBe(true);

    // Revoked on A ...
    expect((await post(a, '/token/revocation', webBasic, { token: rt, token_type_hint: 'refresh_token' })).status).toBe(200);
    // ... refused on B and on A.
    for (const node of [b, a]) {
      const refresh = await post(node, '/token', webBasic, { grant_type: 'refresh_token', refresh_token: rt });
      expect(refresh.status).toBe(400);
      expect(((await refresh.json()) as { error: string }).error).toBe('invalid_grant');
    }
    // The grant's access tokens are dead on every node too (RFC 7009 2.1; the grant is revoked).
    for (const node of [a, b]) {
      expect((await introspect(node, refreshed.access_token)).active).toBe(false);
      expect((await introspect(node, tokens.access_token)).active).toBe(false);
    }
  }, 30_000);

  it('HA-14: key rotation during load: both nodes publish both keys in the overlap, no request fails, old-key tokens stay valid everywhere', async () => {
    const [a, b] = nodes;
    const jwks = async (node: Node) => ((await (await fetch(`${node.base}/jwks`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    const before = await clientToken(a);
    expect(before.status).toBe(200);
    const oldKid = decodeProtectedHeader(before.token!).kid!;

    // Rotate as `broker keys rotate` does, against the shared store (overlap: the config minimum, 60 s).
    const store: RedisStore = openRedisStore(redis.url);
    const sealer = createSealer([parseDataKey(TEST_KEK)]);
    const { added } = await rotateKey(store.keys, sealer, 'ES256', 60, 3600);
    await store.close();

    // Load on both nodes until both publish the new key (each node re-reads keys every 30 s).
    const failures: number[] = [];
    const kidsSeen = new Set<string>();
    let issued = 0;
    const deadline = Date.now() + 45_000;
    let published = false;
    while (!published && Date.now() < deadline) {
      const batch = await Promise.all([a, b, a, b].map(clientToken));
      for (const r of batch) {
        if (r.status !== 200) failures.push(r.status);
        else {
          issued++;
          kidsSeen.add(decodeProtectedHeader(r.token!).kid!);
        }
      }
      const [ka, kb] = await Promise.all([jwks(a), jwks(b)]);
      published = ka.includes(added.kid) && kb.includes(added.kid);
      if (!published) await new Promise((r) => setTimeout(r, 250));
    }
    expect(published, 'both nodes publish the new key within one reload interval').toBe(true);
    expect(failures).toEqual([]);
    expect(issued).toBeGreaterThan(20);
    // During the overlap both keys are published on every node, and only the old one signs.
    for (const node of nodes) expect(await jwks(node)).toEqual(expect.arrayContaining([oldKid, added.kid]));
    expect([...kidsSeen]).toEqual([oldKid]);
    // A token signed with the old key before the rotation is valid on both nodes.
    for (const node of nodes) expect((await introspect(node, before.token!)).active).toBe(true);
    const after = await clientToken(b);
    expect(after.status).toBe(200);
    for (const node of nodes) expect((await introspect(node, after.token!)).active).toBe(true);
  }, 60_000);
});
