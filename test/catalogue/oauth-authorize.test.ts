// Catalogue 1A rows the hostile authorize tests leave open: omitted redirect_uri with several
// registered ones (OA-04), dynamic registration (OA-05), error redirects as an open redirector
// (OA-08) and nonce sizes (OA-13).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { decodeJwt } from 'jose';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { REDIRECT, clientKey, startTestBroker, testConfig, type TestBroker } from '../helpers/broker.ts';
import { DbCounter, basic, codeRequest, createsNothing, driveLogin, redeemCode } from '../oidc/hostile/support.ts';

const TWO_SECRET = 'two-uris-secret-0123456789';
const SECOND = 'https://client.test/second';

let tb: TestBroker;
let db: DbCounter;

beforeAll(async () => {
  const svcKey = await clientKey('ES256');
  const clients = [
    ...testConfig(0, 'sqlite::memory:', svcKey).clients!,
    { client_id: 'two-uris', client_secret: TWO_SECRET, token_endpoint_auth_method: 'client_secret_basic' as const, grant_types: ['authorization_code' as const], redirect_uris: [REDIRECT, SECOND], firstParty: true, scope: 'openid profile' },
  ];
  tb = await startTestBroker({ svcKey, extra: { clients } });
  db = new DbCounter(tb);
});
afterAll(async () => {
  db?.close();
  await tb?.close();
});

/** The broker's own error page: 400, HTML, no Location, no code anywhere. */
async function localErrorPage(res: Response): Promise<string> {
  const body = await res.text();
  expect(res.status, body.slice(0, 300)).toBe(400);
  expect(res.headers.get('location')).toBeNull();
  expect(res.headers.get('content-type') ?? '').toMatch(/^text\/html/);
  expect(body).toContain('There is a problem with this sign-in request');
  expect(body).not.toMatch(/[?&#]code=/);
  return body;
}

function problems(input: unknown): string[] {
  try {
    parseConfig(input, {});
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('OA-04 redirect_uri omitted', () => {
  it('OA-04 a client with two registered redirect URIs must name one: without redirect_uri it gets the local error page', async () => {
    await createsNothing(db, async () => {
      await localErrorPage(await fetch(codeRequest(tb.base, { client_id: 'two-uris', redirect_uri: undefined }).url, { redirect: 'manual' }));
    });
  });

  it('OA-04 [P] each of its two URIs named explicitly completes the flow, back on that URI', async () => {
    for (const uri of [REDIRECT, SECOND]) {
      const req = codeRequest(tb.base, { client_id: 'two-uris', redirect_uri: uri });
      const { back } = await driveLogin(req.url, tb.base);
      expect(`${back.origin}${back.pathname}`).toBe(uri);
      const res = await redeemCode(tb.base, back.searchParams.get('code')!, req.verifier, { client: ['two-uris', TWO_SECRET], redirectUri: uri });
      expect(res.status, await res.clone().text()).toBe(200);
    }
  });

  it('OA-04 [P] a client with exactly one registered URI may omit it (the one URI is used)', async () => {
    const req = codeRequest(tb.base, { redirect_uri: undefined });
    const { back } = await driveLogin(req.url, tb.base);
    expect(`${back.origin}${back.pathname}`).toBe(REDIRECT);
    expect(back.searchParams.get('code')).toBeTruthy();
  });
});

describe('OA-05 dynamic client registration', () => {
  it('OA-05 there is no registration endpoint: POST /reg (fragment, javascript:, data:, http: redirect URIs) is 404 and registers nothing', async () => {
    const meta = (await (await fetch(`${tb.base}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(meta.registration_endpoint).toBeUndefined();
    for (const uri of ['https://evil.example/cb#frag', 'javascript:alert(1)', 'data:text/html,x', 'http://evil.example/cb', 'https://evil.example/cb']) {
      await createsNothing(db, async () => {
        const res = await fetch(`${tb.base}/reg`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: [uri], token_endpoint_auth_method: 'none' }) });
        expect(res.status).toBe(404);
        expect(await res.text()).not.toContain('client_id');
      });
    }
  });

  it('OA-05 clients come from configuration only, and it refuses fragment, javascript:, data: and non-loopback http: redirect URIs', () => {
    const client = (uri: string) => ({ clients: [{ client_id: 'a', token_endpoint_auth_method: 'none', redirect_uris: [uri] }] });
    expect(problems(client('https://a.example/cb#frag'))).toContain('clients[0].redirect_uris[0]: must not contain a fragment');
    expect(problems(client('javascript:alert(1)'))).toContain('clients[0].redirect_uris[0]: scheme not allowed');
    expect(problems(client('data:text/html,hello'))).toContain('clients[0].redirect_uris[0]: scheme not allowed');
    expect(problems(client('vbscript:x'))).toContain('clients[0].redirect_uris[0]: scheme not allowed');
    expect(problems(client('http://evil.example/cb'))).toContain('clients[0].redirect_uris[0]: http is allowed only for loopback hosts');
    expect(problems(client('http://127.0.0.1:9000/cb'))).toEqual([]);
    // The same rules for post-logout redirect URIs.
    expect(problems({ clients: [{ client_id: 'a', token_endpoint_auth_method: 'none', redirect_uris: ['https://a.example/cb'], post_logout_redirect_uris: ['javascript:alert(1)'] }] })).toContain('clients[0].post_logout_redirect_uris[0]: scheme not allowed');
  });
});

describe('OA-08 the authorization endpoint is no open redirector', () => {
  // Requests that make oidc-provider answer with an error: if the redirect URI is not one the operator
  // registered for the client, that error must stay on the broker's own page.
  const erroring: Array<[string, Record<string, string | undefined>]> = [
    ['prompt=none without a session', { prompt: 'none' }],
    ['an unsupported response_type', { response_type: 'token' }],
    ['no PKCE challenge', { code_challenge: undefined, code_challenge_method: undefined }],
    ['a request object', { request: 'eyJhbGciOiJub25lIn0.e30.' }],
    ['an unknown resource', { resource: 'https://unknown.example' }],
  ];

  it.each(erroring)('OA-08 %s with an attacker redirect_uri -> local error page, never a redirect there', async (_label, params) => {
    await createsNothing(db, async () => {
      await localErrorPage(await fetch(codeRequest(tb.base, { ...params, redirect_uri: 'https://evil.example/cb' }).url, { redirect: 'manual' }));
    });
  });

  it.each(erroring)('OA-08 %s from an unknown (attacker-made) client -> local error page', async (_label, params) => {
    await createsNothing(db, async () => {
      await localErrorPage(await fetch(codeRequest(tb.base, { ...params, client_id: 'attacker-app', redirect_uri: 'https://evil.example/cb' }).url, { redirect: 'manual' }));
    });
  });

  it('OA-08 an error redirect goes only to a URI the operator registered for that client (trusted by configuration), with state and iss', async () => {
    await createsNothing(db, async () => {
      const { url, state } = codeRequest(tb.base, { prompt: 'none' });
      const res = await fetch(url, { redirect: 'manual' });
      expect(res.status).toBe(303);
      const loc = new URL(res.headers.get('location')!);
      expect(`${loc.origin}${loc.pathname}`).toBe(REDIRECT);
      expect(loc.searchParams.get('error')).toBe('login_required');
      expect(loc.searchParams.get('state')).toBe(state);
      expect(loc.searchParams.get('iss')).toBe(tb.base);
    });
  });
});

describe('OA-13 long state and nonce', () => {
  async function idTokenNonce(nonce: string): Promise<unknown> {
    const req = codeRequest(tb.base, { nonce });
    const { back } = await driveLogin(req.url, tb.base);
    const res = await redeemCode(tb.base, back.searchParams.get('code')!, req.verifier);
    const text = await res.text();
    expect(res.status, text).toBe(200);
    return decodeJwt((JSON.parse(text) as { id_token: string }).id_token).nonce;
  }

  it('OA-13 [P] a 64-character nonce and a 2 KB nonce come back unchanged in the ID token', async () => {
    const n64 = randomBytes(48).toString('base64url');
    expect(n64).toHaveLength(64);
    expect(await idTokenNonce(n64)).toBe(n64);
    const n2k = randomBytes(1536).toString('base64url');
    expect(await idTokenNonce(n2k)).toBe(n2k);
  });

  it('OA-13 an oversize nonce (100 KB) is refused cleanly with a 4xx and creates nothing', async () => {
    await createsNothing(db, async () => {
      const res = await fetch(codeRequest(tb.base, { nonce: 'n'.repeat(100 * 1024) }).url, { redirect: 'manual' });
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(res.headers.get('location')).toBeNull();
    });
  });

  it('OA-13 a nonce just under the header limit (12 KB) never causes a 5xx', async () => {
    const res = await fetch(codeRequest(tb.base, { nonce: 'n'.repeat(12 * 1024) }).url, { redirect: 'manual' });
    expect(res.status).toBeLessThan(500);
  });

  it('OA-13 an oversize state or nonce sent to PAR (form body, 1 MB) -> 4xx JSON, no request_uri', async () => {
    for (const field of ['state', 'nonce']) {
      await createsNothing(db, async () => {
        const form = new URLSearchParams({ client_id: 'web', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', code_challenge: 'a'.repeat(43), code_challenge_method: 'S256', [field]: 'x'.repeat(1024 * 1024) });
        const res = await fetch(`${tb.base}/request`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('web', 'web-secret-0123456789') }, body: form.toString() });
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        expect(await res.text()).not.toContain('request_uri');
      });
    }
  });
});
