// Catalogue WS-05 and WS-17 on a broker that serves HTTPS itself (certificate from the generated test
// PKI, issuer https://localhost:<port>): what only holds over TLS, Secure cookies, the __Host- prefix
// and HSTS, alongside the other response headers on pages, JSON endpoints and errors.
import 'reflect-metadata';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import pino from 'pino';
import { Agent, getGlobalDispatcher, setGlobalDispatcher, type Dispatcher } from 'undici';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { clientKey, testConfig } from '../helpers/broker.ts';
import { UserAgent, hiddenField, location } from '../helpers/browser.ts';
import { freePort } from '../peers/ports.ts';
import { createTestPki } from '../peers/pki.ts';
import { signIn } from '../delegation/helpers.ts';
import { codeRequest, driveLogin } from '../oidc/hostile/support.ts';

let broker: Broker;
let server: Server;
let base: string;
let previous: Dispatcher;

beforeAll(async () => {
  const pki = await createTestPki();
  // Every fetch in this process (the test's and the broker's own account app, a relying party of
  // itself) trusts the test server CA.
  previous = getGlobalDispatcher();
  setGlobalDispatcher(new Agent({ connect: { ca: pki.serverCa.certPem } }));
  const port = await freePort();
  base = `https://localhost:${port}`;
  const cfg = testConfig(port, `sqlite:${join(mkdtempSync(join(tmpdir(), 'web-https-')), 'b.db')}`, await clientKey(), { issuer: base, tls: { certFile: pki.files.serverCert, keyFile: pki.files.serverKey } });
  broker = await createBroker(parseConfig(cfg, {}), { log: pino({ level: 'silent' }), env: {} });
  server = await broker.listen(port, '127.0.0.1');
}, 60_000);
afterAll(async () => {
  server?.closeAllConnections();
  await broker?.close();
  if (previous) setGlobalDispatcher(previous);
});

/** Every Set-Cookie of a web login and of an account-app sign-in, sign-out included. */
async function allCookies(): Promise<string[]> {
  const seen: string[] = [];
  const { setCookies } = await driveLogin(codeRequest(base).url, base);
  seen.push(...setCookies);
  const ua = new UserAgent();
  const keep = (res: Response) => {
    seen.push(...res.headers.getSetCookie());
    return res;
  };
  const login = location(keep(await ua.get(`${base}/account`)), base);
  const start = keep(await ua.get(login));
  const callback = await signIn(ua, { base }, location(start, base), { persona: 'patient' }, `${base}/account/callback`);
  keep(await ua.get(callback.href));
  const home = await ua.get(`${base}/account`);
  expect(home.status).toBe(200);
  keep(await ua.postForm(`${base}/account/logout`, { csrf: hiddenField(await home.text(), 'csrf') }));
  return seen;
}

describe('WS-05 cookies over HTTPS', () => {
  it('WS-05 every cookie is Secure, HttpOnly, SameSite, host-only and under 4 KB; the account cookies carry the __Host- prefix with Path=/', async () => {
    const cookies = await allCookies();
    const names = new Set(cookies.map((c) => c.split('=')[0]));
    for (const n of ['__Host-session', '__Host-session.sig', '__Secure-interaction', '__Secure-interaction_resume', '__Host-account_tx', '__Host-account_session']) expect(names, n).toContain(n);
    for (const n of ['account_session', '_session', '_interaction', '_interaction_resume']) expect(names, n).not.toContain(n);
    for (const c of cookies) {
      expect(c, c.slice(0, 50)).toMatch(/;\s*secure/i);
      expect(c, c.slice(0, 50)).toMatch(/;\s*httponly/i);
      expect(c, c.slice(0, 50)).toMatch(/;\s*samesite=(lax|strict)/i);
      expect(c, c.slice(0, 50)).not.toMatch(/;\s*domain=/i);
      expect(Buffer.byteLength(c)).toBeLessThan(4096);
      if (c.startsWith('__Host-')) expect(c, c.slice(0, 50)).toMatch(/;\s*path=\/(;|$)/i);
    }
  });

  // The interaction cookies are path-scoped by oidc-provider (/interaction/<uid>, /auth/<uid>), so they
  // cannot be __Host-; they are __Secure-.
  it('WS-05 the OP session cookie carries the __Host- prefix (Path=/, no Domain); the path-scoped interaction cookies carry __Secure-', async () => {
    const cookies = await allCookies();
    const session = cookies.filter((c) => /^__Host-session(\.sig)?=/.test(c));
    expect(session.length).toBeGreaterThan(0);
    for (const c of session) expect(c, c.slice(0, 50)).toMatch(/;\s*path=\/(;|$)/i);
    const interaction = cookies.filter((c) => /^__Secure-interaction(_resume)?(\.sig)?=/.test(c));
    expect(interaction.some((c) => /;\s*path=\/interaction\//i.test(c))).toBe(true);
    expect(interaction.some((c) => /;\s*path=\/auth\//i.test(c))).toBe(true);
    // [P] the prefixed session works: a second authorization in the same browser is answered from it.
    const ua = new UserAgent();
    await driveLogin(codeRequest(base).url, base, 'patient', ua);
    expect([...ua.cookies.keys()]).toContain('__Host-session');
    const silent = new URL(location(await ua.get(codeRequest(base, { prompt: 'none' }).url), base));
    expect(silent.searchParams.get('code')).toBeTruthy();
  });
});

describe('WS-17 response headers', () => {
  it('WS-17 HSTS of at least a year, nosniff, a CSP and COOP on pages, JSON endpoints, redirects and errors', async () => {
    const ua = new UserAgent();
    const auth = await ua.get(codeRequest(base).url);
    const answers: Array<[string, Response]> = [
      ['authorization redirect', auth],
      ['login chooser', await ua.get(location(auth, base))],
      ['authorization error page', await fetch(codeRequest(base, { redirect_uri: 'https://evil.example/cb' }).url, { redirect: 'manual' })],
      ['discovery', await fetch(`${base}/.well-known/openid-configuration`)],
      ['jwks', await fetch(`${base}/jwks`)],
      ['token error', await fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' })],
      ['account redirect', await fetch(`${base}/account`, { redirect: 'manual' })],
      ['API 401', await fetch(`${base}/api/delegations`)],
      ['unknown path', await fetch(`${base}/no-such-page`)],
      ['broker error page', await fetch(`${base}/interaction/unknown`)],
      ['health', await fetch(`${base}/healthz`)],
    ];
    for (const [what, res] of answers) {
      const hsts = res.headers.get('strict-transport-security') ?? '';
      expect(Number(/max-age=(\d+)/.exec(hsts)?.[1] ?? 0), `${what}: HSTS ${hsts}`).toBeGreaterThanOrEqual(31_536_000);
      expect(res.headers.get('x-content-type-options'), what).toBe('nosniff');
      expect(res.headers.get('content-security-policy') ?? '', what).toMatch(/default-src 'none'|frame-ancestors 'none'/);
      expect(res.headers.get('cross-origin-opener-policy'), what).toBe('same-origin');
      await res.body?.cancel().catch(() => undefined);
    }
  });
});
