// Catalogue section 4, the proxy rows that need the real proxy: Debian's nginx terminating TLS, asking
// for the smartcard certificate and forwarding it to the broker, which it reaches over mutual TLS.
// CC-02: whatever certificate headers a client adds (duplicates, other case, underscores, broken
// header syntax), the broker sees only the value nginx set. CC-04: nginx with ssl_verify_client
// optional_no_ca passes a self-signed card on with a FAILED status (or NONE without a card); the broker
// refuses both, and re-validates even when it is not told the status.
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as x509 from '@peculiar/x509';
import { nginxAvailable, nginxConfig } from '../peers/nginx.ts';
import { createTestPki, EKU_CLIENT_AUTH, TEST_POLICY, type Issued, type TestPki } from '../peers/pki.ts';
import { baseUpstream, HMAC_SECRET, startBed, TlsBrowser, type Bed } from '../providers/smartcard/harness.ts';
import { asResponse, attempt, customCert, escapedPem, expectRefused, person, rawTls, refused, sf, signed9440 } from './smartcard-support.ts';

const available = nginxAvailable();

describe.skipIf(!available)('catalogue section 4: through nginx (ssl_verify_client optional_no_ca)', () => {
  let pki: TestPki;
  let bed: Bed;
  let selfSigned: Issued;
  let aliceSub: string;
  const browsers: TlsBrowser[] = [];
  const browser = (user?: Issued) => {
    const b = new TlsBrowser(bed.pki, user);
    browsers.push(b);
    return b;
  };
  const tlsFor = (user?: Issued) => {
    const files = user ? pki.clientFiles(user) : undefined;
    return { ca: pki.serverCa.certPem, cert: files ? readFileSync(files.cert) : undefined, key: files ? readFileSync(files.key) : undefined };
  };

  beforeAll(async () => {
    pki = await createTestPki();
    selfSigned = await customCert('self', {
      subject: person('Alice Example', '555000000001'),
      extensions: async (k) => [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true), new x509.ExtendedKeyUsageExtension([EKU_CLIENT_AUTH], false), new x509.CertificatePolicyExtension([TEST_POLICY], false), await x509.SubjectKeyIdentifierExtension.create(k.publicKey)],
    });
    bed = await startBed({
      pki,
      nginx: ({ port, brokerPort }) =>
        nginxConfig({ port, brokerPort, serverCert: pki.files.serverCert, serverKey: pki.files.serverKey, clientCa: pki.files.smartcardCaChain, crl: pki.files.crls, verifyClient: 'optional_no_ca', proxyCert: pki.files.proxyCert, proxyKey: pki.files.proxyKey, brokerCa: pki.files.serverCa }),
      upstreams: (p) => {
        const mtls = { mtls: { caFile: p.files.proxyCa, allowedNames: ['smartcard-proxy'] }, allowedSources: ['127.0.0.1/32', '::1/128'] };
        return [
          baseUpstream(p, 'smartcard', { proxy: { format: 'nginx', verifyHeader: 'x-ssl-client-verify', authentication: mtls } }),
          baseUpstream(p, 'smartcard-nv', { proxy: { format: 'nginx', authentication: mtls } }),
          baseUpstream(p, 'smartcard-hmac', { trust: { caFile: p.files.smartcardRoots, policies: [TEST_POLICY] }, proxy: { format: 'rfc9440', authentication: { hmac: { secrets: [HMAC_SECRET] }, allowedSources: ['127.0.0.1/32', '::1/128'] } } }),
        ];
      },
    });
    const l = await bed.login(browser(pki.users.alice), 'smartcard');
    aliceSub = (await bed.redeem(l.outcome, l)).sub;
  }, 120_000);

  afterAll(async () => {
    for (const b of browsers) await b.close();
    await bed?.close();
  });

  describe('CC-04 a proxy that passes failed certificates on', () => {
    it('CC-04 a self-signed card (verification FAILED at nginx) is refused, with and without the status header', async () => {
      for (const [up, reason] of [
        ['smartcard', /proxy reports client verification FAILED/],
        ['smartcard-nv', /no path to a trusted CA/],
      ] as const) {
        const b = browser(selfSigned);
        const before = await bed.counts();
        const since = bed.logs.length;
        const { outcome } = await bed.login(b, up);
        refused(outcome);
        expect(bed.reasons(since).join(' | ')).toMatch(reason);
        expect(await bed.counts()).toEqual(before);
      }
    });

    it('CC-04 no card (verification NONE) is refused: a status without a certificate is nothing', async () => {
      const since = bed.logs.length;
      const before = await bed.counts();
      refused((await bed.login(browser(), 'smartcard')).outcome);
      expect(bed.reasons(since).join(' | ')).toMatch(/forwarded no client certificate/);
      expect(await bed.counts()).toEqual(before);
    });

    it('CC-04 a card from another CA with the issuing CA\'s name, and a revoked card, are refused whatever nginx says', async () => {
      for (const user of [pki.users.foreign, pki.users.revoked]) {
        for (const up of ['smartcard', 'smartcard-nv']) {
          const before = await bed.counts();
          refused((await bed.login(browser(user), up)).outcome);
          expect(await bed.counts()).toEqual(before);
        }
      }
    });
  });

  describe('CC-02 client-sent copies of the certificate headers', () => {
    /** Alice's card on the TLS connection; the callback request carries `lines` as well, byte for byte. */
    const throughNginx = async (lines: string[]) => {
      const b = browser(pki.users.alice);
      const before = await bed.counts();
      const since = bed.logs.length;
      let status = 0;
      const l = await bed.login(b, 'smartcard', async (url) => {
        const raw = await rawTls(url.href, tlsFor(pki.users.alice), lines, b.jar);
        status = raw.status;
        return asResponse(raw);
      });
      return { l, status, before, reasons: bed.reasons(since).join(' | ') };
    };
    const bob = () => escapedPem(pki.users.bob);

    const replaced: Array<[string, () => string[]]> = [
      ['duplicated', () => [`X-SSL-Client-Cert: ${bob()}`, `X-SSL-Client-Cert: ${bob()}`, 'X-SSL-Client-Verify: SUCCESS', 'X-SSL-Client-Verify: SUCCESS']],
      ['in other cases', () => [`x-ssl-client-cert: ${bob()}`, `X-SSL-CLIENT-CERT: ${bob()}`, 'x-SSL-client-VERIFY: SUCCESS']],
      ['with underscores', () => [`X_SSL_Client_Cert: ${bob()}`, `SSL_Client_Cert: ${bob()}`, 'X_SSL_Client_Verify: SUCCESS']],
      ['in every other form', () => [`SSL-Client-Cert: ${bob()}`, `Client-Cert: ${sf(pki.users.bob)}`, `Client-Cert: ${sf(pki.users.bob)}`, `X-Forwarded-Client-Cert: Cert="${bob()}"`, `X-Amzn-Mtls-Clientcert-Leaf: ${bob()}`]],
    ];
    for (const [name, lines] of replaced) {
      it(`CC-02 copies ${name} are replaced by nginx: the login is the card's, not the header's`, async () => {
        const { l } = await throughNginx(lines());
        expect((await bed.redeem(l.outcome, l)).sub).toBe(aliceSub);
      });
    }

    it('CC-02 a header line folded onto the previous one (leading space) or with a space before the colon is refused by nginx (400), nothing created', async () => {
      for (const lines of [['X-Note: x', ` X-SSL-Client-Cert: ${bob()}`], [`X-SSL-Client-Cert : ${bob()}`]]) {
        const { l, status, before } = await throughNginx(lines);
        expect(status, lines.join('|')).toBe(400);
        expect(l.outcome.kind).toBe('page');
        expect(await bed.counts()).toEqual(before);
      }
    });

    it('CC-02 sent straight to the broker, the same broken lines are refused by the HTTP parser (400), nothing created', async () => {
      for (const lines of [['X-Note: x', ` Client-Cert: ${sf(pki.users.bob)}`], [`Client-Cert : ${sf(pki.users.bob)}`]]) {
        const b = browser();
        const before = await bed.counts();
        let status = 0;
        const l = await bed.login(b, 'smartcard-hmac', async (url) => {
          const raw = await rawTls(`${bed.brokerUrl}${url.pathname}${url.search}`, tlsFor(), lines, b.jar);
          status = raw.status;
          return asResponse(raw);
        });
        expect(status, lines.join('|')).toBe(400);
        expect(l.outcome.kind).toBe('page');
        expect(await bed.counts()).toEqual(before);
      }
    });

    it('CC-02 from the authenticated signing proxy, an underscore lookalike beside the signed header is ambiguous and refused', async () => {
      const a = await attempt(bed, browser(), 'smartcard-hmac', (url) => [...signed9440(url, sf(pki.users.alice), sf(pki.issuing)), ['Client_Cert', sf(pki.users.bob)]]);
      await expectRefused(a, /ambiguous certificate header client_cert/);
    });

    it('CC-02 from the authenticated signing proxy, a duplicated well-known header is ambiguous and refused', async () => {
      const b = browser();
      const c = await bed.toCallback(b, 'smartcard-hmac');
      const before = await bed.counts();
      const since = bed.logs.length;
      const lines = signed9440(c.callback, sf(pki.users.alice), sf(pki.issuing)).map(([k, v]) => `${k}: ${v}`);
      const raw = await rawTls(`${bed.brokerUrl}${c.callback.pathname}${c.callback.search}`, tlsFor(), [...lines, `X-SSL-Client-Cert: ${bob()}`, `X-SSL-Client-Cert: ${bob()}`], b.jar);
      expect(raw.status).toBe(401);
      expect(bed.reasons(since).join(' | ')).toMatch(/ambiguous: header x-ssl-client-cert appears 2 times/);
      expect(await bed.counts()).toEqual(before);
    });
  });
});
