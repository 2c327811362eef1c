import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { CompactEncrypt, decodeJwt, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { checkClaimsUnverified, classifyToken } from '../../src/exchange/classify.ts';
import { freePort } from '../peers/ports.ts';
import { API2, IDT, JWT, rawExchange, signToken } from '../exchange/helpers.ts';
import { NONE, OFF_CURVE_P256, flattened, general, hmac, jwe, jws, nowSeconds, publicKeyBytes, selfSigned, signer, type Signer } from './jose-forge.ts';
import { startJoseBed, type JoseBed, type Surface, type Template } from './jose-surfaces.ts';

// Security catalogue section 3 (JWT / JOSE) at every JOSE input of the broker's own endpoints:
// private_key_jwt client assertions (oidc-provider), subject and actor tokens of the token exchange
// (external issuers and the broker's own access tokens), DPoP proofs (oidc-provider's at the token
// endpoint and the exchange grant's own), and the broker's access tokens where resource servers and
// its JSON API present them. Upstream ID tokens and logout tokens: jose-upstream.test.ts.
// Each hostile token is built from the same template as the [P] control that is accepted, so a
// refusal is for the hostile detail. A refusal creates nothing and is never a 5xx.

const LEGIT = ['client_assertion', 'subject_token (CIS2', 'actor_token', 'DPoP proof (client', 'DPoP proof (token'];
const BROKER_TOKENS = ['subject_token (the broker', 'access token at the introspection', 'access token at the broker'];
const DPOP = ['DPoP proof (client', 'DPoP proof (token'];

describe('JOSE inputs of the broker (catalogue section 3)', () => {
  let bed: JoseBed;
  let attackers: Record<string, { signer: Signer; key: CryptoKey; jwk: Record<string, unknown> }>;
  let listener: Server;
  let listenerUrl: string;
  let hits = 0;

  beforeAll(async () => {
    bed = await startJoseBed();
    attackers = {};
    for (const alg of ['ES256', 'RS256', 'PS256']) {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      attackers[alg] = { signer: signer(alg, privateKey), key: privateKey, jwk: { ...(await exportJWK(publicKey)), kid: `attacker-${alg}` } };
    }
    const port = await freePort();
    listener = createServer((_req, res) => {
      hits++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: Object.values(attackers).map((a) => a.jwk) }));
    });
    await new Promise<void>((r) => listener.listen(port, '127.0.0.1', r));
    listenerUrl = `http://127.0.0.1:${port}`;
  }, 120_000);
  afterAll(async () => {
    listener?.closeAllConnections();
    await new Promise<void>((r) => (listener ? listener.close(() => r()) : r()));
    await bed?.close();
  });

  const pick = (prefixes: string[]): Surface[] => prefixes.map((p) => bed.byName(p));
  const all = (): Surface[] => bed.surfaces;
  /** A fresh template (new iat, exp, jti) for each token. */
  const fresh = (s: Surface): Promise<Template> => s.template();
  /** The attacker key of the surface's algorithm (ES256 where the surface takes EC keys). */
  const attackerFor = (t: Template) => attackers[String(t.header.alg).startsWith('RS') ? 'RS256' : String(t.header.alg).startsWith('PS') ? 'PS256' : 'ES256'];
  const signedBy = (t: Template, s: Signer, header: Record<string, unknown> = {}, claims: Record<string, unknown> = {}) => jws({ ...t.header, alg: s.alg, ...header }, { ...t.claims, ...claims }, s);
  /** The surface's own key where the test holds it, else an attacker key (the broker's own tokens). */
  const bestSigner = (t: Template) => t.signer ?? attackerFor(t).signer;

  it('JW-01 [P] control: every input accepts a valid token built by the same forging code (the JSON API takes no token this bed can mint)', async () => {
    for (const s of all()) {
      if (s.name.startsWith('access token at the broker’s JSON API')) continue;
      const t = await fresh(s);
      await bed.accepted(s, t.signer ? signedBy(t, t.signer) : bed.webToken, 'valid');
    }
  });

  it('JW-01 alg none, None, NONE, nOnE with an empty signature, and none over a real signature: refused everywhere', async () => {
    for (const s of all()) {
      for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
        const t = await fresh(s);
        await bed.refused(s, jws({ ...t.header, alg }, t.claims, NONE), `alg ${alg}`);
      }
      const t = await fresh(s);
      const real = t.signer ? signedBy(t, t.signer) : bed.webToken;
      const [, payload, signature] = real.split('.');
      await bed.refused(s, `${Buffer.from(JSON.stringify({ ...t.header, alg: 'none' })).toString('base64url')}.${payload}.${signature}`, 'alg none, signature kept');
    }
  });

  it('JW-01 request objects, even unsigned, are refused at the authorization and PAR endpoints (the feature is off)', async () => {
    const { f } = bed;
    const request = jws({ alg: 'none' }, { iss: 'web', aud: f.base, client_id: 'web', response_type: 'code', redirect_uri: 'https://client.test/cb', scope: 'openid', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256' }, NONE);
    const before = bed.db.snapshot();
    const auth = await fetch(`${f.base}/auth?${new URLSearchParams({ client_id: 'web', response_type: 'code', request })}`, { redirect: 'manual' });
    const where = auth.headers.get('location') ?? (await auth.text());
    expect(where).toMatch(/request_not_supported|invalid_request/);
    expect(where).not.toMatch(/[?&]code=/);
    const par = await fetch(`${f.base}/request`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('web:web-secret-0123456789').toString('base64')}` }, body: new URLSearchParams({ client_id: 'web', request }).toString() });
    expect(par.status).toBe(400);
    expect(((await par.json()) as { error: string }).error).toMatch(/request_not_supported|invalid_request/);
    expect(bed.db.snapshot()).toEqual(before);
    const discovery = (await (await fetch(`${f.base}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(discovery.request_parameter_supported).not.toBe(true);
    expect(discovery.request_object_signing_alg_values_supported).toBeUndefined();
  });

  it('JW-02 HS256/384/512 keyed with the input’s own public key (PEM, DER, JWK JSON, n or x): refused everywhere', async () => {
    for (const s of all()) {
      const t = await fresh(s);
      for (const [form, secret] of publicKeyBytes(t.publicJwk)) {
        for (const alg of ['HS256', 'HS384', 'HS512']) {
          const u = await fresh(s);
          await bed.refused(s, signedBy(u, hmac(secret, alg)), `${alg} keyed with the public key as ${form}`);
        }
      }
    }
  });

  it('JW-04 kid injection (path traversal, SQL, 10 KB, NUL, another issuer’s key id): refused, never a 5xx', async () => {
    const kids = ['../../dev/null', "' OR '1'='1", 'k'.repeat(10 * 1024), 'a\u0000b', '/etc/passwd'];
    for (const s of all().filter((x) => !DPOP.some((d) => x.name.startsWith(d)))) {
      for (const kid of kids) {
        const t = await fresh(s);
        await bed.refused(s, signedBy(t, bestSigner(t), { kid }), `kid ${kid.slice(0, 20)}`);
      }
    }
    // A kid naming a key the broker trusts for another issuer (tenant B's), signed with that key.
    const subject = bed.byName('subject_token (CIS2');
    const t = await fresh(subject);
    const tenantB = bed.f.keys.tenantB;
    await bed.refused(subject, jws({ ...t.header, alg: 'ES256', kid: tenantB.kid }, t.claims, signer('ES256', tenantB.privateKey)), 'kid of tenant B’s key');
    // The broker's own kid over an attacker's signature.
    for (const s of pick(BROKER_TOKENS)) {
      const u = await fresh(s);
      await bed.refused(s, signedBy(u, attackerFor(u).signer), 'the broker’s kid, an attacker’s signature');
    }
  });

  it('JW-04 DPoP proofs: the key is the embedded jwk only; kid selects nothing (a proof whose jwk did not sign it is refused)', async () => {
    for (const s of pick(DPOP)) {
      const t = await fresh(s);
      await bed.accepted(s, signedBy(t, t.signer!, { kid: '../../dev/null' }), 'kid ignored');
      const u = await fresh(s);
      await bed.refused(s, signedBy(u, attackers.ES256.signer, { kid: String(attackers.ES256.jwk.kid) }), 'signed by another key than the embedded jwk');
    }
  });

  it('JW-05 jku and x5u (attacker host, 169.254.169.254, localhost): never fetched; refused unless the input’s own key signed it', async () => {
    const targets = [`${listenerUrl}/jwks`, 'http://169.254.169.254/latest/meta-data/jwks', 'http://localhost:1/jwks'];
    const before = hits;
    for (const s of all()) {
      for (const url of targets) {
        for (const header of ['jku', 'x5u']) {
          const t = await fresh(s);
          const t0 = Date.now();
          const own = DPOP.some((d) => s.name.startsWith(d));
          // DPoP proofs are self-signed by design: an attacker's proof is valid for the attacker's key.
          await bed.refused(s, signedBy(t, own ? hmac('x') : attackerFor(t).signer, { [header]: url, kid: String(attackerFor(t).jwk.kid) }), `${header} ${url}, attacker key`);
          expect(Date.now() - t0, 'no fetch attempt that waits on a network timeout').toBeLessThan(3000);
          if (t.signer) {
            const u = await fresh(s);
            const out = await s.present(signedBy(u, t.signer, { [header]: url }));
            expect(out.status).toBeLessThan(500);
          }
        }
      }
    }
    expect(hits - before, 'the attacker host was never asked for keys').toBe(0);
  });

  it('JW-07 x5c carrying a self-signed certificate (with the matching key): refused everywhere it could select a key', async () => {
    const rsa = selfSigned('rsa');
    const ec = selfSigned('ec');
    for (const s of all().filter((x) => !DPOP.some((d) => x.name.startsWith(d)))) {
      const t = await fresh(s);
      const rsaSurface = String(t.header.alg).startsWith('RS') || String(t.header.alg).startsWith('PS');
      const cert = rsaSurface ? rsa : ec;
      const alg = rsaSurface ? String(t.header.alg) : 'ES256';
      await bed.refused(s, signedBy(t, signer(alg, cert.keyPem), { x5c: cert.x5c, kid: undefined }), 'x5c self-signed, no kid');
      const u = await fresh(s);
      await bed.refused(s, signedBy(u, signer(alg, cert.keyPem), { x5c: cert.x5c }), 'x5c self-signed, the real kid');
    }
  });

  it('JW-08 crit naming an unknown or a registered header, an empty crit, b64:false in crit: refused everywhere', async () => {
    const variants: Array<[string, Record<string, unknown>]> = [
      ['crit unknown', { 'x-unknown': 1, crit: ['x-unknown'] }],
      ['crit alg', { crit: ['alg'] }],
      ['crit empty', { crit: [] }],
      ['b64 false', { b64: false, crit: ['b64'] }],
    ];
    for (const s of pick(LEGIT)) {
      for (const [what, header] of variants) {
        const t = await fresh(s);
        await bed.refused(s, signedBy(t, t.signer!, header), what);
      }
    }
  });

  // oidc-provider honours b64:false in crit for client assertions, and jose (every other input) reads
  // crit ["b64", "b64"] with b64 true, and b64 false left out of crit, as an ordinary JWS: the strict
  // shape check (src/crypto/jws-header.ts) in front of each input refuses them all, with the input's
  // own error, before anything is stored.
  it('JW-08 a duplicated crit entry, b64:false outside crit, b64:true alone: refused by every input (client assertions and oidc-provider’s DPoP included)', async () => {
    for (const s of pick(LEGIT)) {
      for (const header of [{ b64: true, crit: ['b64', 'b64'] }, { b64: false }, { b64: true }, { b64: false, crit: ['b64'] }]) {
        const t = await fresh(s);
        const out = await bed.refused(s, signedBy(t, t.signer!, header), JSON.stringify(header));
        if (s.name.startsWith('DPoP')) expect(out.body).toMatch(/invalid_dpop_proof/);
        else if (s.name.startsWith('client_assertion')) expect(out.body).toMatch(/invalid_client/);
        else expect(out.body).toMatch(/invalid_request/);
      }
    }
  });

  it('JW-10 JWE with PBES2 and p2c = 2^31: refused at once everywhere (no input decrypts)', async () => {
    for (const s of all()) {
      const t0 = Date.now();
      await bed.refused(s, jwe({ alg: 'PBES2-HS512+A256KW', enc: 'A256GCM', p2c: 2 ** 31, p2s: 'c2FsdHNhbHRzYWx0' }), 'PBES2 p2c 2^31');
      expect(Date.now() - t0).toBeLessThan(2000);
    }
  });

  it('JW-11 JWE with zip DEF (a decompression bomb): refused everywhere', async () => {
    for (const s of all()) {
      const t0 = Date.now();
      await bed.refused(s, jwe({ alg: 'dir', enc: 'A256GCM', zip: 'DEF' }), 'zip DEF');
      await bed.refused(s, jwe({ alg: 'RSA-OAEP-256', enc: 'A256GCM', zip: 'DEF', kid: String(bed.f.broker.publicJwks().keys[0].kid) }), 'zip DEF to a broker kid');
      expect(Date.now() - t0).toBeLessThan(2000);
    }
  });

  it('JW-13 ECDH-ES with an off-curve ephemeral key, and DPoP proofs whose jwk is off the curve: refused', async () => {
    for (const s of all()) {
      await bed.refused(s, jwe({ alg: 'ECDH-ES', enc: 'A256GCM', epk: OFF_CURVE_P256 }), 'ECDH-ES off-curve epk');
      await bed.refused(s, jwe({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', epk: { kty: 'OKP', crv: 'X25519', x: Buffer.alloc(32).toString('base64url') } }), 'X25519 small-order epk');
    }
    for (const s of pick(DPOP)) {
      const t = await fresh(s);
      await bed.refused(s, signedBy(t, t.signer!, { jwk: OFF_CURVE_P256 }), 'off-curve jwk');
    }
  });

  describe('JW-14 time claims just beyond the tolerance', () => {
    it('JW-14 client assertions (oidc-provider, 15 s): exp, nbf, iat 20 s out refused; [P] 5 s out accepted', async () => {
      const s = bed.byName('client_assertion');
      const n = nowSeconds();
      for (const [what, claims] of [['exp', { exp: n - 20 }], ['nbf', { nbf: n + 20 }], ['iat', { iat: n + 20 }]] as const) {
        const t = await fresh(s);
        await bed.refused(s, signedBy(t, t.signer!, {}, claims), `${what} 20 s out`);
      }
      for (const claims of [{ exp: n - 5, iat: n - 60 }, { nbf: n + 5 }, { iat: n + 5 }]) {
        const t = await fresh(s);
        await bed.accepted(s, signedBy(t, t.signer!, {}, claims), JSON.stringify(claims));
      }
    });

    it('JW-14 subject and actor tokens (issuer clockSkew 30 s): exp, nbf, iat 40 s out refused; [P] nbf and iat 10 s ahead accepted', async () => {
      for (const s of pick(['subject_token (CIS2', 'actor_token'])) {
        const n = nowSeconds();
        for (const [what, claims] of [['exp', { exp: n - 40, iat: n - 300 }], ['nbf', { nbf: n + 40 }], ['iat', { iat: n + 40 }]] as const) {
          const t = await fresh(s);
          await bed.refused(s, signedBy(t, t.signer!, {}, claims), `${what} 40 s out`);
        }
        for (const claims of [{ nbf: n + 10 }, { iat: n + 10 }]) {
          const t = await fresh(s);
          await bed.accepted(s, signedBy(t, t.signer!, {}, claims), JSON.stringify(claims));
        }
        // Past exp but within the skew: the signature check tolerates it, the policy does not (an
        // exchanged token never outlives its subject, and nothing of this one remains).
        const t = await fresh(s);
        const out = await bed.refused(s, signedBy(t, t.signer!, {}, { exp: n - 10, iat: n - 300 }), 'exp 10 s ago');
        expect(out.body).toMatch(/expired/);
      }
    });

    it('JW-14 DPoP proofs (300 s window): iat 305 s old or ahead refused; [P] 290 s accepted', async () => {
      for (const s of pick(DPOP)) {
        const n = nowSeconds();
        for (const iat of [n - 305, n + 305]) {
          const t = await fresh(s);
          await bed.refused(s, signedBy(t, t.signer!, {}, { iat }), `iat ${iat - n}`);
        }
        for (const iat of [n - 290, n + 290]) {
          const t = await fresh(s);
          await bed.accepted(s, signedBy(t, t.signer!, {}, { iat }), `iat ${iat - n}`);
        }
      }
    });
  });

  describe('JW-16 one kind of JWT where another is expected', () => {
    it('JW-16 the broker’s ID token as an access token, as a client assertion, as a DPoP proof: refused', async () => {
      // A genuine ID token of this broker, signed with its keys: only its kind is wrong.
      expect(decodeJwt(bed.idToken).aud).toBe('web');
      expect(decodeJwt(bed.idToken).iss).toBe(bed.f.base);
      for (const s of all()) await bed.refused(s, bed.idToken, 'the broker’s ID token');
    });

    it('JW-16 a valid DPoP proof as an access token or a subject token, and an access token as a DPoP proof or client assertion: refused', async () => {
      const proofSurface = bed.byName('DPoP proof (client');
      const t = await fresh(proofSurface);
      const proof = signedBy(t, t.signer!);
      for (const s of all().filter((x) => !DPOP.some((d) => x.name.startsWith(d)))) await bed.refused(s, proof, 'a DPoP proof');
      for (const s of pick(['client_assertion', 'subject_token (CIS2', 'actor_token', ...DPOP])) await bed.refused(s, bed.webToken, 'the broker’s access token');
    });

    it('JW-16 explicit types of other JWTs (logout+jwt, at+jwt, dpop+jwt) on an ID token or actor JWT: refused', async () => {
      for (const s of pick(['subject_token (CIS2', 'actor_token'])) {
        for (const typ of ['logout+jwt', 'at+jwt', 'dpop+jwt', 'application/at+jwt']) {
          const t = await fresh(s);
          await bed.refused(s, signedBy(t, t.signer!, { typ }), `typ ${typ}`);
        }
      }
      // A client assertion typed as another kind of token.
      const ca = bed.byName('client_assertion');
      for (const typ of ['dpop+jwt', 'logout+jwt', 'at+jwt']) {
        const t = await fresh(ca);
        await bed.refused(ca, signedBy(t, t.signer!, { typ }), `typ ${typ}`);
      }
    });
  });

  describe('JW-17 audience', () => {
    it('JW-17 aud missing, or naming only an attacker: refused; client assertions also refuse an extra audience', async () => {
      for (const s of pick(['client_assertion', 'subject_token (CIS2', 'actor_token'])) {
        const t = await fresh(s);
        const { aud: _aud, ...noAud } = t.claims;
        await bed.refused(s, jws(t.header, noAud, t.signer!), 'no aud');
        for (const aud of ['https://attacker.example', ['https://attacker.example']]) {
          const u = await fresh(s);
          await bed.refused(s, signedBy(u, u.signer!, {}, { aud }), `aud ${JSON.stringify(aud)}`);
        }
      }
      // Client assertions: aud must be exactly the issuer, so an array with an extra audience is refused too.
      const ca = bed.byName('client_assertion');
      const t = await fresh(ca);
      await bed.refused(ca, signedBy(t, t.signer!, {}, { aud: [t.claims.aud, 'https://attacker.example'] }), 'aud with an extra attacker audience');
    });

    // Single-audience policy for exchanged tokens (src/exchange/audience.ts): one audience, as a string or
    // an array of one, and it must be an expected one.
    it('JW-17 aud = [the expected audience, an attacker], or the expected one twice, is refused for exchange subject and actor tokens; [P] an array of exactly the expected audience is accepted', async () => {
      for (const s of pick(['subject_token (CIS2', 'actor_token'])) {
        for (const aud of [[(await fresh(s)).claims.aud, 'https://attacker.example'], ['https://attacker.example', (await fresh(s)).claims.aud], [(await fresh(s)).claims.aud, (await fresh(s)).claims.aud], []]) {
          const t = await fresh(s);
          const out = await bed.refused(s, signedBy(t, t.signer!, {}, { aud }), `aud ${JSON.stringify(aud)}`);
          expect(out.body).toMatch(/aud/);
        }
        const t = await fresh(s);
        await bed.accepted(s, signedBy(t, t.signer!, {}, { aud: [t.claims.aud] }), 'aud as an array of one');
      }
    });

    it('JW-17 decode-only explain applies the same single-audience rule', async () => {
      const s = bed.byName('subject_token (CIS2');
      const t = await fresh(s);
      const { f } = bed;
      const two = signedBy(t, t.signer!, {}, { aud: [t.claims.aud, 'https://attacker.example'] });
      const issuers = f.broker.config.exchange.issuers;
      const c = classifyToken(two, 'id_token', 'subject_token', { brokerIssuer: f.base, issuers });
      expect(c.opaque).toBe(false);
      if (c.opaque) return;
      expect(() => checkClaimsUnverified(c.claims, c.issuer, 'subject_token', nowSeconds())).toThrow(/exactly one audience/);
      expect(() => checkClaimsUnverified({ ...c.claims, aud: [String(t.claims.aud)] }, c.issuer, 'subject_token', nowSeconds())).not.toThrow();
    });
  });

  // JSON.parse keeps the last member; the strict shape check (src/crypto/jws-header.ts) refuses any
  // member named twice, escaped or not, before verification (after oidc-provider's for client assertions,
  // before the assertion is accepted or its jti stored).
  it('JW-19 duplicate members (alg twice, sub twice, a name written with an escape, twice inside a nested claim): refused at every input', async () => {
    for (const s of pick(LEGIT)) {
      const variants: Array<[string, (t: Template) => string]> = [
        ['alg twice', (t) => jws(JSON.stringify(t.header).replace('{', '{"alg":"none",'), t.claims, t.signer!)],
        ['alg twice, the first written with an escape', (t) => jws(JSON.stringify(t.header).replace('{', '{"\\u0061lg":"none",'), t.claims, t.signer!)],
        // (DPoP proofs have no sub of their own: one is added, then a second.)
        ['sub twice', (t) => jws(t.header, JSON.stringify({ sub: 'someone', ...t.claims }).replace('{', '{"sub":"admin",'), t.signer!)],
        ['jti twice', (t) => jws(t.header, JSON.stringify(t.claims).replace(/}$/, `,"jti":"${randomUUID()}"}`), t.signer!)],
        ['a nested member twice', (t) => jws(t.header, JSON.stringify({ ...t.claims, cnf: { x: 1 } }).replace('"cnf":{', '"cnf":{"x":0,'), t.signer!)],
      ];
      for (const [what, make] of variants) await bed.refused(s, make(await fresh(s)), what);
      // [P] the same template without the duplicate is accepted, by the same code path.
      const t = await fresh(s);
      await bed.accepted(s, jws(JSON.stringify(t.header), JSON.stringify(t.claims), t.signer!), 'no duplicate');
    }
  });

  describe('JW-20 text encodings', () => {
    it('JW-20 invalid UTF-8 and overlong encodings in the payload: refused', async () => {
      for (const s of pick(LEGIT)) {
        for (const bytes of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
          const t = await fresh(s);
          const text = JSON.stringify({ ...t.claims, note: '' });
          const raw = Buffer.concat([Buffer.from(text.slice(0, -2)), Buffer.from(bytes), Buffer.from('"}')]);
          await bed.refused(s, jws(t.header, raw, t.signer!), `bytes ${bytes.map((b) => b.toString(16)).join(' ')}`);
        }
      }
    });

    it('JW-20 homoglyph, full-width, NUL and unpaired-surrogate variants of client_id, iss and sub are compared byte for byte: refused', async () => {
      const ca = bed.byName('client_assertion');
      for (const id of ['ѕvc', 'ｓｖｃ', 'svc\u0000', 'svc\u200d', 'svc\ud800', 'SVC']) {
        const t = await fresh(ca);
        await bed.refused(ca, signedBy(t, t.signer!, {}, { iss: id, sub: id }), `client ${JSON.stringify(id)}`);
      }
      const subject = bed.byName('subject_token (CIS2');
      const iss = String((await fresh(subject)).claims.iss);
      for (const variant of [iss.replace('cis2', 'cis２'), `${iss}\u200b`, iss.replace('127.0.0.1', '127.0.0.１'), iss.normalize('NFD').toUpperCase()]) {
        const t = await fresh(subject);
        await bed.refused(subject, signedBy(t, t.signer!, {}, { iss: variant }), `iss ${JSON.stringify(variant)}`);
      }
      // may_act names the actor byte for byte: a homoglyph of the actor's sub does not match.
      const { f } = bed;
      const actor = await signToken(f.keys.partner, { iss: f.host.issuer('partner'), aud: f.base, sub: 'partner-actor' });
      for (const lookalike of ['partner‐actor', 'pаrtner-actor', 'partner-actor\u0000']) {
        const subjectJwt = await signToken(f.keys.partner, { iss: f.host.issuer('partner'), aud: f.base, sub: 'someone', may_act: { sub: lookalike } });
        const res = await rawExchange(f, 'svc', { subject_token: subjectJwt, subject_token_type: JWT, actor_token: actor, actor_token_type: JWT, resource: API2 });
        expect(res.status, lookalike).toBe(400);
      }
      // A client_id form parameter that only looks like the assertion's client.
      const t = await fresh(ca);
      const res = await fetch(`${f.base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'ѕvc', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: signedBy(t, t.signer!) }).toString() });
      expect([400, 401]).toContain(res.status);
    });
  });

  it('JW-22 a JWE keyed with the client secret (dir and A256KW) wrapping an unsigned JWT: refused everywhere', async () => {
    const secret = createHash('sha256').update('web-secret-0123456789').digest();
    const inner = jws({ alg: 'none' }, { iss: 'web', sub: 'web', aud: bed.f.base, iat: nowSeconds(), exp: nowSeconds() + 60, jti: randomUUID() }, NONE);
    const dir = await new CompactEncrypt(new TextEncoder().encode(inner)).setProtectedHeader({ alg: 'dir', enc: 'A256GCM', cty: 'JWT' }).encrypt(secret);
    const kw = await new CompactEncrypt(new TextEncoder().encode(inner)).setProtectedHeader({ alg: 'A256KW', enc: 'A256GCM', cty: 'JWT' }).encrypt(secret);
    for (const s of all()) {
      await bed.refused(s, dir, 'dir JWE');
      await bed.refused(s, kw, 'A256KW JWE');
    }
    // The same as web's client assertion at the token endpoint.
    const res = await fetch(`${bed.f.base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: dir }).toString() });
    expect([400, 401]).toContain(res.status);
  });

  it('JW-23 JWS JSON serialisations (general with a trusted and an attacker signature, flattened): refused where compact is expected', async () => {
    for (const s of all()) {
      const t = await fresh(s);
      const trusted = t.signer ? signedBy(t, t.signer) : bed.webToken;
      const part = (i: number) => JSON.parse(Buffer.from(trusted.split('.')[i], 'base64url').toString()) as Record<string, unknown>;
      const evil = jws(part(0), part(1), attackerFor(t).signer);
      await bed.refused(s, general(trusted, evil), 'general, two signatures');
      await bed.refused(s, flattened(trusted), 'flattened');
    }
  });

  it('JW-25 unverified iss or kid never selects keys: another issuer’s trusted key, or an unconfigured issuer with reachable keys, is refused without fetching', async () => {
    const subject = bed.byName('subject_token (CIS2');
    const before = hits;
    // iss of an issuer the configuration does not name, whose JWKS an attacker serves.
    const t = await fresh(subject);
    await bed.refused(subject, signedBy(t, attackers.RS256.signer, { kid: String(attackers.RS256.jwk.kid) }, { iss: listenerUrl }), 'unconfigured issuer');
    // iss of one configured issuer, signed by another configured issuer's key under its kid.
    const u = await fresh(subject);
    await bed.refused(subject, jws({ ...u.header, alg: 'ES256', kid: bed.f.keys.partner.kid }, u.claims, signer('ES256', bed.f.keys.partner.privateKey)), 'partner key for a CIS2 iss');
    const actor = bed.byName('actor_token');
    const v = await fresh(actor);
    await bed.refused(actor, jws({ ...v.header, alg: 'RS256', kid: bed.f.keys.cis2.kid }, v.claims, signer('RS256', bed.f.keys.cis2.privateKey)), 'CIS2 key for a partner iss');
    expect(hits).toBe(before);
    // The exchange grant names the check that refused, from configuration, not from the token.
    const res = await rawExchange(bed.f, 'svc', { subject_token: signedBy(await fresh(subject), attackers.RS256.signer, {}, { iss: listenerUrl }), subject_token_type: IDT, resource: API2 });
    expect(((await res.json()) as { error_description: string }).error_description).toMatch(/issuer is not trusted/);
  });
});
