// Catalogue WS-14: a session cookie reused after logout, on another node. Two broker nodes (same
// issuer and key-encryption key) share one Redis. Both kinds of browser session are covered: the OP
// session (oidc-provider's _session, ended by RP-initiated logout) and the account app's own session
// (a sealed access token in a cookie, ended by its sign-out form).
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { clientKey, testConfig } from '../helpers/broker.ts';
import { UserAgent, hiddenField, location } from '../helpers/browser.ts';
import { freePort } from '../peers/ports.ts';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { signIn } from '../delegation/helpers.ts';
import { codeRequest, driveLogin, redeemCode } from '../oidc/hostile/support.ts';

interface Node {
  broker: Broker;
  server: Server;
  base: string;
}

describe.skipIf(!redisAvailable)('WS-14 two nodes on one Redis', () => {
  let redis: RedisPeer;
  const nodes: Node[] = [];
  let a: Node;
  let b: Node;

  beforeAll(async () => {
    redis = await startRedis();
    const ports = [await freePort(), await freePort()];
    const issuer = `http://localhost:${ports[0]}`;
    const config = parseConfig(testConfig(ports[0], redis.url, await clientKey(), { issuer, rateLimits: { tokenPerIp: 0, tokenPerClient: 0, loginPerIp: 0 } }), {});
    for (const port of ports) {
      const broker = await createBroker({ ...config, port }, { log: pino({ level: 'silent' }), env: {} });
      const server = await broker.listen(port, '127.0.0.1');
      nodes.push({ broker, server, base: `http://localhost:${(server.address() as AddressInfo).port}` });
    }
    [a, b] = nodes;
  }, 60_000);
  afterAll(async () => {
    for (const n of nodes) {
      n.server.closeAllConnections();
      await n.broker.close();
    }
    await redis?.stop();
  });

  /** A copy of a browser's cookies, as an attacker who kept them would have. */
  const copy = (ua: UserAgent): UserAgent => {
    const thief = new UserAgent();
    for (const [k, v] of ua.cookies) thief.cookies.set(k, v);
    return thief;
  };

  it('WS-14 the OP session: after RP-initiated logout on node A, its cookie on node B gets login_required, and a login page, never a code', async () => {
    const req = codeRequest(a.base);
    const { back, ua } = await driveLogin(req.url, a.base, 'patient');
    const tokens = (await (await redeemCode(a.base, back.searchParams.get('code')!, req.verifier)).json()) as { id_token: string };
    // [P] before logout the session is good on node B too.
    const silent = await ua.get(codeRequest(b.base, { prompt: 'none' }).url);
    expect(new URL(location(silent, b.base)).searchParams.get('code')).toBeTruthy();
    const kept = copy(ua);

    const page = await ua.get(`${a.base}/session/end?${new URLSearchParams({ id_token_hint: tokens.id_token, client_id: 'web' })}`);
    const html = await page.text();
    expect(page.status).toBe(200);
    const action = /<form[^>]*action="([^"]+)"/.exec(html)![1].replace(/&amp;/g, '&');
    const done = await ua.postForm(new URL(action, a.base).href, { xsrf: hiddenField(html, 'xsrf'), logout: 'yes' });
    expect([200, 302, 303]).toContain(done.status);

    const none = new URL(location(await kept.get(codeRequest(b.base, { prompt: 'none' }).url), b.base));
    expect(none.searchParams.get('error')).toBe('login_required');
    expect(none.searchParams.get('code')).toBeNull();
    const plain = location(await kept.get(codeRequest(b.base).url), b.base);
    expect(plain).toMatch(/\/interaction\//);
  });

  it('WS-14 the account app: after signing out on node A, a kept copy of its cookie is signed out on node B', async () => {
    const ua = new UserAgent();
    const login = location(await ua.get(`${a.base}/account`), a.base);
    const callback = await signIn(ua, { base: a.base }, login, { persona: 'patient' }, `${a.base}/account/callback`);
    expect((await ua.get(callback.href)).status).toBe(303);
    // [P] the session works on both nodes.
    const home = await ua.get(`${b.base}/account`);
    expect(home.status).toBe(200);
    const kept = copy(ua);

    const out = await ua.postForm(`${a.base}/account/logout`, { csrf: hiddenField(await home.text(), 'csrf') });
    expect(out.status).toBe(303);
    expect(ua.cookies.has('account_session')).toBe(false);

    const replay = await kept.get(`${b.base}/account`);
    expect(replay.status).toBe(302);
    expect(replay.headers.get('location')).toMatch(/^\/account\/login\?return=/);
    // Nor on node A, nor through a form post.
    expect((await copy(kept).get(`${a.base}/account`)).status).toBe(302);
    expect((await kept.postForm(`${b.base}/account/invite`, { csrf: 'x', level: '1' })).status).toBe(401);
  });
});
