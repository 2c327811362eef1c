// Signing-key rotation (catalogue OA-68): a new key is published before it signs, the old key stays
// published for a grace period (its tokens keep verifying), and once it is withdrawn a token signed
// with it is refused. The rotation is the one `broker keys rotate` performs; the broker is restarted on
// the same store at each stage, with its clock moved forward (Date.now is what the key schedule reads).
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { SignJWT, decodeJwt, decodeProtectedHeader, importJWK } from 'jose';
import { createSealer, parseDataKey } from '../../src/crypto/seal.ts';
import { privateJwks, rotateKey } from '../../src/oidc/keys.ts';
import { openStore } from '../../src/store/open.ts';
import type { StoredKey } from '../../src/store/contracts.ts';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { createBroker } from '../../src/server.ts';
import { API, TEST_KEK, clientKey, testConfig, type ClientKey, type TestBroker } from '../helpers/broker.ts';
import { freePort } from '../peers/ports.ts';
import { OTHER_SECRET, basic, codeRequest, driveLogin, introspect, postForm, redeemCode } from '../oidc/hostile/support.ts';

const OVERLAP = 60;
const MAX_TOKEN_LIFETIME = 600;
const realNow = Date.now.bind(Date);
const clockAt = (seconds: number) => {
  Date.now = () => realNow() + seconds * 1000;
};

describe('OA-68 signing-key rotation', () => {
  let store: string;
  let svcKey: ClientKey;
  let tb: TestBroker | undefined;
  let port: number;

  beforeAll(async () => {
    store = `sqlite:${join(mkdtempSync(join(tmpdir(), 'rotation-')), 'broker.db')}`;
    svcKey = await clientKey('ES256');
    port = await freePort();
  });
  afterEach(() => {
    Date.now = realNow;
  });
  afterAll(async () => {
    Date.now = realNow;
    await tb?.close();
  });

  // One port (so one issuer) across restarts: tokens of an earlier instance must verify at a later one.
  async function restart(): Promise<TestBroker> {
    await tb?.close();
    // Let the client side see the old instance's sockets close before the port is reused.
    await new Promise((r) => setTimeout(r, 100));
    const config = parseConfig(testConfig(port, store, svcKey), {});
    const broker = await createBroker(config, { log: pino({ level: 'silent' }), env: {} });
    const server = await broker.listen(port, '127.0.0.1');
    tb = {
      broker,
      server,
      base: `http://localhost:${port}`,
      async close() {
        server.closeAllConnections();
        await broker.close();
      },
    };
    return tb;
  }
  const kids = async (b: TestBroker) => ((await (await fetch(`${b.base}/jwks`)).json()) as { keys: Array<{ kid: string; alg: string }> }).keys.filter((k) => k.alg === 'ES256').map((k) => k.kid);
  async function accessToken(b: TestBroker): Promise<string> {
    const res = await postForm(`${b.base}/token`, { grant_type: 'client_credentials', scope: 'system/Patient.rs', resource: API }, { authorization: basic('other', OTHER_SECRET) });
    expect(res.status).toBe(200);
    return ((await res.json()) as { access_token: string }).access_token;
  }
  async function idToken(b: TestBroker): Promise<string> {
    const req = codeRequest(b.base);
    const { back } = await driveLogin(req.url, b.base);
    return ((await (await redeemCode(b.base, back.searchParams.get('code')!, req.verifier)).json()) as { id_token: string }).id_token;
  }
  async function storedKeys(): Promise<StoredKey[]> {
    const s = openStore(store);
    try {
      return await s.keys.listKeys();
    } finally {
      await s.close();
    }
  }

  it('OA-68 [P] published before use, kept for the grace period, then withdrawn; a token signed by the withdrawn key is refused', async () => {
    // Stage 0: one ES256 key signs.
    let b = await restart();
    const [oldKid] = await kids(b);
    const beforeRotation = await accessToken(b);
    expect(decodeProtectedHeader(beforeRotation).kid).toBe(oldKid);

    // Rotate with the broker stopped (as the CLI does against a shared store).
    await tb!.close();
    tb = undefined;
    const s = openStore(store);
    const sealer = createSealer([parseDataKey(TEST_KEK)]);
    const { added } = await rotateKey(s.keys, sealer, 'ES256', OVERLAP, MAX_TOKEN_LIFETIME);
    await s.close();
    // The old key's private half, kept by the test to sign with it after it is withdrawn.
    const oldPrivate = privateJwks(await storedKeys(), sealer).keys.find((k) => k.kid === oldKid)!;
    expect(oldPrivate.d).toBeTruthy();

    // Stage 1, inside the overlap: both keys published, the old one still signs.
    b = await restart();
    expect(await kids(b)).toEqual(expect.arrayContaining([oldKid, added.kid]));
    const duringOverlap = await accessToken(b);
    expect(decodeProtectedHeader(duringOverlap).kid).toBe(oldKid);
    expect(decodeProtectedHeader(await idToken(b)).kid).toBe(oldKid);
    expect((await introspect(b.base, beforeRotation)).active).toBe(true);

    // Stage 2, after the overlap: the new key signs; the old one is still published (grace period).
    clockAt(OVERLAP + 5);
    b = await restart();
    expect(await kids(b)).toEqual(expect.arrayContaining([oldKid, added.kid]));
    const afterOverlap = await accessToken(b);
    expect(decodeProtectedHeader(afterOverlap).kid).toBe(added.kid);
    expect(decodeProtectedHeader(await idToken(b)).kid).toBe(added.kid);
    expect((await introspect(b.base, duringOverlap)).active).toBe(true);
    expect((await introspect(b.base, afterOverlap)).active).toBe(true);

    // Stage 3, past the grace period: the old key is withdrawn.
    clockAt(OVERLAP + MAX_TOKEN_LIFETIME + 5);
    b = await restart();
    expect(await kids(b)).not.toContain(oldKid);
    expect(await kids(b)).toContain(added.kid);
    // A token signed by the withdrawn key now, with a lifetime still to run, is refused.
    const payload = { ...decodeJwt(beforeRotation), iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 300, jti: randomBytes(8).toString('hex') };
    const forged = await new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: oldKid, typ: 'at+jwt' }).sign(await importJWK(oldPrivate, 'ES256'));
    expect((await introspect(b.base, forged)).active).toBe(false);
    // [P] the same claims signed by the current key are accepted: the refusal is about the key.
    const current = (await storedKeys()).find((k) => k.kid === added.kid)!;
    const fresh = await new SignJWT({ ...payload, jti: randomBytes(8).toString('hex') }).setProtectedHeader({ alg: 'ES256', kid: added.kid, typ: 'at+jwt' }).sign(await importJWK(privateJwks([current], sealer).keys[0], 'ES256'));
    expect((await introspect(b.base, fresh)).active).toBe(true);
  }, 60_000);
});
