import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import type { Context } from 'koa';
import { smartcardUpstreamSchema, type SmartcardUpstreamInput } from '../../../src/config/upstream-smartcard.ts';
import { UpstreamAuthError, type ConnectorDeps, type LoginTransaction } from '../../../src/identity/upstream.ts';
import type { ReplayCache } from '../../../src/store/contracts.ts';
import { createSmartcardConnector, signForwarded, type SmartcardConnectorOptions } from '../../../providers/smartcard/index.ts';
import { tokenizeXfcc } from '../../../providers/smartcard/headers.ts';
import { createTestPki, makeCrl, ocspResponse, TEST_POLICY, type Issued, type TestPki } from '../../peers/pki.ts';

// The connector on its own, with requests built by hand (a Koa context is only read for its headers,
// request target and peer): revocation (CRL from a URL, cached and refreshed, stale or unreachable;
// OCSP), the fail-open/fail-closed switch, the proxy's source allow-list, signature replay, header
// grammar and the mapping of certificates to subjects.

const SECRET = 'unit-test-hmac-secret-0123456789-abcdef';
const URL_PATH = '/upstream/sc/callback?state=tx-1';
const tx: LoginTransaction = { id: 'tx-1', interactionUid: 'i-1', connectorId: 'sc', createdAt: 0, state: {} };

class MemoryReplay implements ReplayCache {
  readonly seen = new Map<string, number>();
  async rememberOnce(key: string, ttl: number): Promise<boolean> {
    const now = Date.now();
    const until = this.seen.get(key);
    if (until !== undefined && until > now) return false;
    this.seen.set(key, now + ttl * 1000);
    return true;
  }
  async has(key: string): Promise<boolean> {
    return (this.seen.get(key) ?? 0) > Date.now();
  }
}

function deps(): ConnectorDeps {
  return { issuer: 'https://broker.test', replay: new MemoryReplay(), onUpstreamLogout: async () => {} };
}

/** A callback request from the signing proxy, carrying `user`'s certificate (and the issuing CA as chain). */
let requests = 0;
function signedRequest(pki: TestPki, user: Issued, opts: { remoteAddress?: string; url?: string; chain?: boolean; now?: number } = {}): Context {
  const cert = `:${Buffer.from(user.cert.rawData).toString('base64')}:`;
  const chain = opts.chain === false ? '' : `:${Buffer.from(pki.issuing.cert.rawData).toString('base64')}:`;
  // A fresh transaction per request, as in the broker (a signature covers the path, state included).
  const url = opts.url ?? `/upstream/sc/callback?state=tx-${++requests}`;
  const sig = signForwarded(SECRET, Math.floor((opts.now ?? Date.now()) / 1000), url, [cert, chain]);
  const rawHeaders = ['Host', 'broker.test', 'Client-Cert', cert, ...(chain ? ['Client-Cert-Chain', chain] : []), 'Client-Cert-Signature', sig];
  return plainRequest(rawHeaders, { remoteAddress: opts.remoteAddress, url });
}


function plainRequest(rawHeaders: string[], opts: { remoteAddress?: string; url?: string } = {}): Context {
  const fake = { req: { socket: { remoteAddress: opts.remoteAddress ?? '127.0.0.1' }, rawHeaders }, originalUrl: opts.url ?? URL_PATH };
  return fake as unknown as Context;
}

function upstream(pki: TestPki, extra: Partial<SmartcardUpstreamInput> = {}): SmartcardUpstreamInput {
  return {
    id: 'sc',
    displayName: 'Smartcard',
    type: 'smartcard',
    trust: { caFile: pki.files.smartcardRoots, policies: [TEST_POLICY] },
    revocation: { crl: { sources: [{ file: pki.files.crls }] } },
    proxy: { format: 'rfc9440', authentication: { hmac: { secrets: [SECRET] }, allowedSources: ['127.0.0.1/32'] } },
    subject: { from: 'uid' },
    assurance: { acr: 'AAL3_SMARTCARD', aal: 3 },
    ...extra,
  };
}

async function connector(pki: TestPki, extra: Partial<SmartcardUpstreamInput> = {}, options: SmartcardConnectorOptions = {}) {
  return createSmartcardConnector(smartcardUpstreamSchema.parse(upstream(pki, extra)), deps(), options);
}

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof UpstreamAuthError) return err.reason;
    throw err;
  }
  throw new Error('expected an UpstreamAuthError');
}

interface Served {
  server: Server;
  url: string;
  hits: number;
  body: (request: Buffer) => Promise<Buffer | undefined> | Buffer | undefined;
}

async function serve(body: Served['body'], contentType: string): Promise<Served> {
  const s: Served = { server: createServer(), url: '', hits: 0, body };
  s.server.on('request', async (req, res) => {
    s.hits++;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const out = await s.body(Buffer.concat(chunks));
    if (!out) {
      res.statusCode = 503;
      res.end();
      return;
    }
    res.setHeader('content-type', contentType);
    res.end(out);
  });
  await new Promise<void>((r) => s.server.listen(0, '127.0.0.1', r));
  s.url = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}/`;
  return s;
}

describe('smartcard connector', () => {
  let pki: TestPki;
  const servers: Served[] = [];
  beforeAll(async () => {
    pki = await createTestPki();
  });
  afterAll(async () => {
    for (const s of servers) await new Promise<void>((r) => s.server.close(() => r()));
  });

  it('maps a valid certificate to an identity with smartcard assurance', async () => {
    const c = await connector(pki);
    const id = await c.complete(signedRequest(pki, pki.users.alice), tx);
    expect(id).toMatchObject({ provider: 'sc', subject: '555000000001', assurance: { acr: 'AAL3_SMARTCARD', aal: 3, amr: ['sc'] } });
    expect(id.claims).toMatchObject({ name: 'Alice Example', uid: '555000000001', email: '555000000001@nhs.test', cert_presented_via: 'proxy-hmac' });
    expect(id.claims['x5t#S256']).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('begin sends the browser straight to the callback with the transaction as state', async () => {
    const c = await connector(pki);
    let status = 0;
    let location = '';
    const ctx = { set status(v: number) { status = v; }, redirect: (u: string) => { location = u; } } as unknown as Context;
    await c.begin(ctx, { callbackUrl: 'https://broker.test/upstream/sc/callback', transactionId: 'tx-9' });
    expect(status).toBe(303);
    expect(location).toBe('https://broker.test/upstream/sc/callback?state=tx-9');
  });

  describe('proxy authentication', () => {
    it('a signature is accepted once (replay cache)', async () => {
      const c = await connector(pki);
      const ctx = signedRequest(pki, pki.users.alice);
      await c.complete(ctx, tx);
      expect(await reason(c.complete(ctx, tx))).toMatch(/spoofing suspected.*replayed proxy signature/);
    });

    it('a signed header from an address off the allow-list is refused', async () => {
      const c = await connector(pki);
      expect(await reason(c.complete(signedRequest(pki, pki.users.alice, { remoteAddress: '10.1.2.3' }), tx))).toMatch(/spoofing suspected.*10\.1\.2\.3 is not an allowed proxy/);
    });

    it('IPv4-mapped IPv6 peers match IPv4 ranges', async () => {
      const c = await connector(pki);
      await expect(c.complete(signedRequest(pki, pki.users.alice, { remoteAddress: '::ffff:127.0.0.1' }), tx)).resolves.toMatchObject({ subject: '555000000001' });
    });

    it('a malformed signature header is refused', async () => {
      const c = await connector(pki);
      const cert = `:${Buffer.from(pki.users.alice.cert.rawData).toString('base64')}:`;
      expect(await reason(c.complete(plainRequest(['Client-Cert', cert, 'Client-Cert-Signature', 't=abc;sig=xyz']), tx))).toMatch(/malformed proxy signature/);
    });
  });

  describe('revocation by CRL from a URL', () => {
    it('is fetched once, cached, refreshed after refreshSeconds, and a newly revoked card is then refused', async () => {
      let crl = Buffer.from((await makeCrl(pki.issuing, [pki.users.revoked.cert])) + (await makeCrl(pki.root, [])));
      const s = await serve(() => crl, 'application/x-pem-file');
      servers.push(s);
      let now = Date.now();
      const c = await connector(pki, { revocation: { crl: { sources: [{ url: s.url }], refreshSeconds: 60 } } }, { now: () => now });
      await c.complete(signedRequest(pki, pki.users.bob), tx);
      await c.complete(signedRequest(pki, pki.users.alice), tx);
      expect(s.hits).toBe(1);
      expect(await reason(c.complete(signedRequest(pki, pki.users.revoked), tx))).toMatch(/user certificate certificate revoked/);
      // Bob's card is revoked; the broker sees it at the next refresh.
      crl = Buffer.from((await makeCrl(pki.issuing, [pki.users.revoked.cert, pki.users.bob.cert])) + (await makeCrl(pki.root, [])));
      await c.complete(signedRequest(pki, pki.users.bob), tx);
      now += 61_000;
      expect(await reason(c.complete(signedRequest(pki, pki.users.bob, { now }), tx))).toMatch(/revoked/);
      expect(s.hits).toBe(2);
    });

    it('fails closed when the CRL cannot be fetched; fail-open lets the login through and says so', async () => {
      const s = await serve(() => undefined, 'application/pkix-crl');
      servers.push(s);
      const closed = await connector(pki, { revocation: { crl: { sources: [{ url: s.url }] } } });
      expect(await reason(closed.complete(signedRequest(pki, pki.users.alice), tx))).toMatch(/revocation status unknown.*no CRL for the issuer.*HTTP 503/);
      const told: string[] = [];
      const open = await connector(pki, { revocation: { crl: { sources: [{ url: s.url }] }, failOpen: true } }, { onRevocationUnknown: (r) => told.push(r) });
      await expect(open.complete(signedRequest(pki, pki.users.alice), tx)).resolves.toMatchObject({ subject: '555000000001' });
      expect(told.join()).toMatch(/revocation status unknown/);
    });

    it('a stale CRL (past nextUpdate) counts as unknown: refused when closed', async () => {
      const stale = pki.write('stale.pem', (await makeCrl(pki.issuing, [], { thisUpdate: new Date(Date.now() - 10 * 86_400_000), nextUpdate: new Date(Date.now() - 86_400_000) })) + (await makeCrl(pki.root, [])));
      const c = await connector(pki, { revocation: { crl: { sources: [{ file: stale }] } } });
      expect(await reason(c.complete(signedRequest(pki, pki.users.alice), tx))).toMatch(/CRL is stale/);
    });

    it('a CRL with our issuer\'s name but another key does not count', async () => {
      const forged = pki.write('forged.pem', (await makeCrl(pki.rogueIssuing, [])) + (await makeCrl(pki.root, [])));
      const c = await connector(pki, { revocation: { crl: { sources: [{ file: forged }] } } });
      expect(await reason(c.complete(signedRequest(pki, pki.users.revoked), tx))).toMatch(/no usable CRL signed by the issuer/);
    });

    it('scope chain needs the root\'s CRL for the intermediate too; scope leaf does not', async () => {
      const leafOnly = pki.write('leaf-only.pem', await makeCrl(pki.issuing, []));
      const chain = await connector(pki, { revocation: { crl: { sources: [{ file: leafOnly }] } } });
      expect(await reason(chain.complete(signedRequest(pki, pki.users.alice), tx))).toMatch(/intermediate: no CRL for the issuer/);
      const leaf = await connector(pki, { revocation: { crl: { sources: [{ file: leafOnly }], scope: 'leaf' } } });
      await expect(leaf.complete(signedRequest(pki, pki.users.alice), tx)).resolves.toMatchObject({ subject: '555000000001' });
    });

    it('a missing CRL file is a configuration error at start-up', async () => {
      await expect(connector(pki, { revocation: { crl: { sources: [{ file: '/nonexistent/crl.pem' }] } } })).rejects.toThrow(/revocation\.crl/);
    });
  });

  describe('revocation by OCSP', () => {
    let mode: 'good' | 'revoked' | 'unknown' | 'down' | 'no-nonce' | 'rogue' = 'good';
    let responder: Served;
    beforeAll(async () => {
      responder = await serve(async (request) => {
        if (mode === 'down') return undefined;
        if (mode === 'rogue') return ocspResponse(request, pki.rogueIssuing, 'good');
        return ocspResponse(request, pki.issuing, mode === 'no-nonce' ? 'good' : mode, { echoNonce: mode !== 'no-nonce' });
      }, 'application/ocsp-response');
      servers.push(responder);
    });
    const ocspOnly = () => ({ revocation: { ocsp: { url: responder.url } } });

    it('good: accepted; revoked: refused; unknown, down, no nonce or an unauthorised responder: refused (fail closed)', async () => {
      const c = await connector(pki, ocspOnly());
      const cases: Array<[typeof mode, RegExp | null]> = [
        ['good', null],
        ['revoked', /revoked \(OCSP\)/],
        ['unknown', /does not know the certificate/],
        ['down', /responder unreachable/],
        ['no-nonce', /nonce missing/],
        ['rogue', /unauthorised responder/],
      ];
      for (const [m, expected] of cases) {
        mode = m;
        const p = c.complete(signedRequest(pki, pki.users.alice), tx);
        if (expected === null) await expect(p).resolves.toMatchObject({ subject: '555000000001' });
        else expect(await reason(p), m).toMatch(expected);
      }
    });

    it('with a CRL as well, a responder that is down does not block a card the CRL shows good', async () => {
      mode = 'down';
      const c = await connector(pki, { revocation: { crl: { sources: [{ file: pki.files.crls }] }, ocsp: { url: responder.url } } });
      await expect(c.complete(signedRequest(pki, pki.users.alice), tx)).resolves.toMatchObject({ subject: '555000000001' });
      mode = 'revoked';
      expect(await reason(c.complete(signedRequest(pki, pki.users.alice), tx))).toMatch(/revoked \(OCSP\)/);
    });
  });

  describe('forwarded header forms', () => {
    it('nginx: one URL-encoded PEM; two blocks, raw PEM or a failed verification are refused', async () => {
      const c = await connector(pki, { proxy: { format: 'nginx', verifyHeader: 'x-ssl-client-verify', authentication: { hmac: { secrets: [SECRET] } } }, trust: { caFile: pki.files.smartcardRoots, intermediatesFile: pki.files.smartcardIntermediates } });
      const send = (cert: string, verify = 'SUCCESS') => {
        const sig = signForwarded(SECRET, Math.floor(Date.now() / 1000), URL_PATH, [cert, verify]);
        return c.complete(plainRequest(['X-SSL-Client-Cert', cert, 'X-SSL-Client-Verify', verify, 'Client-Cert-Signature', sig]), tx);
      };
      await expect(send(encodeURIComponent(pki.users.alice.certPem))).resolves.toMatchObject({ subject: '555000000001' });
      expect(await reason(send(encodeURIComponent(pki.users.alice.certPem + pki.users.bob.certPem)))).toMatch(/several certificates/);
      expect(await reason(send(pki.users.alice.certPem.trim().replace(/\n/g, ' ')))).toMatch(/not a URL-encoded PEM/);
      expect(await reason(send(encodeURIComponent(pki.users.alice.certPem), 'FAILED:certificate has expired'))).toMatch(/reports client verification FAILED/);
      expect(await reason(send(encodeURIComponent(pki.users.alice.certPem.replace('MII', 'M!I'))))).toMatch(/malformed base64|unexpected text/);
    });

    it('XFCC grammar: quoted values may hold ; , = and escaped quotes; broken quoting is refused', () => {
      expect(tokenizeXfcc('By=spiffe://a;Subject="CN=x,O=\\"y\\";z";URI=u')).toEqual([[['By', 'spiffe://a'], ['Subject', 'CN=x,O="y";z'], ['URI', 'u']]]);
      expect(tokenizeXfcc('Hash=1,Hash=2')).toHaveLength(2);
      expect(() => tokenizeXfcc('Cert="abc')).toThrow(/unterminated/);
      expect(() => tokenizeXfcc('Cert')).toThrow(/without =/);
      expect(() => tokenizeXfcc('Cert="a"b')).toThrow(/after a quoted value/);
    });

    it('XFCC with an unknown key is refused', async () => {
      const c = await connector(pki, { proxy: { format: 'xfcc', authentication: { hmac: { secrets: [SECRET] } } }, trust: { caFile: pki.files.smartcardRoots, intermediatesFile: pki.files.smartcardIntermediates } });
      const value = `Cert="${encodeURIComponent(pki.users.alice.certPem)}";Role=admin`;
      const sig = signForwarded(SECRET, Math.floor(Date.now() / 1000), URL_PATH, [value]);
      expect(await reason(c.complete(plainRequest(['x-forwarded-client-cert', value, 'client-cert-signature', sig]), tx))).toMatch(/XFCC element not understood/);
    });
  });

  describe('subject mapping', () => {
    it('a pattern narrows the value; scopeToIssuer prefixes the issuing CA key id; SAN and fingerprint sources', async () => {
      const narrowed = await connector(pki, { subject: { from: 'uid', pattern: '^5550000(\\d{5})$' } });
      expect((await narrowed.complete(signedRequest(pki, pki.users.alice), tx)).subject).toBe('00001');
      const scoped = await connector(pki, { subject: { from: 'uid', scopeToIssuer: true } });
      expect((await scoped.complete(signedRequest(pki, pki.users.alice), tx)).subject).toMatch(/^[0-9a-f]{40}\/555000000001$/);
      const email = await connector(pki, { subject: { from: 'san-email' } });
      expect((await email.complete(signedRequest(pki, pki.users.alice), tx)).subject).toBe('555000000001@nhs.test');
      const fp = await connector(pki, { subject: { from: 'fingerprint' } });
      expect((await fp.complete(signedRequest(pki, pki.users.alice), tx)).subject).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const mismatch = await connector(pki, { subject: { from: 'uid', pattern: '^X(\\d+)$' } });
      expect(await reason(mismatch.complete(signedRequest(pki, pki.users.alice), tx))).toMatch(/does not match the subject pattern/);
      const noUpn = await connector(pki, { subject: { from: 'san-upn' } });
      expect(await reason(noUpn.complete(signedRequest(pki, pki.users.alice), tx))).toMatch(/no UPN SAN/);
    });

    it('a required certificate policy the card lacks refuses it', async () => {
      const c = await connector(pki, { trust: { caFile: pki.files.smartcardRoots, policies: ['1.2.3.4.5'] } });
      expect(await reason(c.complete(signedRequest(pki, pki.users.alice), tx))).toMatch(/certificate policy/);
    });

    it('a path longer than maxPathLength is not built', async () => {
      const c = await connector(pki, { trust: { caFile: pki.files.smartcardRoots, policies: [TEST_POLICY], maxPathLength: 2 } });
      expect(await reason(c.complete(signedRequest(pki, pki.users.alice), tx))).toMatch(/no path to a trusted CA/);
    });
  });
});
