// Hostile tests for client authentication at the token endpoint (security catalogue 1D):
// private_key_jwt assertions of `svc`, client secrets, unknown clients.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { SignJWT, generateKeyPair } from 'jose';
import { OPAQUE_API, clientKey, startTestBroker, type ClientKey, type TestBroker } from '../../helpers/broker.ts';
import { ASSERTION_TYPE, DbCounter, OTHER_SECRET, WEB_SECRET, assertion, b64, basic, clientCredentials, createsNothing, oauthError, postForm } from './support.ts';

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

// Tokens for the opaque resource are stored, so "nothing created" also proves no token was minted.
const grant = (clientAssertion: string, extra: Record<string, string> = {}) => clientCredentials(tb, clientAssertion, { resource: OPAQUE_API, ...extra });
const now = () => Math.floor(Date.now() / 1000);

async function accepted(res: Response): Promise<string> {
  const text = await res.text();
  expect(res.status, text).toBe(200);
  const body = JSON.parse(text) as { access_token: string };
  expect(body.access_token).toBeTruthy();
  return body.access_token;
}

/** Refused with 401 invalid_client, and nothing was stored. */
async function refusedClient(fn: () => Promise<Response>): Promise<void> {
  await createsNothing(db, async () => {
    const res = await fn();
    await oauthError(res, 401, 'invalid_client');
  });
}

describe('1D private_key_jwt client assertions', () => {
  it('[P] a valid assertion is accepted and mints a stored token', async () => {
    const before = db.snapshot()['oidc:ClientCredentials'] ?? 0;
    await accepted(await grant(await assertion(tb, svcKey)));
    expect(db.snapshot()['oidc:ClientCredentials']).toBe(before + 1);
  });

  it('OA-28: an svc assertion sent with the client_id of another client is refused', async () => {
    for (const clientId of ['other', 'web', 'rs']) {
      await createsNothing(db, async () => oauthError(await grant(await assertion(tb, svcKey), { client_id: clientId }), [400, 401], ['invalid_client', 'invalid_request']));
    }
  });

  it('OA-28: an assertion naming another client as sub (signed by svc) is refused', async () => {
    await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { sub: 'other' } })));
    await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { iss: 'other', sub: 'other' } })));
  });

  it('OA-29: exp 5 minutes in the past', async () => {
    await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { iat: now() - 420, exp: now() - 300 } })));
  });

  it('OA-31: aud naming another server (string or array)', async () => {
    for (const aud of ['https://other-as.example', [`https://other-as.example`], `${tb.base}/`, `${tb.base}.evil.example`, 'http://localhost']) {
      await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { aud } })));
    }
  });

  it('OA-31: aud naming another endpoint of this server (introspection, PAR, authorization) is refused at the token endpoint', async () => {
    for (const path of ['/token/introspection', '/request', '/auth', '/token/revocation']) {
      await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { aud: `${tb.base}${path}` } })));
    }
  });

  it('OA-31: aud = the token endpoint URL, or an array holding the issuer, is refused (issuer only, as FAPI 2 and RFC 7523bis)', async () => {
    // oidc-provider alone accepts these outside its FAPI 2.0 profile; the broker narrows it for every client.
    for (const aud of [`${tb.base}/token`, ['https://other-as.example', tb.base], [tb.base], [`${tb.base}/request`]]) {
      await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { aud } })));
    }
  });

  it('[P] OA-31: aud = the issuer is accepted', async () => {
    await accepted(await grant(await assertion(tb, svcKey, { claims: { aud: tb.base } })));
  });

  it('OA-32: nbf more than 60 s in the future', async () => {
    await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { nbf: now() + 70, exp: now() + 180 } })));
  });

  it('OA-32: iat more than 60 s in the future', async () => {
    await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { iat: now() + 70, exp: now() + 180 } })));
  });

  it('[P] OA-32: iat and nbf 8 s in the future are accepted (clock skew)', async () => {
    await accepted(await grant(await assertion(tb, svcKey, { claims: { iat: now() + 8, nbf: now() + 8 } })));
  });

  it.each(['jti', 'exp', 'iss', 'sub', 'aud'])('OA-37: assertion without %s', async (claim) => {
    await createsNothing(db, async () => {
      // Without sub, oidc-provider cannot even tell which client this is (it is the client_id), so it may say invalid_request.
      const res = await grant(await assertion(tb, svcKey, { omit: [claim] }), claim === 'sub' ? { client_id: 'svc' } : {});
      await oauthError(res, [400, 401], claim === 'sub' ? ['invalid_client', 'invalid_request'] : 'invalid_client');
    });
  });

  it('OA-37: iss different from client_id', async () => {
    for (const iss of ['other', 'svc ', 'SVC', tb.base]) {
      await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { iss } })));
    }
  });

  it('malformed claim types (exp as string, jti as number)', async () => {
    await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { exp: String(now() + 60) } })));
    await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { jti: 12345 } })));
  });

  it('alg none', async () => {
    const claims = { iss: 'svc', sub: 'svc', aud: tb.base, iat: now(), exp: now() + 60, jti: randomBytes(8).toString('hex') };
    for (const alg of ['none', 'None', 'NONE']) {
      const unsigned = `${b64(JSON.stringify({ alg, kid: svcKey.jwk.kid }))}.${b64(JSON.stringify(claims))}.`;
      await refusedClient(() => grant(unsigned));
    }
  });

  it('an assertion signed by a different key with the registered kid', async () => {
    const attacker = await generateKeyPair('ES256');
    await refusedClient(async () => grant(await assertion(tb, svcKey, { key: attacker.privateKey })));
  });

  it('a valid assertion whose signature was tampered with', async () => {
    const good = await assertion(tb, svcKey);
    const [h, p, s] = good.split('.');
    const flipped = `${s.slice(0, 10)}${s[10] === 'A' ? 'B' : 'A'}${s.slice(11)}`;
    await refusedClient(() => grant(`${h}.${p}.${flipped}`));
    // Payload swapped under the original signature (claims changed, signature kept).
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    await refusedClient(() => grant(`${h}.${b64(JSON.stringify({ ...payload, jti: 'other-jti' }))}.${s}`));
  });

  it('HS256 signed with the public key as the secret (key confusion)', async () => {
    const { createPublicKey } = await import('node:crypto');
    const pem = createPublicKey({ key: svcKey.jwk as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
    const secrets = [new TextEncoder().encode(JSON.stringify(svcKey.jwk)), new TextEncoder().encode(pem), new TextEncoder().encode(svcKey.jwk.x!)];
    for (const secret of secrets) {
      await refusedClient(async () => grant(await assertion(tb, svcKey, { alg: 'HS256', key: secret })));
    }
  });

  it('OA-35: replay of a used assertion, verbatim and re-encoded (other key order and whitespace, re-signed)', async () => {
    const first = await assertion(tb, svcKey);
    await accepted(await grant(first));
    await refusedClient(() => grant(first));
    const claims = JSON.parse(Buffer.from(first.split('.')[1], 'base64url').toString()) as Record<string, unknown>;
    // Same claims, keys reversed, pretty-printed: a different token string with the same iss + jti.
    const reordered = JSON.stringify(Object.fromEntries(Object.entries(claims).reverse()), null, 2);
    const header = JSON.stringify({ kid: svcKey.jwk.kid, alg: 'ES256' }, null, 1);
    const signingInput = `${b64(header)}.${b64(reordered)}`;
    const { createSign, KeyObject } = await import('node:crypto');
    const der = createSign('SHA256').update(signingInput).sign({ key: KeyObject.from(svcKey.privateKey as never), dsaEncoding: 'ieee-p1363' });
    const reencoded = `${signingInput}.${der.toString('base64url')}`;
    expect(reencoded).not.toBe(first);
    await refusedClient(() => grant(reencoded));
    // And re-signed with jose (fresh ECDSA signature) over the same claims.
    await refusedClient(async () => grant(await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: svcKey.jwk.kid }).sign(svcKey.privateKey)));
  });

  it('[P] the re-encoding itself is valid: a fresh jti in the same hand-built encoding is accepted', async () => {
    const claims = { jti: randomBytes(8).toString('hex'), exp: now() + 60, iat: now(), aud: tb.base, sub: 'svc', iss: 'svc' };
    const signingInput = `${b64(JSON.stringify({ kid: svcKey.jwk.kid, alg: 'ES256' }, null, 1))}.${b64(JSON.stringify(claims, null, 2))}`;
    const { createSign, KeyObject } = await import('node:crypto');
    const sig = createSign('SHA256').update(signingInput).sign({ key: KeyObject.from(svcKey.privateKey as never), dsaEncoding: 'ieee-p1363' });
    await accepted(await grant(`${signingInput}.${sig.toString('base64url')}`));
  });

  it('client authentication by two mechanisms at once, a wrong assertion type, or a non-JWT assertion', async () => {
    const both = await postForm(`${tb.base}/token`, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(tb, svcKey), resource: OPAQUE_API }, { authorization: basic('other', OTHER_SECRET) });
    await createsNothing(db, async () => oauthError(both, [400, 401], ['invalid_request', 'invalid_client']));
    await createsNothing(db, async () => oauthError(await grant(await assertion(tb, svcKey), { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer' }), 400, 'invalid_request'));
    await createsNothing(db, async () => oauthError(await grant('not-a-jwt'), [400, 401], ['invalid_request', 'invalid_client']));
  });
});

describe('1D client secrets and unknown clients', () => {
  const cc = (headers: Record<string, string>, extra: Record<string, string> = {}) => postForm(`${tb.base}/token`, { grant_type: 'client_credentials', ...extra }, headers);

  it('[P] the right secret works', async () => {
    await accepted(await cc({ authorization: basic('other', OTHER_SECRET) }));
  });

  it('a wrong client secret -> 401 invalid_client with WWW-Authenticate', async () => {
    for (const secret of ['wrong', `${OTHER_SECRET}x`, OTHER_SECRET.slice(0, -1), OTHER_SECRET.toUpperCase(), WEB_SECRET]) {
      await createsNothing(db, async () => {
        const res = await cc({ authorization: basic('other', secret) });
        expect(res.headers.get('www-authenticate') ?? '').toMatch(/^Basic /);
        await oauthError(res, 401, 'invalid_client');
      });
    }
  });

  it('a private_key_jwt client cannot fall back to no authentication or a secret', async () => {
    await refusedClient(() => cc({}, { client_id: 'svc' }));
    await refusedClient(() => cc({ authorization: basic('svc', 'anything-0123456789') }));
  });

  it('an unknown client -> 401 invalid_client JSON (basic, body and assertion)', async () => {
    await refusedClient(() => cc({ authorization: basic('nobody', 'secret-0123456789') }));
    await refusedClient(() => cc({}, { client_id: 'nobody' }));
    await refusedClient(async () => grant(await assertion(tb, svcKey, { claims: { iss: 'nobody', sub: 'nobody' } })));
  });

  it('a malformed Basic header -> 400 invalid_request or 401 invalid_client, never 5xx', async () => {
    for (const authorization of ['Basic', 'Basic !!!', `Basic ${Buffer.from('no-colon').toString('base64')}`, `Basic ${Buffer.from('other:').toString('base64')}`, `Basic ${Buffer.from('%zz:%zz').toString('base64')}`, 'Bearer abc']) {
      await createsNothing(db, async () => oauthError(await cc({ authorization }), [400, 401], ['invalid_request', 'invalid_client']));
    }
  });
});
