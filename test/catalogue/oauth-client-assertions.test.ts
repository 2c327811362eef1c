// Client authentication rows the hostile client-auth tests leave open (catalogue 1D): replayed
// assertions in other encodings (OA-35), other JWTs presented as client assertions (OA-38), and a
// client authenticating as itself while naming another client (OA-28).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { SignJWT, decodeJwt, generateKeyPair, exportJWK, type CryptoKey } from 'jose';
import { API, OPAQUE_API, clientKey, startTestBroker, type ClientKey, type TestBroker } from '../helpers/broker.ts';
import { DbCounter, OTHER_SECRET, WEB_SECRET, assertion, basic, clientCredentials, codeRequest, createsNothing, driveLogin, oauthError, postForm, redeemCode } from '../oidc/hostile/support.ts';

// P-256 group order: s and n - s are both valid ECDSA signatures of the same message.
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

let tb: TestBroker;
let db: DbCounter;
let svcKey: ClientKey;

beforeAll(async () => {
  svcKey = await clientKey('ES256');
  tb = await startTestBroker({ svcKey });
  db = new DbCounter(tb);
});
afterAll(async () => {
  db?.close();
  await tb?.close();
});

// Opaque tokens are stored, so "nothing created" also proves that no token was minted.
const grant = (clientAssertion: string) => clientCredentials(tb, clientAssertion, { resource: OPAQUE_API });
const now = () => Math.floor(Date.now() / 1000);

async function accepted(res: Response): Promise<void> {
  const text = await res.text();
  expect(res.status, text).toBe(200);
  expect((JSON.parse(text) as { access_token?: string }).access_token).toBeTruthy();
}

async function refused(fn: () => Promise<Response>): Promise<void> {
  await createsNothing(db, async () => oauthError(await fn(), 401, 'invalid_client'));
}

/** The same JWS with its ECDSA signature's s replaced by n - s (still valid, different bytes). */
function malleate(jws: string): string {
  const [h, p, s] = jws.split('.');
  const sig = Buffer.from(s, 'base64url');
  const r = sig.subarray(0, 32);
  const sValue = BigInt(`0x${sig.subarray(32).toString('hex')}`);
  const flipped = Buffer.from((P256_N - sValue).toString(16).padStart(64, '0'), 'hex');
  return `${h}.${p}.${Buffer.concat([r, flipped]).toString('base64url')}`;
}

/** The same JWS whose signature's last base64url character carries non-zero unused bits (same bytes). */
function nonCanonical(jws: string): string {
  const [h, p, s] = jws.split('.');
  // 64 bytes encode to 86 characters: the last one carries 2 data bits and 4 unused ones.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(s.at(-1)!);
  const variant = alphabet[last | 0b0101];
  return `${h}.${p}.${s.slice(0, -1)}${variant === s.at(-1) ? alphabet[last | 0b1010] : variant}`;
}

describe('OA-35 replay detection keys on iss + jti, not on the token string', () => {
  it('OA-35 [P] a fresh assertion in each other encoding is accepted (so the refusals below are replay detection)', async () => {
    const m = malleate(await assertion(tb, svcKey));
    await accepted(await grant(m));
    const n = nonCanonical(await assertion(tb, svcKey));
    expect(Buffer.from(n.split('.')[2], 'base64url').length).toBe(64);
    // jose may refuse a non-canonical encoding outright; either way it must not become a second use.
    const res = await grant(n);
    expect([200, 401]).toContain(res.status);
  });

  it('OA-35 a used assertion re-sent with a malleated signature (s -> n - s) is refused', async () => {
    const first = await assertion(tb, svcKey);
    await accepted(await grant(first));
    const copy = malleate(first);
    expect(copy).not.toBe(first);
    await refused(() => grant(copy));
  });

  it('OA-35 a used assertion re-sent with a non-canonical base64url signature, or with padding, is refused', async () => {
    const first = await assertion(tb, svcKey);
    await accepted(await grant(first));
    await refused(() => grant(nonCanonical(first)));
    const [h, p, s] = first.split('.');
    await refused(() => grant(`${h}.${p}.${s}==`));
    await refused(() => grant(`${h}=.${p}.${s}`));
  });

  it('OA-35 a used assertion re-signed with another registered key of the same client is refused', async () => {
    // Same iss and jti, a different key: only the claims identify a use.
    const first = await assertion(tb, svcKey);
    await accepted(await grant(first));
    const claims = decodeJwt(first);
    const again = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: svcKey.jwk.kid, typ: 'JWT' }).sign(svcKey.privateKey);
    await refused(() => grant(again));
  });
});

describe('OA-38 other JWTs presented as a client assertion', () => {
  async function signedBySvc(claims: Record<string, unknown>, typ?: string, key: CryptoKey = svcKey.privateKey): Promise<string> {
    return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: svcKey.jwk.kid, ...(typ && { typ }) }).sign(key);
  }
  const base = () => ({ iss: 'svc', aud: tb.base, iat: now(), exp: now() + 120, jti: randomBytes(8).toString('hex') });

  it('OA-38 a request object signed by the client (no sub) is refused', async () => {
    const requestObject = await signedBySvc({ ...base(), client_id: 'svc', response_type: 'code', redirect_uri: 'https://client.test/cb', scope: 'openid', state: 's' }, 'oauth-authz-req+jwt');
    await createsNothing(db, async () => oauthError(await grant(requestObject), [400, 401], ['invalid_client', 'invalid_request']));
  });

  it.each([
    ['oauth-authz-req+jwt', 'a request object that also carries sub'],
    ['dpop+jwt', 'a DPoP proof'],
    ['logout+jwt', 'a logout token'],
    ['at+jwt', 'an access token'],
    ['application/oauth-authz-req+jwt', 'a request object (media type form)'],
    ['token-introspection+jwt', 'an introspection response'],
  ])('OA-38 an explicitly typed %s JWT (%s) with every assertion claim is refused', async (typ) => {
    const jwt = await signedBySvc({ ...base(), sub: 'svc', client_id: 'svc', response_type: 'code', htm: 'POST', htu: `${tb.base}/token` }, typ);
    await refused(() => grant(jwt));
  });

  it('OA-38 [P] the same claims untyped, typed JWT, or typed client-authentication+jwt are accepted', async () => {
    for (const typ of [undefined, 'JWT', 'client-authentication+jwt', 'application/client-authentication+jwt']) {
      await accepted(await grant(await signedBySvc({ ...base(), sub: 'svc' }, typ)));
    }
  });

  it('OA-38 a DPoP proof made with the client key (embedded jwk, no iss/sub/aud/exp) is refused', async () => {
    const proof = await new SignJWT({ htm: 'POST', htu: `${tb.base}/token`, jti: randomBytes(8).toString('hex'), iat: now() })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: svcKey.jwk })
      .sign(svcKey.privateKey);
    await createsNothing(db, async () => oauthError(await postForm(`${tb.base}/token`, { grant_type: 'client_credentials', client_id: 'svc', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: proof, resource: OPAQUE_API }), [400, 401], ['invalid_client', 'invalid_request']));
  });

  it('OA-38 tokens the broker itself issued (ID token, JWT access token) are refused as client assertions', async () => {
    // A JWT access token of svc: iss = the broker, sub = svc, signed by the broker.
    const cc = await postForm(`${tb.base}/token`, { grant_type: 'client_credentials', scope: 'system/Patient.rs', resource: API }, { authorization: basic('other', OTHER_SECRET) });
    const accessToken = ((await cc.json()) as { access_token: string }).access_token;
    const req = codeRequest(tb.base);
    const { back } = await driveLogin(req.url, tb.base);
    const idToken = ((await (await redeemCode(tb.base, back.searchParams.get('code')!, req.verifier)).json()) as { id_token: string }).id_token;
    for (const [clientId, jwt] of [['other', accessToken], ['web', idToken]]) {
      await createsNothing(db, async () =>
        oauthError(await postForm(`${tb.base}/token`, { grant_type: 'client_credentials', client_id: clientId, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: jwt, resource: OPAQUE_API }), [400, 401], ['invalid_client', 'invalid_request']),
      );
    }
  });

  it('OA-38 an assertion signed by a key embedded in its own header (jwk) is refused', async () => {
    const attacker = await generateKeyPair('ES256', { extractable: true });
    const jwt = await new SignJWT({ ...base(), sub: 'svc' }).setProtectedHeader({ alg: 'ES256', jwk: await exportJWK(attacker.publicKey) }).sign(attacker.privateKey);
    await refused(() => grant(jwt));
  });
});

describe('OA-28 authenticating as one client while naming another', () => {
  it('OA-28 Basic credentials of other with client_id=web in the body are refused, nothing issued', async () => {
    await createsNothing(db, async () =>
      oauthError(await postForm(`${tb.base}/token`, { grant_type: 'client_credentials', client_id: 'web', resource: OPAQUE_API }, { authorization: basic('other', OTHER_SECRET) }), [400, 401], ['invalid_client', 'invalid_request']),
    );
  });

  it('OA-28 client_secret_post with the secret of web under client_id=other is refused', async () => {
    await createsNothing(db, async () =>
      oauthError(await postForm(`${tb.base}/token`, { grant_type: 'client_credentials', client_id: 'other', client_secret: WEB_SECRET, resource: OPAQUE_API }), [400, 401], ['invalid_client', 'invalid_request']),
    );
  });

  it('OA-28 an assertion of svc sent with client_id=other answers invalid_client', async () => {
    await createsNothing(db, async () => {
      const res = await clientCredentials(tb, await assertion(tb, svcKey), { resource: OPAQUE_API, client_id: 'other' });
      await oauthError(res, [400, 401], ['invalid_client', 'invalid_request']);
    });
  });
});

