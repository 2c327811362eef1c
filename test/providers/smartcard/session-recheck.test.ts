import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import type { Context } from 'koa';
import { smartcardUpstreamSchema, type SmartcardUpstreamInput } from '../../../src/config/upstream-smartcard.ts';
import type { LoginTransaction, UpstreamIdentity } from '../../../src/identity/upstream.ts';
import { createSmartcardConnector, signForwarded, type SmartcardConnector } from '../../../providers/smartcard/index.ts';
import { createTestPki, ocspResponse, TEST_POLICY, type Issued, type TestPki } from '../../peers/pki.ts';

// The smartcard connector's re-check of a broker session (CC-22), on its own: what a login leaves for it
// (no personal data), and the answers for a good, revoked, unknown, expired or unreadable record, through
// the same CRL cache and OCSP client as a login.

const SECRET = 'unit-test-hmac-secret-0123456789-abcdef';
const tx: LoginTransaction = { id: 'tx-1', interactionUid: 'i-1', connectorId: 'sc', createdAt: 0, state: {} };
const der = (u: Issued) => Buffer.from(u.cert.rawData);

let requests = 0;
function signedRequest(pki: TestPki, user: Issued): Context {
  const cert = `:${der(user).toString('base64')}:`;
  const chain = `:${der(pki.issuing).toString('base64')}:`;
  const url = `/upstream/sc/callback?state=tx-${++requests}`;
  const rawHeaders = ['Host', 'broker.test', 'Client-Cert', cert, 'Client-Cert-Chain', chain, 'Client-Cert-Signature', signForwarded(SECRET, Math.floor(Date.now() / 1000), url, [cert, chain])];
  return { req: { socket: { remoteAddress: '127.0.0.1' }, rawHeaders }, originalUrl: url } as unknown as Context;
}

describe('smartcard session re-check', () => {
  let pki: TestPki;
  let responder: Server;
  let responderUrl: string;
  let mode: 'good' | 'revoked' | 'down' = 'good';
  let hits = 0;
  const unknowns: string[] = [];

  beforeAll(async () => {
    pki = await createTestPki();
    responder = createServer(async (req, res) => {
      hits++;
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      if (mode === 'down') {
        res.statusCode = 503;
        return void res.end();
      }
      res.setHeader('content-type', 'application/ocsp-response');
      res.end(await ocspResponse(Buffer.concat(chunks), pki.issuing, mode));
    });
    await new Promise<void>((r) => responder.listen(0, '127.0.0.1', r));
    responderUrl = `http://127.0.0.1:${(responder.address() as AddressInfo).port}/`;
  }, 60_000);
  afterAll(async () => {
    responder?.closeAllConnections();
    await new Promise<void>((r) => responder?.close(() => r()));
  });

  async function connector(extra: Partial<SmartcardUpstreamInput> = {}): Promise<SmartcardConnector> {
    const input: SmartcardUpstreamInput = {
      id: 'sc',
      displayName: 'Smartcard',
      type: 'smartcard',
      trust: { caFile: pki.files.smartcardRoots, policies: [TEST_POLICY] },
      revocation: { crl: { sources: [{ file: pki.files.crls }] } },
      proxy: { format: 'rfc9440', authentication: { hmac: { secrets: [SECRET] }, allowedSources: ['127.0.0.1/32'] } },
      subject: { from: 'uid' },
      ...extra,
    };
    return createSmartcardConnector(smartcardUpstreamSchema.parse(input), { issuer: 'https://broker.test', replay: { rememberOnce: async () => true, has: async () => false }, onUpstreamLogout: async () => {} }, { onRevocationUnknown: (r) => void unknowns.push(r) });
  }
  const loginOf = async (c: SmartcardConnector, user: Issued): Promise<UpstreamIdentity> => c.complete(signedRequest(pki, user), tx);

  it('CC-22 a login leaves the serial, expiry, OCSP responder and issuing CAs of the card, and nothing about its holder', async () => {
    const identity = await loginOf(await connector(), pki.users.alice);
    const recheck = identity.recheck!;
    expect(Object.keys(recheck).sort()).toEqual(['issuers', 'notAfter', 'serial'].concat('ocspUrl' in recheck ? ['ocspUrl'] : []).sort());
    expect(recheck.serial).toBe(pki.users.alice.cert.serialNumber);
    expect(recheck.notAfter).toBe(Math.floor(pki.users.alice.cert.notAfter.getTime() / 1000));
    expect(recheck.issuers).toEqual([der(pki.issuing).toString('base64url'), der(pki.root).toString('base64url')]);
    const text = JSON.stringify(recheck);
    for (const personal of ['Alice', '555000000001', String(identity.claims.name)]) expect(text).not.toContain(personal);
  });

  it('CC-22 the default maximum session age is 15 minutes, and configurable (0: never reused)', async () => {
    expect((await connector()).sessionRecheck.maxSessionAge).toBe(900);
    expect((await connector({ maxSessionAgeSeconds: 0 })).sessionRecheck.maxSessionAge).toBe(0);
    expect(smartcardUpstreamSchema.safeParse({ ...smartcardUpstreamSchema.parse({ id: 'x', type: 'smartcard', displayName: 'X', direct: true, trust: { caFile: '/ca' }, revocation: { disabled: true }, subject: { from: 'uid' } }), maxSessionAgeSeconds: -1 }).success).toBe(false);
  });

  it('CC-22 by CRL: the card\'s record re-checks good; the same record naming a revoked serial is refused', async () => {
    const c = await connector();
    const recheck = (await loginOf(c, pki.users.alice)).recheck!;
    await expect(c.sessionRecheck.recheck(recheck)).resolves.toEqual({ valid: true });
    const revoked = await c.sessionRecheck.recheck({ ...recheck, serial: pki.users.revoked.cert.serialNumber });
    expect(revoked).toMatchObject({ valid: false, reason: expect.stringMatching(/user certificate certificate revoked/) });
  });

  it('CC-22 by OCSP: each re-check asks the responder; revoked, or unreachable (fail closed), ends the session; failOpen lets it through and says so', async () => {
    mode = 'good';
    const closed = await connector({ revocation: { ocsp: { url: responderUrl, timeoutMs: 500 } } });
    const open = await connector({ revocation: { ocsp: { url: responderUrl, timeoutMs: 500 }, failOpen: true } });
    const recheck = (await loginOf(closed, pki.users.alice)).recheck!;
    const before = hits;
    await expect(closed.sessionRecheck.recheck(recheck)).resolves.toEqual({ valid: true });
    expect(hits).toBe(before + 1);
    mode = 'revoked';
    expect(await closed.sessionRecheck.recheck(recheck)).toMatchObject({ valid: false, reason: expect.stringMatching(/revoked \(OCSP\)/) });
    expect(await open.sessionRecheck.recheck(recheck)).toMatchObject({ valid: false, reason: expect.stringMatching(/revoked \(OCSP\)/) });
    mode = 'down';
    expect(await closed.sessionRecheck.recheck(recheck)).toMatchObject({ valid: false, reason: expect.stringMatching(/revocation status unknown/) });
    const seen = unknowns.length;
    await expect(open.sessionRecheck.recheck(recheck)).resolves.toEqual({ valid: true });
    expect(unknowns.slice(seen).join()).toMatch(/responder unreachable/);
    mode = 'good';
  });

  it('CC-22 a card expired since sign-in, or an unreadable record, ends the session without asking anyone', async () => {
    const c = await connector({ revocation: { ocsp: { url: responderUrl, timeoutMs: 500 } } });
    mode = 'good';
    const recheck = (await loginOf(c, pki.users.alice)).recheck!;
    const before = hits;
    expect(await c.sessionRecheck.recheck({ ...recheck, notAfter: Math.floor(Date.now() / 1000) - 3600 })).toMatchObject({ valid: false, reason: expect.stringMatching(/expired since sign-in/) });
    for (const bad of [{}, { ...recheck, serial: 'not hex' }, { ...recheck, issuers: [] }, { ...recheck, issuers: ['AAAA'] }, { ...recheck, extra: 1 }]) {
      expect(await c.sessionRecheck.recheck(bad as Record<string, unknown>), JSON.stringify(bad).slice(0, 60)).toMatchObject({ valid: false, reason: expect.stringMatching(/no usable certificate record/) });
    }
    expect(hits).toBe(before);
  });
});
