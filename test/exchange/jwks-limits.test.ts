import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IssuerUnavailable } from '../../src/exchange/errors.ts';
import { JWKS_MAX_BYTES, JWKS_MAX_KEYS, issuerKeys } from '../../src/oidc/grants/token-exchange/jwks.ts';
import { remoteKeys, verifyIdTokenSignature } from '../../providers/oidc/jwks.ts';
import type { ExchangeConfig, ExchangeIssuerConfig } from '../../src/config/exchange.ts';

// Huge JWKS (issue 9, "large and deep inputs"): a key set with 10,000 keys or of several MiB, served by
// an exchange issuer or an OIDC upstream, is refused after a bounded read, never parsed into thousands
// of candidate keys (each of which could cost a signature check per token).

describe('remote JWKS are bounded in size and key count', () => {
  let server: Server;
  let base: string;
  let good: JWK;
  let token: string;
  const served: Record<string, () => string> = {};

  beforeAll(async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    good = { ...(await exportJWK(publicKey)), kid: 'good', alg: 'ES256', use: 'sig' };
    token = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'ES256', kid: 'good' }).setIssuer('https://issuer.test').setIssuedAt().setExpirationTime('5m').sign(privateKey);
    const filler = (n: number) => Array.from({ length: n }, (_, i) => ({ ...good, kid: `k${i}` }));
    served['/small'] = () => JSON.stringify({ keys: [good] });
    served['/many'] = () => JSON.stringify({ keys: [...filler(9_999), good] });
    // Under the byte limit, over the key limit.
    served['/500'] = () => JSON.stringify({ keys: [...filler(499), good] });
    served['/huge'] = () => JSON.stringify({ keys: [good], pad: 'x'.repeat(4 * 1024 * 1024) });
    server = createServer((req, res) => {
      const body = served[req.url ?? '']?.();
      if (body === undefined) {
        res.writeHead(404).end();
        return;
      }
      // /huge goes out chunked, without Content-Length: the limit must hold while streaming.
      if (req.url === '/huge') res.writeHead(200, { 'content-type': 'application/json' });
      else res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  function exchangeKeys(path: string) {
    const exchange = { jwks: { timeoutMs: 2000, cooldownMs: 0, cacheMaxAgeMs: 60_000 } } as unknown as ExchangeConfig;
    const issuer = { id: `i${path}`, jwks_uri: `${base}${path}` } as unknown as ExchangeIssuerConfig;
    return issuerKeys(exchange, issuer);
  }

  it('the limits are what the code says', () => {
    expect(JWKS_MAX_KEYS).toBe(100);
    expect(JWKS_MAX_BYTES).toBe(256 * 1024);
  });

  it('exchange issuer: a normal set works (control)', async () => {
    await expect(Promise.resolve(exchangeKeys('/small')({ alg: 'ES256', kid: 'good' }, undefined as never))).resolves.toBeTruthy();
  });

  const cases: [string, string, RegExp][] = [
    ['/many', '10,000 keys (about 1.8 MB)', /larger than 262144 bytes/],
    ['/500', '500 keys (under the byte limit)', /500 keys; at most 100/],
    ['/huge', 'a 4 MiB set streamed without Content-Length', /larger than 262144 bytes/],
  ];
  for (const [path, what, reason] of cases) {
    it(`exchange issuer: ${what} -> refused quickly as "keys unavailable"`, async () => {
      const t0 = Date.now();
      const err = await Promise.resolve(exchangeKeys(path)({ alg: 'ES256', kid: 'good' }, undefined as never)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IssuerUnavailable);
      expect(String((err as Error).cause)).toMatch(reason);
      expect(Date.now() - t0).toBeLessThan(1000);
    });
  }

  // An upstream's oversized key set is an outage of that upstream (its circuit breaker counts it), not a bad login.
  it('OIDC upstream: a normal set verifies; 10,000 keys, 500 keys or 4 MiB are refused', async () => {
    await verifyIdTokenSignature(token, remoteKeys(`${base}/small`, { timeoutMs: 2000, cooldownMs: 0 }), 'ES256');
    await expect(verifyIdTokenSignature(token, remoteKeys(`${base}/many`, { timeoutMs: 2000, cooldownMs: 0 }), 'ES256')).rejects.toMatchObject({ name: 'UpstreamUnavailableError', reason: /ERR_JWKS_INVALID: JWKS larger than/ });
    await expect(verifyIdTokenSignature(token, remoteKeys(`${base}/500`, { timeoutMs: 2000, cooldownMs: 0 }), 'ES256')).rejects.toMatchObject({ name: 'UpstreamUnavailableError', reason: /ERR_JWKS_INVALID: .*500 keys/ });
    await expect(verifyIdTokenSignature(token, remoteKeys(`${base}/huge`, { timeoutMs: 2000, cooldownMs: 0 }), 'ES256')).rejects.toMatchObject({ name: 'UpstreamUnavailableError', reason: /ERR_JWKS_INVALID: JWKS larger than/ });
    // With the connector's own fetch (openid-client's customFetch), the bound applies as well.
    const viaCustom = remoteKeys(`${base}/many`, { timeoutMs: 2000, cooldownMs: 0, fetch: (url, init) => fetch(url, init as RequestInit) });
    await expect(verifyIdTokenSignature(token, viaCustom, 'ES256')).rejects.toMatchObject({ name: 'UpstreamUnavailableError', reason: /ERR_JWKS_INVALID/ });
  });
});
