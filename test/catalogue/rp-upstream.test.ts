// The broker as relying party of a hostile upstream OP (catalogue 1R: RP-01, RP-02, RP-04, RP-05,
// RP-07). The upstream is the fake CIS2 (a real oidc-provider); what a hostile OP would send instead is
// put on the wire by the connector's HTTP client (the same hook a host mapping or egress proxy uses), so
// the broker's checks see exactly a hostile token response. Each refusal must be the generic 401 page
// and create no account or link.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPublicKey } from 'node:crypto';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { SignJWT, base64url, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';
import { createOidcConnector } from '../../providers/oidc/index.ts';
import { UpstreamAuthError } from '../../src/identity/upstream.ts';
import { CIS2_CLIENT_ID, startFakeCis2, type FakeCis2 } from '../peers/fake-cis2.ts';
import { driveConnector, startHarness, type Harness, type LoginOutcome } from '../providers/oidc/harness.ts';

const GENERIC = 'We could not verify your sign-in';
const HOSTILE = 'cis2-b'; // a second connector on the fake CIS2, its traffic through the hostile client
const SECRET_CLIENT = 'secret.apps.national';
const CLIENT_SECRET = 'cis2-client-secret-0123456789';

/** Replaces the ID token of the next successful token response. */
type Rewrite = (idToken: string) => Promise<string>;

function refused(outcome: LoginOutcome): void {
  expect(outcome.kind).toBe('page');
  if (outcome.kind !== 'page') return;
  expect(outcome.status).toBe(401);
  expect(outcome.html).toContain(GENERIC);
}

/** An upstream HTTP client that records every URL and can swap the ID token in a token response. */
function hostileClient() {
  const state: { rewrite: Rewrite | undefined; urls: string[]; lastIdToken: string | undefined } = { rewrite: undefined, urls: [], lastIdToken: undefined };
  const customFetch: oc.CustomFetch = async (url, options) => {
    state.urls.push(url);
    const res = await fetch(url, { ...options, body: options.body as BodyInit | null | undefined });
    if (!url.endsWith('/access_token') || res.status !== 200) return res;
    const body = (await res.json()) as Record<string, unknown>;
    if (typeof body.id_token === 'string') {
      state.lastIdToken = body.id_token;
      const rewrite = state.rewrite;
      state.rewrite = undefined;
      if (rewrite) body.id_token = await rewrite(body.id_token);
    }
    return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' } });
  };
  return { state, customFetch };
}

/** The ID token's claims re-signed under another header and key (or none). */
async function resign(idToken: string, header: Record<string, unknown>, key: Parameters<SignJWT['sign']>[0]): Promise<string> {
  return new SignJWT(decodeJwt(idToken)).setProtectedHeader(header as { alg: string }).sign(key);
}

describe('the broker as relying party of a hostile upstream', () => {
  let h: Harness;
  const hostile = hostileClient();
  let attackerJwks: Server;
  let attackerHits = 0;
  let attackerKey: Awaited<ReturnType<typeof generateKeyPair>>;

  beforeAll(async () => {
    attackerKey = await generateKeyPair('RS256', { extractable: true });
    const attackerPublic = { ...(await exportJWK(attackerKey.publicKey)), kid: 'attacker', use: 'sig', alg: 'RS256' };
    // The attacker's key set, named in token headers (jku, x5u): the broker must never fetch it.
    attackerJwks = createServer((_req, res) => {
      attackerHits += 1;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [attackerPublic] }));
    });
    await new Promise<void>((r) => attackerJwks.listen(0, '127.0.0.1', r));
    h = await startHarness({
      extra: async ({ cis2Config, deps }) => [await createOidcConnector(cis2Config({ id: HOSTILE, displayName: 'CIS2 (hostile wire)' }), deps, { fetch: hostile.customFetch })],
    });
  });
  afterAll(async () => {
    await h?.close();
    await new Promise<void>((r) => attackerJwks?.close(() => r()));
  });

  const attackerUrl = () => `http://127.0.0.1:${(attackerJwks.address() as AddressInfo).port}/jwks`;

  /** A login at the hostile connector with the ID token rewritten; must be refused and create nothing. */
  async function refusedWith(rewrite: Rewrite, reason: RegExp): Promise<void> {
    const before = await h.counts();
    const mark = h.logs.length;
    hostile.state.rewrite = rewrite;
    const outcome = await h.attempt(HOSTILE, 'gp');
    expect(hostile.state.rewrite, 'the token response was rewritten').toBeUndefined();
    refused(outcome);
    expect(await h.counts()).toEqual(before);
    expect(h.reasons(mark).join(' | ')).toMatch(reason);
  }

  it('[P] the hostile-wire connector signs in when nothing is rewritten', async () => {
    const outcome = await h.attempt(HOSTILE, 'gp');
    expect(outcome.kind).toBe('client');
  });

  describe('RP-01 invalid signatures', () => {
    it('RP-01 an RS256 ID token whose signature was altered is refused', async () => {
      await refusedWith(async (t) => {
        const [hd, p, s] = t.split('.');
        return `${hd}.${p}.${s.slice(0, 20)}${s[20] === 'A' ? 'B' : 'A'}${s.slice(21)}`;
      }, /signature|"alg"/);
    });

    it('RP-01 an ES256 ID token (valid signature by an attacker EC key, or an invalid one) is refused where RS256 is registered', async () => {
      const ec = await generateKeyPair('ES256', { extractable: true });
      await refusedWith((t) => resign(t, { alg: 'ES256', kid: decodeProtectedHeader(t).kid }, ec.privateKey), /"alg"/);
      await refusedWith(async (t) => {
        const signed = await resign(t, { alg: 'ES256', kid: 'attacker-ec' }, ec.privateKey);
        const [hd, p] = signed.split('.');
        return `${hd}.${p}.${base64url.encode(new Uint8Array(64))}`;
      }, /"alg"/);
    });

    it('RP-01 an HS256 ID token keyed with the upstream public key (key confusion) is refused', async () => {
      const pem = createPublicKey({ key: h.cis2.jwks.keys[0] as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
      for (const secret of [pem, JSON.stringify(h.cis2.jwks.keys[0]), CIS2_CLIENT_ID]) {
        await refusedWith((t) => resign(t, { alg: 'HS256', kid: decodeProtectedHeader(t).kid }, new TextEncoder().encode(secret)), /"alg"/);
      }
    });
  });

  describe('RP-02 unsigned ID tokens', () => {
    it.each(['none', 'None', 'NONE'])('RP-02 alg %s is refused', async (alg) => {
      await refusedWith(async (t) => `${base64url.encode(JSON.stringify({ alg, typ: 'JWT' }))}.${t.split('.')[1]}.`, /"alg"|signature|JWS|JWT/);
    });
  });

  describe('RP-04 nonce', () => {
    it('RP-04 an ID token without nonce is refused', async () => {
      const before = await h.counts();
      const mark = h.logs.length;
      h.cis2.tamper = { omit: ['nonce'] };
      const outcome = await h.attempt('cis2', 'gp');
      h.cis2.tamper = undefined;
      refused(outcome);
      expect(await h.counts()).toEqual(before);
      expect(h.reasons(mark).join(' | ')).toMatch(/nonce/);
    });

    it('RP-04 a genuine ID token from an earlier login (its own nonce, valid signature) replayed into a new login is refused', async () => {
      await h.attempt(HOSTILE, 'gp');
      const earlier = hostile.state.lastIdToken!;
      expect(earlier).toBeTruthy();
      await refusedWith(async () => earlier, /nonce/);
    });
  });

  describe('RP-05 userinfo subject', () => {
    it('RP-05 a userinfo sub other than the ID token sub is refused through the broker, nothing created', async () => {
      const before = await h.counts();
      const mark = h.logs.length;
      h.cis2.tamperUserinfo = { sub: '555999999999' };
      const outcome = await h.attempt('cis2', 'gp');
      h.cis2.tamperUserinfo = undefined;
      refused(outcome);
      expect(await h.counts()).toEqual(before);
      expect(h.reasons(mark).join(' | ')).toMatch(/userinfo/);
    });
  });

  describe('RP-07 keys come from the configured jwks_uri only', () => {
    it('RP-07 an ID token signed by an attacker key it names by jku, x5u or an embedded jwk is refused, and the attacker URL is never fetched', async () => {
      const attackerJwk = { ...(await exportJWK(attackerKey.publicKey)), kid: 'attacker' };
      const headers = [
        { alg: 'RS256', kid: 'attacker', jku: attackerUrl() },
        { alg: 'RS256', kid: 'attacker', x5u: attackerUrl() },
        { alg: 'RS256', jwk: attackerJwk },
        { alg: 'RS256', kid: 'attacker', jwk: attackerJwk, jku: attackerUrl() },
      ];
      for (const header of headers) {
        await refusedWith((t) => resign(t, header, attackerKey.privateKey), /signature|key/);
      }
      expect(attackerHits).toBe(0);
      const keyFetches = hostile.state.urls.filter((u) => /jwk/i.test(u));
      expect(keyFetches.length).toBeGreaterThan(0);
      expect(new Set(keyFetches)).toEqual(new Set([`${h.cis2.issuer}/connect/jwk_uri`]));
      expect(hostile.state.urls.some((u) => u.startsWith(attackerUrl()))).toBe(false);
    });

    it('RP-07 [P] a rotation at the upstream (new kid) is picked up from the configured jwks_uri on the next login', async () => {
      const before = hostile.state.urls.filter((u) => u.endsWith('/connect/jwk_uri')).length;
      const kid = await h.cis2.rotateKeys();
      const outcome = await h.attempt(HOSTILE, 'gp');
      expect(outcome.kind).toBe('client');
      expect(decodeProtectedHeader(hostile.state.lastIdToken!).kid).toBe(kid);
      expect(hostile.state.urls.filter((u) => u.endsWith('/connect/jwk_uri')).length).toBeGreaterThan(before);
    });
  });
});

describe('RP-01 an HS256 ID token keyed with the client secret', () => {
  let h: Harness;
  let fake: FakeCis2;

  beforeAll(async () => {
    h = await startHarness({ broker: false });
    fake = await startFakeCis2({
      clients: [{ client_id: SECRET_CLIENT, client_secret: CLIENT_SECRET, token_endpoint_auth_method: 'client_secret_post', id_token_signed_response_alg: 'RS256', redirect_uris: [`${h.base}/upstream/cis2-secret/callback`], grant_types: ['authorization_code'], response_types: ['code'] }],
    });
  });
  afterAll(async () => {
    await fake?.close();
    await h?.close();
  });

  async function connector(rewrite: Rewrite | undefined) {
    const hostile = hostileClient();
    hostile.state.rewrite = rewrite;
    return createOidcConnector(h.cis2Config({ id: 'cis2-secret', issuer: fake.issuer, client_id: SECRET_CLIENT, token_endpoint_auth_method: 'client_secret_post', client_secret: CLIENT_SECRET, private_key_jwk: undefined }), h.deps, { fetch: hostile.customFetch });
  }

  it('[P] the client_secret_post connector signs in with the genuine RS256 ID token', async () => {
    const r = await driveConnector(await connector(undefined), { loginHint: 'gp' }, { base: h.base });
    expect(r.error).toBeUndefined();
    expect(r.identity?.subject).toBe('555000000001');
  });

  it('RP-01 the same ID token re-signed HS256 with the client secret (HS256 not registered) is refused', async () => {
    const r = await driveConnector(await connector((t) => resign(t, { alg: 'HS256' }, new TextEncoder().encode(CLIENT_SECRET))), { loginHint: 'gp' }, { base: h.base });
    expect(r.identity).toBeUndefined();
    expect(r.error).toBeInstanceOf(UpstreamAuthError);
    expect((r.error as UpstreamAuthError).reason).toMatch(/"alg"/);
  });
});
