import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { CompactEncrypt, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, type JWK } from 'jose';
import type * as oc from 'openid-client';
import { createOidcConnector } from '../../providers/oidc/index.ts';
import { CIS2_CLIENT_ID } from '../peers/fake-cis2.ts';
import { freePort } from '../peers/ports.ts';
import { startHarness, type Harness, type LoginOutcome } from '../providers/oidc/harness.ts';
import { NONE, OFF_CURVE_P256, flattened, general, hmac, jwe, jws, nowSeconds, publicKeyBytes, selfSigned, signer, type Signer } from './jose-forge.ts';

// Security catalogue section 3 at the broker's inputs from upstream OPs: the ID token of a login
// (through openid-client and the connector's own signature check) and back-channel logout tokens.
// The upstream is a real oidc-provider (the fake CIS2); a second connector to it ("cis2-b") fetches
// through a hook that swaps the ID token in the token response for a hostile one built from the
// genuine token, so everything but the hostile detail (nonce, aud, iss, times) is right. The test does
// not hold the upstream's private key: header attacks are signed by an attacker (or the upstream's own
// key where the fake can sign: times, types, audiences). For the shape rows (crit, b64, duplicate
// members, typ, events), which only mean something on a token the upstream really signed, the same hook
// adds a second key the test holds ("upstream-second") to the JWKS cis2-b fetches: to that connector
// it is the upstream's own key (a [P] control shows a token it signs is accepted).

const GENERIC = 'We could not verify your sign-in';
const EVENT = { 'http://schemas.openid.net/event/backchannel-logout': {} };

describe('JOSE inputs from upstream OPs (catalogue section 3)', () => {
  let h: Harness;
  let rewrite: ((idToken: string) => string | Promise<string>) | undefined;
  const seen: string[] = [];
  let listener: Server;
  let listenerUrl: string;
  let hits = 0;
  let attacker: { rs: Signer; jwk: JWK };
  /** A key cis2-b trusts as the upstream's (published in the JWKS its hook fetches). */
  let second: { rs: Signer; jwk: JWK };

  beforeAll(async () => {
    const rs2 = await generateKeyPair('RS256', { extractable: true });
    second = { rs: signer('RS256', rs2.privateKey), jwk: { ...(await exportJWK(rs2.publicKey)), kid: 'upstream-second', use: 'sig', alg: 'RS256' } };
    const swapping: oc.CustomFetch = async (url, options) => {
      const res = await fetch(url, { ...options, body: options.body as BodyInit | null | undefined });
      if (!(res.headers.get('content-type') ?? '').includes('json')) return res;
      const body = (await res.json()) as Record<string, unknown>;
      if (Array.isArray(body.keys)) body.keys = [...(body.keys as JWK[]), second.jwk];
      if (typeof body.id_token === 'string') {
        seen.push(body.id_token);
        if (rewrite) body.id_token = await rewrite(body.id_token);
      }
      return new Response(JSON.stringify(body), { status: res.status, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' } });
    };
    h = await startHarness({ extra: async ({ cis2Config, deps }) => [await createOidcConnector(cis2Config({ id: 'cis2-b', displayName: 'CIS2 (hooked)' }), deps, { fetch: swapping })] });
    const rs = await generateKeyPair('RS256', { extractable: true });
    attacker = { rs: signer('RS256', rs.privateKey), jwk: { ...(await exportJWK(rs.publicKey)), kid: 'attacker' } };
    const port = await freePort();
    listener = createServer((_req, res) => {
      hits++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [attacker.jwk] }));
    });
    await new Promise<void>((r) => listener.listen(port, '127.0.0.1', r));
    listenerUrl = `http://127.0.0.1:${port}`;
  }, 120_000);
  afterAll(async () => {
    listener?.closeAllConnections();
    await new Promise<void>((r) => (listener ? listener.close(() => r()) : r()));
    await h?.close();
  });

  const upstreamJwk = (): JWK => h.cis2.jwks.keys[0];
  const parts = (token: string) => ({ header: decodeProtectedHeader(token) as Record<string, unknown>, claims: decodeJwt(token) as Record<string, unknown> });

  /** A login through the hooked connector whose ID token is replaced by `make(genuine)`. */
  async function idTokenLogin(make: (genuine: string) => string | Promise<string>): Promise<{ outcome: LoginOutcome; reasons: string }> {
    const mark = h.logs.length;
    rewrite = make;
    try {
      const outcome = await h.attempt('cis2-b', 'noRoles');
      return { outcome, reasons: h.reasons(mark).join(' | ') };
    } finally {
      rewrite = undefined;
    }
  }

  async function idTokenRefused(make: (genuine: string) => string | Promise<string>, what: string): Promise<string> {
    const before = await h.counts();
    const { outcome, reasons } = await idTokenLogin(make);
    expect(outcome.kind, what).toBe('page');
    if (outcome.kind === 'page') {
      expect(outcome.status, `${what}: ${outcome.html.slice(0, 200)}`).toBe(401);
      expect(outcome.html).toContain(GENERIC);
    }
    expect(await h.counts(), `${what}: nothing created`).toEqual(before);
    return reasons;
  }

  async function logout(token: string, upstream = 'cis2'): Promise<{ status: number; ended: number }> {
    const before = h.logouts.length;
    const res = await fetch(`${h.base}/upstream/${upstream}/backchannel-logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: token }).toString() });
    await res.text();
    return { status: res.status, ended: h.logouts.length - before };
  }

  async function logoutRefused(token: string, what: string, upstream = 'cis2'): Promise<void> {
    const r = await logout(token, upstream);
    expect(r.status, what).toBe(400);
    expect(r.ended, what).toBe(0);
  }

  /** Header and claims of a logout token as the fake CIS2 would send it. */
  const logoutTemplate = () => {
    const iat = nowSeconds();
    return { header: { alg: 'RS256', typ: 'logout+jwt', kid: h.cis2.currentKid }, claims: { iss: h.cis2.issuer, aud: CIS2_CLIENT_ID, iat, exp: iat + 120, jti: randomUUID(), events: EVENT, sid: `s-${randomUUID()}` } };
  };

  /** The genuine ID token's header and claims (or raw JSON text) re-signed with the key cis2-b trusts. */
  const resigned = (g: string, header: Record<string, unknown> | ((text: string) => string) = {}, claims: Record<string, unknown> | ((text: string) => string) = {}): string => {
    const h0 = { ...parts(g).header, kid: second.jwk.kid };
    const c0 = parts(g).claims;
    return jws(typeof header === 'function' ? header(JSON.stringify(h0)) : { ...h0, ...header }, typeof claims === 'function' ? claims(JSON.stringify(c0)) : { ...c0, ...claims }, second.rs);
  };
  /** A logout token for cis2-b signed with the key it trusts; header and claims as objects or raw text. */
  const secondLogout = (header: Record<string, unknown> | ((text: string) => string) = {}, claims: Record<string, unknown> | ((text: string) => string) = {}): string => {
    const t = logoutTemplate();
    const h0 = { ...t.header, kid: second.jwk.kid };
    return jws(typeof header === 'function' ? header(JSON.stringify(h0)) : { ...h0, ...header }, typeof claims === 'function' ? claims(JSON.stringify(t.claims)) : { ...t.claims, ...claims }, second.rs);
  };

  it('JW-01 [P] control: the hooked login with the genuine ID token succeeds, and a genuine logout token is honoured', async () => {
    const { outcome } = await idTokenLogin((genuine) => genuine);
    expect(outcome.kind).toBe('client');
    expect((await logout(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 'control' }))).ended).toBe(1);
  });

  it('JW-01 alg none (all casings, with and without the real signature) as ID token and as logout token: refused', async () => {
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      await idTokenRefused((g) => jws({ ...parts(g).header, alg }, parts(g).claims, NONE), `ID token alg ${alg}`);
      const t = logoutTemplate();
      await logoutRefused(jws({ ...t.header, alg }, t.claims, NONE), `logout alg ${alg}`);
    }
    await idTokenRefused((g) => `${Buffer.from(JSON.stringify({ ...parts(g).header, alg: 'none' })).toString('base64url')}.${g.split('.')[1]}.${g.split('.')[2]}`, 'alg none, signature kept');
  });

  it('JW-02 HS256 keyed with the upstream’s public RSA key (PEM, DER, JWK JSON, n): refused', async () => {
    for (const [form, secret] of publicKeyBytes(upstreamJwk())) {
      await idTokenRefused((g) => jws({ ...parts(g).header, alg: 'HS256' }, parts(g).claims, hmac(secret)), `ID token HS256 ${form}`);
      const t = logoutTemplate();
      await logoutRefused(jws({ ...t.header, alg: 'HS256' }, t.claims, hmac(secret)), `logout HS256 ${form}`);
    }
  });

  it('JW-04 kid injection on ID and logout tokens (traversal, SQL, 10 KB, NUL, the upstream’s own kid over an attacker signature): refused', async () => {
    for (const kid of ['../../dev/null', "' OR '1'='1", 'k'.repeat(10 * 1024), 'a\u0000b', 'UPSTREAM']) {
      const k = () => (kid === 'UPSTREAM' ? h.cis2.currentKid : kid);
      await idTokenRefused((g) => jws({ ...parts(g).header, kid: k() }, parts(g).claims, attacker.rs), `ID token kid ${kid.slice(0, 16)}`);
      const t = logoutTemplate();
      await logoutRefused(jws({ ...t.header, kid: k() }, t.claims, attacker.rs), `logout kid ${kid.slice(0, 16)}`);
    }
  });

  it('JW-05 jku and x5u on ID and logout tokens (attacker host, 169.254.169.254, localhost): never fetched, refused', async () => {
    const before = hits;
    for (const url of [`${listenerUrl}/jwks`, 'http://169.254.169.254/jwks', 'http://localhost:1/jwks']) {
      for (const name of ['jku', 'x5u']) {
        const t0 = Date.now();
        await idTokenRefused((g) => jws({ ...parts(g).header, [name]: url, kid: 'attacker' }, parts(g).claims, attacker.rs), `ID token ${name} ${url}`);
        const t = logoutTemplate();
        await logoutRefused(jws({ ...t.header, [name]: url, kid: 'attacker' }, t.claims, attacker.rs), `logout ${name} ${url}`);
        expect(Date.now() - t0).toBeLessThan(5000);
      }
    }
    expect(hits - before).toBe(0);
  });

  it('JW-07 x5c with a self-signed certificate (and its key) on ID and logout tokens: refused', async () => {
    const cert = selfSigned('rsa');
    await idTokenRefused((g) => jws({ ...parts(g).header, x5c: cert.x5c }, parts(g).claims, signer('RS256', cert.keyPem)), 'ID token x5c');
    const t = logoutTemplate();
    const { kid: _kid, ...noKid } = t.header;
    await logoutRefused(jws({ ...noKid, x5c: cert.x5c }, t.claims, signer('RS256', cert.keyPem)), 'logout x5c');
  });

  it('JW-08 [P] control: an ID token and a logout token signed with the second key cis2-b trusts are accepted', async () => {
    const { outcome } = await idTokenLogin((g) => resigned(g));
    expect(outcome.kind).toBe('client');
    expect((await logout(secondLogout(), 'cis2-b')).ended).toBe(1);
  });

  it('JW-08 crit (unknown, registered, empty, b64 twice) and b64 (false or true, in crit or not) on ID and logout tokens signed by the upstream: refused', async () => {
    const headers = [{ 'x-unknown': 1, crit: ['x-unknown'] }, { crit: ['alg'] }, { crit: [] }, { b64: false, crit: ['b64'] }, { b64: true, crit: ['b64', 'b64'] }, { b64: false }, { b64: true }];
    for (const header of headers) {
      const reasons = await idTokenRefused((g) => resigned(g, header), `ID token ${JSON.stringify(header)}`);
      expect(reasons).toMatch(/crit|b64/);
      await logoutRefused(secondLogout(header), `logout ${JSON.stringify(header)}`, 'cis2-b');
      // And signed by an attacker, at the connector whose keys the test does not hold.
      const t = logoutTemplate();
      await logoutRefused(jws({ ...t.header, ...header }, t.claims, attacker.rs), `logout ${JSON.stringify(header)}, attacker key`);
    }
  });

  it('JW-10 JW-11 JW-13 JWE (PBES2 p2c 2^31, zip DEF, off-curve and small-order ECDH-ES) as ID and logout tokens: refused quickly', async () => {
    const shapes = [
      { alg: 'PBES2-HS512+A256KW', enc: 'A256GCM', p2c: 2 ** 31, p2s: 'c2FsdHNhbHRzYWx0' },
      { alg: 'RSA-OAEP-256', enc: 'A256GCM', zip: 'DEF' },
      { alg: 'ECDH-ES', enc: 'A256GCM', epk: OFF_CURVE_P256 },
      { alg: 'ECDH-ES+A256KW', enc: 'A256GCM', epk: { kty: 'OKP', crv: 'X25519', x: Buffer.alloc(32).toString('base64url') } },
    ];
    for (const header of shapes) {
      const t0 = Date.now();
      await idTokenRefused(() => jwe(header), `ID token JWE ${header.alg}`);
      await logoutRefused(jwe(header), `logout JWE ${header.alg}`);
      expect(Date.now() - t0).toBeLessThan(5000);
    }
  });

  describe('JW-14 time claims just beyond the 30 s tolerance (signed by the upstream itself)', () => {
    /** A login whose ID token the upstream signs with `tamper` applied; the outcome and the logged reasons. */
    async function tampered(tamper: NonNullable<Harness['cis2']['tamper']>): Promise<{ outcome: LoginOutcome; reasons: string; created: boolean }> {
      const before = await h.counts();
      const mark = h.logs.length;
      h.cis2.tamper = tamper;
      try {
        const outcome = await h.attempt('cis2', 'noRoles');
        return { outcome, reasons: h.reasons(mark).join(' | '), created: JSON.stringify(await h.counts()) !== JSON.stringify(before) };
      } finally {
        h.cis2.tamper = undefined;
      }
    }

    it('JW-14 ID tokens: nbf 45 s ahead refused; [P] nbf 10 s ahead accepted', async () => {
      const late = await tampered({ claims: { nbf: nowSeconds() + 45 } });
      expect(late.outcome.kind).toBe('page');
      expect(late.created).toBe(false);
      expect(late.reasons).toMatch(/nbf/);
      expect((await tampered({ claims: { nbf: nowSeconds() + 10 } })).outcome.kind).toBe('client');
    });

    it('JW-14 ID tokens: iat 45 s or an hour in the future refused; [P] iat 10 s ahead accepted', async () => {
      for (const ahead of [45, 3600]) {
        const r = await tampered({ iat: ahead, exp: ahead + 600 });
        expect(r.outcome.kind, `iat +${ahead}`).toBe('page');
        expect(r.created).toBe(false);
        expect(r.reasons).toMatch(/iat is \d+ s in the future/);
      }
      expect((await tampered({ iat: 10, exp: 610 })).outcome.kind).toBe('client');
    });

    it('JW-14 logout tokens: exp 35 s past, nbf and iat 35 s ahead refused; [P] exp 10 s past accepted', async () => {
      const n = nowSeconds();
      for (const claims of [{ exp: n - 35, iat: n - 100 }, { nbf: n + 35 }, { iat: n + 35, exp: n + 120 }]) {
        await logoutRefused(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: `t-${randomUUID()}`, claims }), JSON.stringify(claims));
      }
      expect((await logout(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: `t-${randomUUID()}`, claims: { exp: n - 10, iat: n - 100 } }))).ended).toBe(1);
    });
  });

  describe('JW-16 one kind of JWT where another is expected', () => {
    it('JW-16 the upstream’s genuine ID token posted as a logout token, and a genuine logout token in place of the ID token: refused', async () => {
      const { outcome } = await idTokenLogin((g) => g);
      expect(outcome.kind).toBe('client');
      const genuineIdToken = seen.at(-1)!;
      await logoutRefused(genuineIdToken, 'an ID token as logout token');
      const reasons = await idTokenRefused(async (g) => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sub: String(parts(g).claims.sub) }), 'a logout token as ID token');
      expect(reasons).toMatch(/nonce/);
    });

    // The nonce alone would not tell them apart: the connector refuses typ logout+jwt and any events claim.
    it('JW-16 a logout token (typ logout+jwt, events) signed by the upstream that carries the login’s nonce, and the login’s own claims, is refused as the ID token', async () => {
      const reasons = await idTokenRefused(async (g) => h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sub: String(parts(g).claims.sub), claims: { nonce: parts(g).claims.nonce } }), 'a logout token with the nonce');
      expect(reasons).toMatch(/typ logout\+jwt/);
      // The same without typ, and an ID token the upstream typed as another JWT: events and typ each refuse.
      expect(await idTokenRefused((g) => resigned(g, { typ: undefined }, { events: EVENT }), 'events claim, no typ')).toMatch(/events claim/);
      for (const typ of ['logout+jwt', 'at+jwt', 'application/at+jwt', 'secevent+jwt']) {
        expect(await idTokenRefused((g) => resigned(g, { typ }), `typ ${typ}`)).toMatch(/names another kind of JWT/);
      }
    });

    it('JW-16 [P] an upstream ID token with no typ, typ JWT or typ application/jwt is accepted', async () => {
      for (const typ of [undefined, 'JWT', 'application/jwt']) {
        const { outcome } = await idTokenLogin((g) => resigned(g, { typ }));
        expect(outcome.kind, String(typ)).toBe('client');
      }
    });

    it('JW-16 a logout token with a nonce (signed by the upstream) is refused at back-channel logout', async () => {
      await logoutRefused(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: `n-${randomUUID()}`, claims: { nonce: 'n-0S6_WzA2Mj' } }), 'logout token with a nonce');
    });

    it('JW-16 an ID token retyped (logout+jwt, at+jwt, dpop+jwt) by anyone but the upstream is refused; a logout token the upstream typed at+jwt is refused', async () => {
      for (const typ of ['logout+jwt', 'at+jwt', 'dpop+jwt']) {
        await idTokenRefused((g) => jws({ ...parts(g).header, typ }, parts(g).claims, attacker.rs), `typ ${typ}`);
      }
      // Signed by the upstream itself (the fake cannot retype its ID tokens): a logout token typed as an access token.
      await logoutRefused(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 'typ', typ: 'at+jwt' }), 'logout typ at+jwt');
    });
  });

  describe('JW-17 audience of logout tokens (signed by the upstream)', () => {
    it('JW-17 aud missing, only another client, or an array with another client and no azp of ours: refused', async () => {
      await logoutRefused(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 'a1', omit: ['aud'] }), 'no aud');
      await logoutRefused(await h.cis2.logoutToken({ clientId: 'someone-else', sid: 'a2' }), 'another client');
      await logoutRefused(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 'a3', claims: { aud: [CIS2_CLIENT_ID, 'attacker-client'] } }), 'two audiences, no azp');
      await logoutRefused(await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 'a4', claims: { aud: [CIS2_CLIENT_ID, 'attacker-client'], azp: 'attacker-client' } }), 'two audiences, foreign azp');
    });

    it('JW-17 ID tokens: aud missing or only another client refused (a second audience with our azp is OIDC Core and accepted)', async () => {
      for (const tamper of [{ omit: ['aud'] }, { aud: 'someone-else.apps.national' }, { aud: ['someone-else.apps.national'] }]) {
        const before = await h.counts();
        h.cis2.tamper = tamper;
        const outcome = await h.attempt('cis2', 'noRoles');
        h.cis2.tamper = undefined;
        expect(outcome.kind, JSON.stringify(tamper)).toBe('page');
        expect(await h.counts()).toEqual(before);
      }
      h.cis2.tamper = { aud: [CIS2_CLIENT_ID, 'other.apps.national'], azp: CIS2_CLIENT_ID };
      const multi = await h.attempt('cis2', 'noRoles');
      h.cis2.tamper = undefined;
      expect(multi.kind).toBe('client');
    });
  });

  it('JW-19 duplicate members (alg, sub, nonce, jti, a name written with an escape) in ID and logout tokens signed by the upstream: refused', async () => {
    const idVariants: Array<[string, (g: string) => string]> = [
      ['alg twice', (g) => resigned(g, (t) => t.replace('{', '{"alg":"none",'))],
      ['alg twice, the first escaped', (g) => resigned(g, (t) => t.replace('{', '{"\\u0061lg":"HS256",'))],
      ['sub twice', (g) => resigned(g, {}, (t) => t.replace('{', '{"sub":"someone-else",'))],
      ['nonce twice', (g) => resigned(g, {}, (t) => t.replace('{', '{"nonce":"attacker",'))],
    ];
    for (const [what, make] of idVariants) {
      expect(await idTokenRefused(make, `ID token ${what}`)).toMatch(/appears twice/);
    }
    for (const [what, token] of [
      ['sid twice', secondLogout({}, (t) => t.replace('{', '{"sid":"another-session",'))],
      ['jti twice', secondLogout({}, (t) => t.replace(/}$/, `,"jti":"${randomUUID()}"}`))],
      ['typ twice', secondLogout((t) => t.replace('{', '{"typ":"JWT",'))],
    ] as const) {
      await logoutRefused(token, `logout ${what}`, 'cis2-b');
    }
    // [P] the same construction without a duplicate is accepted.
    expect((await logout(secondLogout((t) => t, (t) => t), 'cis2-b')).ended).toBe(1);
    expect((await idTokenLogin((g) => resigned(g, (t) => t, (t) => t))).outcome.kind).toBe('client');
  });

  it('JW-22 JW-23 a JWE keyed with a secret wrapping an unsigned token, and JWS JSON serialisations: refused as ID and logout tokens', async () => {
    const secret = new Uint8Array(32).fill(7);
    const t = logoutTemplate();
    const unsignedLogout = jws({ ...t.header, alg: 'none' }, t.claims, NONE);
    const dirLogout = await new CompactEncrypt(new TextEncoder().encode(unsignedLogout)).setProtectedHeader({ alg: 'dir', enc: 'A256GCM', cty: 'JWT' }).encrypt(secret);
    await logoutRefused(dirLogout, 'dir JWE logout');
    const signedLogout = await h.cis2.logoutToken({ clientId: CIS2_CLIENT_ID, sid: 'json' });
    await logoutRefused(flattened(signedLogout), 'flattened logout');
    await logoutRefused(general(signedLogout, jws(parts(signedLogout).header, parts(signedLogout).claims, attacker.rs)), 'general logout');
    await idTokenRefused(async (g) => new CompactEncrypt(new TextEncoder().encode(jws({ ...parts(g).header, alg: 'none' }, parts(g).claims, NONE))).setProtectedHeader({ alg: 'dir', enc: 'A256GCM', cty: 'JWT' }).encrypt(secret), 'dir JWE ID token');
    await idTokenRefused((g) => flattened(g), 'flattened ID token');
    await idTokenRefused((g) => general(g, jws(parts(g).header, parts(g).claims, attacker.rs)), 'general ID token');
  });

  it('JW-25 an unverified iss naming an issuer that serves the attacker’s keys selects nothing: refused, never fetched', async () => {
    const before = hits;
    await idTokenRefused((g) => jws({ ...parts(g).header, kid: 'attacker' }, { ...parts(g).claims, iss: listenerUrl }, attacker.rs), 'ID token with an attacker iss');
    const t = logoutTemplate();
    await logoutRefused(jws({ ...t.header, kid: 'attacker' }, { ...t.claims, iss: listenerUrl }, attacker.rs), 'logout token with an attacker iss');
    expect(hits).toBe(before);
  });
});
