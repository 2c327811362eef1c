// Races spread across two broker nodes on one Redis (catalogue OA-23, OA-34, OA-44): oidc-provider
// checks `consumed` (and its replay cache) before it writes, in two steps, so only an atomic store
// keeps a second node from winning the same code, refresh token or client-assertion jti.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { API, REDIRECT, clientKey, testConfig, type ClientKey } from '../helpers/broker.ts';
import { UserAgent, loginThroughDemo } from '../helpers/browser.ts';
import { freePort } from '../peers/ports.ts';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { ASSERTION_TYPE, RS_SECRET, WEB_SECRET, basic, newVerifier, s256 } from '../oidc/hostile/support.ts';

const FORM = 'application/x-www-form-urlencoded';

interface Node {
  broker: Broker;
  server: Server;
  base: string;
}

describe.skipIf(!redisAvailable)('races across two nodes on one Redis', () => {
  let redis: RedisPeer;
  let nodes: Node[] = [];
  let issuer: string;
  let svcKey: ClientKey;

  beforeAll(async () => {
    redis = await startRedis();
    svcKey = await clientKey('ES256');
    const ports = [await freePort(), await freePort()];
    issuer = `http://localhost:${ports[0]}`;
    const config = parseConfig(testConfig(ports[0], redis.url, svcKey, { issuer, rateLimits: { tokenPerIp: 0, tokenPerClient: 0, loginPerIp: 0 } }), {});
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

  const post = (node: Node, path: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
    fetch(`${node.base}${path}`, { method: 'POST', headers: { 'content-type': FORM, ...headers }, body: new URLSearchParams(form) });
  /** `n` requests, alternating between the two nodes, all started before any is answered. */
  const spread = (n: number, send: (node: Node) => Promise<Response>) => Promise.all(Array.from({ length: n }, (_, i) => send(nodes[i % 2])));
  const introspect = async (node: Node, token: string) => ((await (await post(node, '/token/introspection', { token }, { authorization: basic('rs', RS_SECRET) })).json()) as { active: boolean }).active;

  async function codeOnNodeA(offline: boolean) {
    const verifier = newVerifier();
    const scope = offline ? 'openid offline_access patient/Patient.rs' : 'openid patient/Patient.rs';
    const url = `${nodes[0].base}/auth?${new URLSearchParams({ client_id: 'web', response_type: 'code', redirect_uri: REDIRECT, scope, resource: API, code_challenge: s256(verifier), code_challenge_method: 'S256', state: 's', nonce: 'n', ...(offline && { prompt: 'consent' }) })}`;
    const back = await loginThroughDemo(new UserAgent(), url, 'patient', nodes[0].base);
    const code = back.searchParams.get('code');
    expect(code).toBeTruthy();
    return { code: code!, verifier };
  }
  const redeem = (node: Node, code: string, verifier: string) =>
    post(node, '/token', { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }, { authorization: basic('web', WEB_SECRET) });

  async function outcomes(results: Response[]) {
    return Promise.all(results.map(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, string> })));
  }

  it('OA-23 20 concurrent redemptions of one code across two nodes: exactly one 200, the rest invalid_grant, and the reuse revokes the winner too', async () => {
    const { code, verifier } = await codeOnNodeA(false);
    const all = await outcomes(await spread(20, (node) => redeem(node, code, verifier)));
    const winners = all.filter((o) => o.status === 200);
    expect(winners).toHaveLength(1);
    for (const o of all.filter((x) => x.status !== 200)) {
      expect(o.status).toBe(400);
      expect(o.body.error).toBe('invalid_grant');
      expect(o.body.access_token).toBeUndefined();
    }
    // A reused code means it leaked: the grant it created is revoked on every node (as in OA-22).
    for (const node of nodes) expect(await introspect(node, winners[0].body.access_token)).toBe(false);
  }, 60_000);

  it('OA-44 10 parallel uses of one refresh token across two nodes: at most one new refresh token, and the losers revoke the grant', async () => {
    const { code, verifier } = await codeOnNodeA(true);
    const first = (await (await redeem(nodes[1], code, verifier)).json()) as { refresh_token: string; access_token: string };
    expect(first.refresh_token).toBeTruthy();
    const all = await outcomes(await spread(10, (node) => post(node, '/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token }, { authorization: basic('web', WEB_SECRET) })));
    const winners = all.filter((o) => o.status === 200);
    expect(winners.length).toBeLessThanOrEqual(1);
    for (const o of all.filter((x) => x.status !== 200)) expect(o.body.error).toBe('invalid_grant');
    // Reuse detection: whatever the winner got is dead everywhere, and so is the original access token.
    for (const w of winners) {
      for (const node of nodes) {
        const again = await post(node, '/token', { grant_type: 'refresh_token', refresh_token: w.body.refresh_token }, { authorization: basic('web', WEB_SECRET) });
        expect(again.status).toBe(400);
        expect(((await again.json()) as { error: string }).error).toBe('invalid_grant');
        expect(await introspect(node, w.body.access_token)).toBe(false);
      }
    }
    for (const node of nodes) expect(await introspect(node, first.access_token)).toBe(false);
  }, 60_000);

  it('OA-34 one client assertion (same jti) sent 20 times in parallel to two nodes: exactly one 200, the rest invalid_client', async () => {
    const assertion = await new SignJWT({ jti: randomBytes(12).toString('hex') })
      .setProtectedHeader({ alg: 'ES256', kid: svcKey.jwk.kid })
      .setIssuer('svc')
      .setSubject('svc')
      .setAudience(issuer)
      .setIssuedAt()
      .setExpirationTime('2m')
      .sign(svcKey.privateKey);
    const all = await outcomes(
      await spread(20, (node) => post(node, '/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion, resource: API, scope: 'system/Patient.rs' })),
    );
    expect(all.filter((o) => o.status === 200)).toHaveLength(1);
    for (const o of all.filter((x) => x.status !== 200)) {
      expect(o.status).toBe(401);
      expect(o.body.error).toBe('invalid_client');
    }
  }, 60_000);

  it('OA-34 [P] different jtis on both nodes at once all succeed (the refusals above are replay detection, not load)', async () => {
    const fresh = () =>
      new SignJWT({ jti: randomBytes(12).toString('hex') }).setProtectedHeader({ alg: 'ES256', kid: svcKey.jwk.kid }).setIssuer('svc').setSubject('svc').setAudience(issuer).setIssuedAt().setExpirationTime('2m').sign(svcKey.privateKey);
    const assertions = await Promise.all(Array.from({ length: 10 }, fresh));
    const results = await Promise.all(assertions.map((a, i) => post(nodes[i % 2], '/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: a, resource: API, scope: 'system/Patient.rs' })));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
  }, 60_000);
});
