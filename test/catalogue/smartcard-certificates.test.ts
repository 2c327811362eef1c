// Catalogue section 4 (client certificates and the smartcard proxy), the certificate and mapping rows,
// end to end through the broker's own HTTPS listener: the test plays a signing proxy (RFC 9440 or
// XFCC headers with an HMAC over them), so the proxy forwards whatever it is given, as a proxy that
// ignores expiry or usages would, and the broker's own validation is what refuses. Every refusal is
// the generic 401 page with its reason in the log, and creates no account, link or code.
import 'reflect-metadata';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as x509 from '@peculiar/x509';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import * as ocspAsn from '@peculiar/asn1-ocsp';
import { smartcardUpstreamSchema } from '../../src/config/upstream-smartcard.ts';
import { createTestPki, issue, makeCrl, makeRoot, ocspResponse, EKU_CLIENT_AUTH, EKU_SERVER_AUTH, TEST_POLICY, type Issued, type TestPki } from '../peers/pki.ts';
import { baseUpstream, HMAC_SECRET, startBed, TlsBrowser, XFCC_BY, type Bed } from '../providers/smartcard/harness.ts';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { clientKey, testConfig } from '../helpers/broker.ts';
import { attempt, cardExtensions, customCert, der, escapedPem, expectRefused, EKU_SMARTCARD_LOGON, person, sf, signed9440, signedXfcc, UID } from './smartcard-support.ts';

const DAY = 86_400_000;
const EKU_OCSP_SIGNING = '1.3.6.1.5.5.7.3.9';
const EKU_EMAIL_PROTECTION = '1.3.6.1.5.5.7.3.4';

type OcspMode = 'good' | 'revoked' | 'unknown' | 'down' | 'tryLater' | 'slow' | 'rogue' | 'stale' | 'wrong-nonce' | 'other-serial' | 'delegated' | 'delegated-no-eku';

interface Extra {
  /** Second trusted PKI (root and issuing CA), for mappings across two CAs. */
  root2: Issued;
  issuing2: Issued;
  cards: Record<string, Issued>;
  /** Chains some cards need (their own intermediates), as RFC 9440 Client-Cert-Chain values. */
  chains: Record<string, string>;
  responders: { ocspSigner: Issued; ocspNoEku: Issued };
  files: { roots2: string; crls2: string };
}

async function extraPki(pki: TestPki): Promise<Extra> {
  const i = pki.issuing;
  const card = (cn: string, uid: string, o: Parameters<typeof cardExtensions>[2] = {}, times: { notBefore?: Date; notAfter?: Date } = {}, issuer: Issued = i) =>
    customCert(issuer, { subject: person(cn, uid), ...times, extensions: (k) => cardExtensions(k, issuer, o) });
  const root2 = await makeRoot('CN=Second Smartcard Root CA, O=Other Health, C=GB', { pathLength: 1 });
  const issuing2 = await issue(root2, { subject: 'CN=Second Smartcard Issuing CA, O=Other Health, C=GB', ca: { pathLength: 0 } });
  // Intermediates out of their validity period (CC-07), under the trusted root.
  const expiredCa = await issue(pki.root, { subject: 'CN=Expired Issuing CA, O=Test Health, C=GB', ca: { pathLength: 0 }, notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) });
  const futureCa = await issue(pki.root, { subject: 'CN=Future Issuing CA, O=Test Health, C=GB', ca: { pathLength: 0 }, notBefore: new Date(Date.now() + 10 * DAY), notAfter: new Date(Date.now() + 400 * DAY) });
  // A self-made PKI with the trusted CAs' names (CC-05).
  const fakeRoot = await makeRoot('CN=Test Smartcard Root CA, O=Test Health, C=GB', { pathLength: 1 });
  const fakeIssuing = await issue(fakeRoot, { subject: 'CN=Test Smartcard Issuing CA, O=Test Health, C=GB', ca: { pathLength: 0 } });
  const upn = (value: string): x509.JsonGeneralNames => [{ type: 'upn', value }];
  const cards: Record<string, Issued> = {
    logonOnly: await card('Lou Logon', '555000000021', { eku: new x509.ExtendedKeyUsageExtension([EKU_SMARTCARD_LOGON], false) }),
    kuNonCritical: await card('Nina Noncritical', '555000000022', { keyUsage: new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyEncipherment, false) }),
    noKeyUsage: await card('Kurt NoKu', '555000000023', { keyUsage: null }),
    noEku: await card('Ed NoEku', '555000000024', { eku: null }),
    encryptionOnly: await card('Enc Only', '555000000025', { keyUsage: new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.dataEncipherment, true), eku: new x509.ExtendedKeyUsageExtension([EKU_EMAIL_PROTECTION], false) }),
    serverCritical: await card('Sam Critical', '555000000026', { eku: new x509.ExtendedKeyUsageExtension([EKU_SERVER_AUTH], true) }),
    notYetValid: await card('Fay Future', '555000000027', {}, { notBefore: new Date(Date.now() + 2 * DAY), notAfter: new Date(Date.now() + 400 * DAY) }),
    underExpiredCa: await card('Ian Expired-CA', '555000000028', {}, {}, expiredCa),
    underFutureCa: await card('Ivy Future-CA', '555000000029', {}, {}, futureCa),
    selfSigned: await customCert('self', { subject: person('Alice Example', '555000000001'), extensions: async (k) => [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true), new x509.ExtendedKeyUsageExtension([EKU_CLIENT_AUTH], false), new x509.CertificatePolicyExtension([TEST_POLICY], false), await x509.SubjectKeyIdentifierExtension.create(k.publicKey)] }),
    fakeAlice: await card('Alice Example', '555000000001', {}, {}, fakeIssuing),
    // CC-13: names that look like other names when rendered as text.
    cnInjection: await card('Alice Example,O=Admins', '555000000031'),
    cnEscaped: await card('Alice Example\\,O=Admins', '555000000032'),
    uidInCn: await card('Mallory,UID=555000000001', '555000000033'),
    nulInUid: await card('Nul Byte', '555000000001\u0000'),
    fullwidthUid: await card('Full Width', '５５５０００００００01'),
    homoglyphCn: await card('Аlice Example', '555000000035'),
    twoCns: await customCert(i, { subject: [{ CN: ['Alice Example'] }, { CN: ['Admin'] }, { [UID]: ['555000000036'] }], extensions: (k) => cardExtensions(k, i) }),
    // CC-14: subject alternative names.
    twoUpns: await card('Two Upns', '555000000041', { sans: [...upn('two@nhs.test'), ...upn('alice@nhs.test')] }),
    twoEmails: await card('Two Emails', '555000000042', { sans: [{ type: 'email', value: 'two@nhs.test' }, { type: 'email', value: 'alice@nhs.test' }] }),
    upnAlice: await card('Alice Upn', '555000000043', { sans: upn('alice@nhs.test') }),
    upnAliceOtherCa: await card('Alice Elsewhere', '555000000044', { sans: upn('alice@nhs.test') }, {}, issuing2),
    upnDollar: await card('Host Dollar', '555000000045', { sans: upn('alice$@nhs.test') }),
    bobUidAliceUpn: await card('Bob Example', '555000000002', { sans: upn('555000000001@nhs.test') }),
    aliceTwin: await card('Alice Example', '555000000001', { sans: [{ type: 'email', value: '555000000001@nhs.test' }] }),
  };
  const chains = {
    underExpiredCa: sf(expiredCa),
    underFutureCa: sf(futureCa),
    fakeAlice: `${sf(fakeIssuing)}, ${sf(fakeRoot)}`,
    upnAliceOtherCa: sf(issuing2),
  };
  const ocspSigner = await issue(pki.issuing, { subject: 'CN=Test OCSP Responder, O=Test Health, C=GB', eku: [EKU_OCSP_SIGNING] });
  const ocspNoEku = await issue(pki.issuing, { subject: 'CN=Test OCSP Impostor, O=Test Health, C=GB', eku: [EKU_CLIENT_AUTH] });
  const crls2 = (await makeCrl(pki.issuing, [pki.users.revoked.cert])) + (await makeCrl(pki.root, [])) + (await makeCrl(issuing2, [])) + (await makeCrl(root2, []));
  return {
    root2,
    issuing2,
    cards,
    chains,
    responders: { ocspSigner, ocspNoEku },
    files: { roots2: pki.write('roots-two-cas.pem', pki.root.certPem + root2.certPem), crls2: pki.write('crls-two-cas.pem', crls2) },
  };
}

/** An OCSP responder whose behaviour each test chooses. */
async function ocspResponder(pki: TestPki, extra: () => Extra): Promise<{ url: string; mode: OcspMode; hits: number; close(): Promise<void> }> {
  const state = { url: '', mode: 'good' as OcspMode, hits: 0, close: async () => {} };
  const server: Server = createServer(async (req, res) => {
    state.hits++;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const request = Buffer.concat(chunks);
    const send = (body: Buffer) => {
      res.setHeader('content-type', 'application/ocsp-response');
      res.end(body);
    };
    switch (state.mode) {
      case 'down':
        res.statusCode = 503;
        return void res.end();
      case 'slow':
        // Never answers within the broker's timeout.
        return void setTimeout(() => res.destroy(), 5000).unref();
      case 'tryLater':
        return send(Buffer.from(AsnConvert.serialize(new ocspAsn.OCSPResponse({ responseStatus: ocspAsn.OCSPResponseStatus.tryLater }))));
      case 'rogue':
        return send(await ocspResponse(request, pki.rogueIssuing, 'good'));
      case 'stale':
        return send(await ocspResponse(request, pki.issuing, 'good', { thisUpdate: new Date(Date.now() - 3 * DAY), nextUpdate: new Date(Date.now() - 2 * DAY) }));
      case 'wrong-nonce': {
        const req = AsnConvert.parse(request, ocspAsn.OCSPRequest);
        const ext = req.tbsRequest.requestExtensions?.find((e) => e.extnID === ocspAsn.id_pkix_ocsp_nonce);
        if (ext) ext.extnValue = new OctetString(AsnConvert.serialize(new OctetString(Buffer.alloc(16, 7))));
        return send(await ocspResponse(Buffer.from(AsnConvert.serialize(req)), pki.issuing, 'good'));
      }
      case 'other-serial': {
        const req = AsnConvert.parse(request, ocspAsn.OCSPRequest);
        req.tbsRequest.requestList[0].reqCert.serialNumber = new Uint8Array(Buffer.from(pki.users.bob.cert.serialNumber, 'hex')).buffer;
        return send(await ocspResponse(Buffer.from(AsnConvert.serialize(req)), pki.issuing, 'good'));
      }
      case 'delegated':
        return send(await ocspResponse(request, extra().responders.ocspSigner, 'good', { includeSigner: true }));
      case 'delegated-no-eku':
        return send(await ocspResponse(request, extra().responders.ocspNoEku, 'good', { includeSigner: true }));
      default:
        return send(await ocspResponse(request, pki.issuing, state.mode));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  state.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return state;
}

/** A TLS browser that keeps every Set-Cookie line it received (attributes included). */
class RecordingBrowser extends TlsBrowser {
  readonly setCookies: string[] = [];
  override async request(url: string, init: Parameters<TlsBrowser['request']>[1] = {}): Promise<Response> {
    const res = await super.request(url, init);
    this.setCookies.push(...res.headers.getSetCookie());
    return res;
  }
}

describe('catalogue section 4: certificates and their mapping, through the broker', () => {
  let pki: TestPki;
  let extra: Extra;
  let bed: Bed;
  let ocsp: Awaited<ReturnType<typeof ocspResponder>>;
  const browsers: TlsBrowser[] = [];
  const browser = (user?: Issued) => {
    const b = new TlsBrowser(bed.pki, user);
    browsers.push(b);
    return b;
  };
  const card = (name: string) => extra.cards[name];
  /** The signing proxy forwards `user` (and the chain it needs) to upstream `up`. */
  const forward = (user: Issued, up = 'sc', chain?: string) => attempt(bed, browser(), up, (url) => signed9440(url, sf(user), chain ?? sf(bed.pki.issuing)));
  const signInXfcc = async (value: string): Promise<string> => {
    const a = await attempt(bed, browser(), 'sc-xfcc', (url) => signedXfcc(url, value));
    expect(a.outcome.kind, a.reasons).toBe('client');
    return (await bed.redeem(a.outcome, a.login)).sub;
  };
  const signIn = async (user: Issued, up = 'sc', chain?: string): Promise<string> => {
    const a = await forward(user, up, chain);
    expect(a.outcome.kind, a.reasons).toBe('client');
    return (await bed.redeem(a.outcome, a.login)).sub;
  };

  beforeAll(async () => {
    pki = await createTestPki();
    extra = await extraPki(pki);
    ocsp = await ocspResponder(pki, () => extra);
    const hmac = { hmac: { secrets: [HMAC_SECRET] }, allowedSources: ['127.0.0.1/32', '::1/128'] };
    const proxy = { format: 'rfc9440' as const, authentication: hmac };
    const roots = { caFile: pki.files.smartcardRoots, policies: [TEST_POLICY] };
    bed = await startBed({
      pki,
      nginx: false,
      upstreams: (p) => [
        // The chain comes from the proxy's Client-Cert-Chain only: what it forwards is all there is.
        baseUpstream(p, 'sc', { trust: roots, proxy }),
        baseUpstream(p, 'sc-cn', { trust: roots, proxy, subject: { from: 'cn' } }),
        baseUpstream(p, 'sc-upn', { trust: { caFile: extra.files.roots2, policies: [TEST_POLICY] }, revocation: { crl: { sources: [{ file: extra.files.crls2 }] } }, proxy, subject: { from: 'san-upn', scopeToIssuer: true } }),
        baseUpstream(p, 'sc-upn-pattern', { trust: roots, proxy, subject: { from: 'san-upn', pattern: '^([a-z0-9.]+)@nhs\\.test$' } }),
        baseUpstream(p, 'sc-email', { trust: roots, proxy, subject: { from: 'san-email' } }),
        baseUpstream(p, 'sc-issuer-serial', { trust: roots, proxy, subject: { from: 'issuer-serial' } }),
        baseUpstream(p, 'sc-ocsp', { trust: roots, proxy, revocation: { ocsp: { url: ocsp.url, timeoutMs: 500 } } }),
        baseUpstream(p, 'sc-ocsp-open', { trust: roots, proxy, revocation: { ocsp: { url: ocsp.url, timeoutMs: 500 }, failOpen: true } }),
        baseUpstream(p, 'sc-brief', { trust: roots, proxy, maxSessionAgeSeconds: 1 }),
        baseUpstream(p, 'sc-xfcc', { proxy: { format: 'xfcc', xfccBy: [XFCC_BY], authentication: hmac } }),
      ],
    });
  }, 120_000);

  afterAll(async () => {
    for (const b of browsers) await b.close();
    await bed?.close();
    await ocsp?.close();
  });

  describe('CC-01 certificate headers that do not come from the authenticated proxy', () => {
    const forms: Array<[string, (u: Issued) => string]> = [
      ['ssl-client-cert', escapedPem],
      ['SSL-Client-Verify', () => 'SUCCESS'],
      ['X-Amzn-Mtls-Clientcert-Leaf', escapedPem],
      ['X-Amzn-Mtls-Clientcert', escapedPem],
      ['X-ARR-ClientCert', (u) => der(u).toString('base64')],
      ['X-Client-Cert', escapedPem],
      ['Client-Cert', sf],
    ];
    for (const [header, value] of forms) {
      it(`CC-01 ${header} sent straight to the broker, unsigned, is refused as spoofing`, async () => {
        const a = await attempt(bed, browser(), 'sc', () => [[header, value(bed.pki.users.alice)]]);
        await expectRefused(a, /spoofing suspected/);
      });
    }

    it('CC-01 a signature made with another key is not the proxy', async () => {
      const forged = await attempt(bed, browser(), 'sc', (url) => signed9440(url, sf(bed.pki.users.alice), sf(bed.pki.issuing)).map(([k, v]): [string, string] => (k === 'Client-Cert-Signature' ? [k, v.replace(/sig=.{6}/, 'sig=AAAAAA')] : [k, v])));
      await expectRefused(forged, /spoofing suspected.*forged proxy signature/);
    });
  });

  describe('CC-05 a proxy that forwards without verifying (ALB passthrough)', () => {
    it('CC-05 ALB passthrough headers are never read, even from the authenticated proxy', async () => {
      const a = await attempt(bed, browser(), 'sc', (url) => {
        const headers = signed9440(url, '', '').filter(([k]) => k === 'Client-Cert-Signature');
        return [...headers, ['X-Amzn-Mtls-Clientcert', escapedPem(bed.pki.users.alice) + escapedPem(bed.pki.issuing)], ['X-Amzn-Mtls-Clientcert-Leaf', escapedPem(bed.pki.users.alice)]];
      });
      await expectRefused(a, /the proxy forwarded no client certificate/);
    });

    it('CC-05 a self-signed chain named like the trusted CAs, and a self-signed card, are refused by the broker\'s own path validation', async () => {
      await expectRefused(await forward(card('fakeAlice'), 'sc', extra.chains.fakeAlice), /no path to a trusted CA/);
      await expectRefused(await forward(card('selfSigned'), 'sc', ''), /no path to a trusted CA/);
    });

    it('CC-05 chain validation cannot be configured away: trust anchors are required, revocation off must be explicit', () => {
      const base = baseUpstream(pki, 'x', { proxy: { format: 'rfc9440', authentication: { hmac: { secrets: [HMAC_SECRET] } } } });
      const { trust: _t, ...withoutTrust } = base;
      expect(smartcardUpstreamSchema.safeParse(withoutTrust).success).toBe(false);
      expect(smartcardUpstreamSchema.safeParse({ ...base, trust: {} }).success).toBe(false);
      expect(smartcardUpstreamSchema.safeParse({ ...base, revocation: {} }).success).toBe(false);
      expect(smartcardUpstreamSchema.safeParse({ ...base, trust: { ...base.trust, extendedKeyUsages: [] } }).success).toBe(false);
      expect(smartcardUpstreamSchema.safeParse(base).success).toBe(true);
    });
  });

  describe('CC-07 validity periods, checked by the broker whatever the proxy did', () => {
    it('CC-07 a card not yet valid is refused', async () => {
      await expectRefused(await forward(card('notYetValid')), /user certificate not yet valid/);
    });
    it('CC-07 a card under an expired intermediate is refused, though the proxy forwarded the intermediate', async () => {
      await expectRefused(await forward(card('underExpiredCa'), 'sc', extra.chains.underExpiredCa), /intermediate certificate expired/);
    });
    it('CC-07 a card under an intermediate not yet valid is refused', async () => {
      await expectRefused(await forward(card('underFutureCa'), 'sc', extra.chains.underFutureCa), /intermediate certificate not yet valid/);
    });
    it('CC-07 an expired card forwarded by a proxy that ignores expiry is refused', async () => {
      await expectRefused(await forward(bed.pki.users.expired), /user certificate expired/);
    });
  });

  describe('CC-08 key usage and extended key usage, whatever their criticality', () => {
    it('[P] CC-08 a card with only the smartcard-logon EKU signs in', async () => {
      expect(await signIn(card('logonOnly'))).toBeTruthy();
    });
    const cases: Array<[string, string, RegExp]> = [
      ['a non-critical keyUsage without digitalSignature', 'kuNonCritical', /keyUsage lacks digitalSignature/],
      ['no keyUsage at all', 'noKeyUsage', /has no keyUsage/],
      ['no extendedKeyUsage at all', 'noEku', /has no extendedKeyUsage/],
      ['an encryption-only card (keyEncipherment, emailProtection)', 'encryptionOnly', /keyUsage lacks digitalSignature/],
      ['a critical EKU of serverAuth only', 'serverCritical', /not for client authentication/],
    ];
    for (const [name, key, reason] of cases) {
      it(`CC-08 ${name} is refused`, async () => {
        await expectRefused(await forward(card(key)), reason);
      });
    }
    it('CC-08 an EKU without clientAuth (serverAuth only) and a keyUsage without digitalSignature from the test PKI are refused', async () => {
      await expectRefused(await forward(bed.pki.users.noClientAuth), /not for client authentication/);
      await expectRefused(await forward(bed.pki.users.noDigitalSignature), /lacks digitalSignature/);
    });
  });

  describe('CC-10 and CC-11 OCSP: fail closed, and only a current, authorised answer about this card counts', () => {
    const viaOcsp = async (mode: OcspMode, up = 'sc-ocsp') => {
      ocsp.mode = mode;
      return forward(bed.pki.users.alice, up);
    };
    it('[P] CC-10 a good answer from the issuer, or from a responder it delegated (OCSPSigning EKU), lets the card in', async () => {
      for (const mode of ['good', 'delegated'] as const) {
        const a = await viaOcsp(mode);
        expect(a.outcome.kind, `${mode}: ${a.reasons}`).toBe('client');
      }
    });
    const closed: Array<[OcspMode, RegExp]> = [
      ['down', /responder unreachable.*HTTP 503/],
      ['slow', /responder unreachable/],
      ['tryLater', /responder answered tryLater/],
      ['unknown', /does not know the certificate/],
      ['revoked', /revoked \(OCSP\)/],
    ];
    for (const [mode, reason] of closed) {
      it(`CC-10 OCSP ${mode}: refused (fail closed)`, async () => {
        const started = Date.now();
        await expectRefused(await viaOcsp(mode), reason);
        expect(Date.now() - started).toBeLessThan(5000);
      });
    }
    it('CC-10 fail-open is an explicit setting: the login passes and a SmartcardRevocationWarning is raised; a revoked card is still refused', async () => {
      const warnings: string[] = [];
      const onWarning = (w: Error) => void (w.name === 'SmartcardRevocationWarning' && warnings.push(w.message));
      process.on('warning', onWarning);
      try {
        const a = await viaOcsp('down', 'sc-ocsp-open');
        expect(a.outcome.kind, a.reasons).toBe('client');
        await new Promise((r) => setTimeout(r, 50));
        expect(warnings.join()).toMatch(/sc-ocsp-open: revocation status unknown.*failOpen: login allowed/);
        await expectRefused(await viaOcsp('revoked', 'sc-ocsp-open'), /revoked \(OCSP\)/);
        expect(smartcardUpstreamSchema.parse(baseUpstream(pki, 'y', { direct: true })).revocation.failOpen).toBe(false);
      } finally {
        process.off('warning', onWarning);
      }
    });
    const bad: Array<[OcspMode, RegExp]> = [
      ['rogue', /unauthorised responder/],
      ['delegated-no-eku', /unauthorised responder/],
      ['stale', /stale response/],
      ['wrong-nonce', /nonce missing or mismatched/],
      ['other-serial', /response is for another certificate/],
    ];
    for (const [mode, reason] of bad) {
      it(`CC-11 OCSP answer ${mode}: refused`, async () => {
        await expectRefused(await viaOcsp(mode), reason);
      });
    }
  });

  describe('CC-13 the subject is read from parsed DER, exactly', () => {
    let aliceByUid: string;
    let aliceByCn: string;
    beforeAll(async () => {
      aliceByUid = await signIn(bed.pki.users.alice);
      aliceByCn = await signIn(bed.pki.users.alice, 'sc-cn');
    });
    it('CC-13 a CN holding ",O=Admins" (plain or escaped) is one opaque value: a different account, never the victim\'s', async () => {
      for (const key of ['cnInjection', 'cnEscaped']) {
        const sub = await signIn(card(key), 'sc-cn');
        expect(sub, key).not.toBe(aliceByCn);
      }
    });
    it('CC-13 text that looks like a UID inside the CN does not change the UID the account is keyed on', async () => {
      expect(await signIn(card('uidInCn'))).not.toBe(aliceByUid);
    });
    it('CC-13 a homoglyph CN is another account; full-width digits fail the UID pattern', async () => {
      expect(await signIn(card('homoglyphCn'), 'sc-cn')).not.toBe(aliceByCn);
      await expectRefused(await forward(card('fullwidthUid')), /does not match the subject pattern/);
    });
    it('CC-13 a NUL byte in the UID and a duplicate CN are refused', async () => {
      await expectRefused(await forward(card('nulInUid')), /control characters|does not match the subject pattern/);
      await expectRefused(await forward(card('twoCns'), 'sc-cn'), /2 values of subject CN/);
    });
    it('CC-13 a DN in text (the XFCC Subject= field) is never read: the certificate decides', async () => {
      const bob = bed.pki.users.bob;
      const alice = await signInXfcc(`By=${XFCC_BY};Cert="${escapedPem(bed.pki.users.alice)}"`);
      const plainBob = await signInXfcc(`By=${XFCC_BY};Cert="${escapedPem(bob)}"`);
      const spoofed = await signInXfcc(`By=${XFCC_BY};Cert="${escapedPem(bob)}";Subject="CN=Alice Example,0.9.2342.19200300.100.1.1=555000000001"`);
      expect(spoofed).toBe(plainBob);
      expect(spoofed).not.toBe(alice);
    });
  });

  describe('CC-14 subject alternative names', () => {
    it('CC-14 several UPN SANs, or several e-mail SANs, are refused as ambiguous', async () => {
      await expectRefused(await forward(card('twoUpns'), 'sc-upn'), /2 values of UPN SAN/);
      await expectRefused(await forward(card('twoEmails'), 'sc-email'), /2 values of e-mail SAN/);
    });
    it('CC-14 the same UPN from a second trusted CA is another account (subjects scoped to their issuing CA)', async () => {
      const first = await signIn(card('upnAlice'), 'sc-upn');
      const second = await signIn(card('upnAliceOtherCa'), 'sc-upn', extra.chains.upnAliceOtherCa);
      expect(second).not.toBe(first);
      // The same card again: the same account (the mapping is stable).
      expect(await signIn(card('upnAlice'), 'sc-upn')).toBe(first);
    });
    it('CC-14 a UPN with a trailing $ fails the configured pattern', async () => {
      await expectRefused(await forward(card('upnDollar'), 'sc-upn-pattern'), /does not match the subject pattern/);
    });
    it('CC-14 a UPN naming another user does not matter where the UID is the source: the card is the UID\'s owner', async () => {
      const alice = await signIn(bed.pki.users.alice);
      const mixed = await signIn(card('bobUidAliceUpn'));
      expect(mixed).not.toBe(alice);
      expect(mixed).toBe(await signIn(bed.pki.users.bob));
    });
    it('CC-14 issuer-serial mapping: a second card with the same names and UID is a second account', async () => {
      const first = await signIn(bed.pki.users.alice, 'sc-issuer-serial');
      expect(await signIn(card('aliceTwin'), 'sc-issuer-serial')).not.toBe(first);
      expect(await signIn(bed.pki.users.alice, 'sc-issuer-serial')).toBe(first);
    });
  });

  describe('CC-19 tls_client_auth', () => {
    it('CC-19 discovery offers no certificate client authentication, and a card on the TLS connection authenticates no client', async () => {
      const b = browser(bed.pki.users.alice);
      const d = (await (await b.get(`${bed.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
      expect(d.token_endpoint_auth_methods_supported).not.toContain('tls_client_auth');
      expect(d.token_endpoint_auth_methods_supported).not.toContain('self_signed_tls_client_auth');
      expect(d.tls_client_certificate_bound_access_tokens).toBeUndefined();
      const before = await bed.counts();
      for (const client_id of ['web', 'svc']) {
        const res = await b.postForm(`${bed.issuer}/token`, { grant_type: 'client_credentials', client_id });
        const body = (await res.json()) as Record<string, unknown>;
        expect(res.status, client_id).toBe(401);
        expect(body.error).toBe('invalid_client');
        expect(body.access_token).toBeUndefined();
      }
      expect(await bed.counts()).toEqual(before);
    });

    it('CC-19 a client configured for tls_client_auth or self_signed_tls_client_auth is refused at configuration load, naming the path', async () => {
      const svcKey = await clientKey();
      for (const method of ['tls_client_auth', 'self_signed_tls_client_auth'] as const) {
        const base = testConfig(0, 'sqlite::memory:', svcKey);
        const clients = [...base.clients!, { client_id: 'mtls-app', token_endpoint_auth_method: method, grant_types: ['client_credentials'] }];
        let problems: string[] = [];
        try {
          parseConfig({ ...base, clients }, {});
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          problems = (err as ConfigError).problems;
        }
        expect(problems).toEqual([`clients[${clients.length - 1}].token_endpoint_auth_method: ${method} is not supported: the broker has no mTLS client authentication (use private_key_jwt)`]);
      }
    });
  });

  describe('CC-22 a card revoked after sign-in', () => {
    /** A smartcard sign-in (alice) through `up` in a browser of its own, which keeps the broker session. */
    const signedIn = async (up: string): Promise<RecordingBrowser> => {
      const b = new RecordingBrowser(bed.pki);
      browsers.push(b);
      const a = await attempt(bed, b, up, (url) => signed9440(url, sf(bed.pki.users.alice), sf(bed.pki.issuing)));
      expect(a.outcome.kind, a.reasons).toBe('client');
      return b;
    };
    /** A new authorization in `b`, no card presented: a code at once (the session reused), or a page. */
    const again = async (b: TlsBrowser) => {
      const since = bed.logs.length;
      const auth = await bed.authorizationUrl();
      const outcome = await bed.follow(b, await b.get(auth.url), auth.url);
      return { outcome, reasons: bed.reasons(since).join(' | '), logs: JSON.stringify(bed.logs.slice(since)) };
    };
    const expectSignInAsked = (r: Awaited<ReturnType<typeof again>>) => {
      expect(r.outcome.kind, r.reasons).toBe('page');
      // The sign-in chooser (the card is asked for again), not an error page.
      if (r.outcome.kind === 'page') expect(r.outcome.html).toContain('name="upstream"');
    };

    let signedInBrowser: RecordingBrowser | undefined;
    it('CC-22 the session cookie of a smartcard sign-in ends with the browser; the revoked card is refused at the next login', async () => {
      ocsp.mode = 'good';
      const b = new RecordingBrowser(bed.pki);
      browsers.push(b);
      const a = await attempt(bed, b, 'sc-ocsp', (url) => signed9440(url, sf(bed.pki.users.alice), sf(bed.pki.issuing)));
      expect(a.outcome.kind, a.reasons).toBe('client');
      const session = b.setCookies.filter((c) => c.startsWith('__Host-session='));
      expect(session.length).toBeGreaterThan(0);
      for (const c of session) expect(c).not.toMatch(/expires=|max-age=/i);
      ocsp.mode = 'revoked';
      await expectRefused(await forward(bed.pki.users.alice, 'sc-ocsp'), /revoked \(OCSP\)/);
      signedInBrowser = b;
    });

    it('CC-22 the same browser, after its card was revoked, gets no new code without a fresh login: the re-check ends its session', async () => {
      expect(signedInBrowser).toBeDefined();
      ocsp.mode = 'revoked';
      const before = await bed.counts();
      const r = await again(signedInBrowser!);
      expectSignInAsked(r);
      expect(r.reasons).toMatch(/session re-check: user certificate certificate revoked \(OCSP\)/);
      expect((await bed.counts()).codes).toBe(before.codes);
      // Nothing about the card's holder in what was logged.
      expect(r.logs).not.toMatch(/Alice|555000000001/);
      // Ended for good: a responder answering "good" again does not revive it.
      ocsp.mode = 'good';
      expectSignInAsked(await again(signedInBrowser!));
    });

    it('[P] CC-22 while the card is good and the session young, the same browser gets a code without presenting it again, after a fresh OCSP answer', async () => {
      ocsp.mode = 'good';
      const b = await signedIn('sc-ocsp');
      const hits = ocsp.hits;
      const r = await again(b);
      expect(r.outcome.kind, r.reasons).toBe('client');
      expect(ocsp.hits).toBeGreaterThan(hits);
    });

    it('CC-22 a responder that cannot be reached ends the session (fail closed); under failOpen it is reused, with a warning', async () => {
      ocsp.mode = 'good';
      const closed = await signedIn('sc-ocsp');
      const open = await signedIn('sc-ocsp-open');
      const warnings: string[] = [];
      const onWarning = (w: Error) => void (w.name === 'SmartcardRevocationWarning' && warnings.push(w.message));
      process.on('warning', onWarning);
      try {
        ocsp.mode = 'down';
        const c = await again(closed);
        expectSignInAsked(c);
        expect(c.reasons).toMatch(/session re-check: revocation status unknown/);
        expect((await again(open)).outcome.kind).toBe('client');
        await new Promise((r) => setImmediate(r));
        expect(warnings.join()).toMatch(/sc-ocsp-open: revocation status unknown/);
      } finally {
        process.off('warning', onWarning);
        ocsp.mode = 'good';
      }
    });

    it('CC-22 a session older than the upstream\'s maxSessionAgeSeconds is not reused, the card being good', async () => {
      const b = await signedIn('sc-brief');
      await new Promise((r) => setTimeout(r, 2100));
      const r = await again(b);
      expectSignInAsked(r);
      expect(r.reasons).toMatch(/maximum session age/);
    });

    it('CC-22 what a session keeps for its re-check is the card\'s serial, expiry, responder and issuing CAs: no personal data', async () => {
      await signedIn('sc-ocsp');
      const { DatabaseSync } = await import('node:sqlite');
      const db = new DatabaseSync(bed.broker.config.store.slice('sqlite:'.length), { readOnly: true });
      let rows: Array<{ payload: string }>;
      try {
        rows = db.prepare("SELECT payload FROM oidc_models WHERE model = 'SessionRecheck'").all() as Array<{ payload: string }>;
      } finally {
        db.close();
      }
      expect(rows.length).toBeGreaterThan(0);
      // No session of any card holder signed in so far keeps a name, UID or e-mail address.
      for (const { payload } of rows) expect(payload).not.toMatch(/Alice|Example|555000\d{6}|@/);
      type Kept = { connectorId: string; loginTs: number; ended?: string; recheck: { serial: string; issuers: string[]; notAfter: number } };
      // The newest live session through sc-ocsp: the sign-in just made (alice's card).
      const [record] = rows.map((r) => JSON.parse(r.payload) as Kept).filter((r) => r.connectorId === 'sc-ocsp' && !r.ended).sort((a, b) => b.loginTs - a.loginTs);
      expect(record).toBeDefined();
      expect(Object.keys(record.recheck)).toEqual(expect.arrayContaining(['issuers', 'notAfter', 'serial']));
      expect(record.recheck.serial).toBe(bed.pki.users.alice.cert.serialNumber);
      expect(record.recheck.issuers).toEqual([der(bed.pki.issuing).toString('base64url'), der(bed.pki.root).toString('base64url')]);
    });
  });

  describe('CC-16 and CC-17 XFCC from an Envoy-like proxy', () => {
    const pem = () => escapedPem(bed.pki.users.alice);
    const hashOf = (u: Issued) => createHash('sha256').update(der(u)).digest('hex');
    it('CC-16 a quoted value holding ;Cert= and , stays inside its field: one element, the real Cert decides', async () => {
      const bobSub = await signInXfcc(`By=${XFCC_BY};Cert="${escapedPem(bed.pki.users.bob)}"`);
      const aliceSub = await signInXfcc(`By=${XFCC_BY};Cert="${pem()}"`);
      const injected = await signInXfcc(`By=${XFCC_BY};Cert="${escapedPem(bed.pki.users.bob)}";Subject="CN=x;Cert=${pem()},By=${XFCC_BY}"`);
      expect(injected).toBe(bobSub);
      expect(injected).not.toBe(aliceSub);
    });
    it('CC-16 no By= where one is required, Cert= twice, or a second element are refused', async () => {
      const cases: Array<[string, RegExp]> = [
        [`Cert="${pem()}"`, /By= is not this broker/],
        [`By=${XFCC_BY};Cert="${pem()}";Cert="${escapedPem(bed.pki.users.bob)}"`, /XFCC element not understood/],
        [`By=${XFCC_BY};Cert="${pem()}",By=spiffe://elsewhere;Cert="${escapedPem(bed.pki.users.bob)}"`, /XFCC has 2 elements/],
        [`By=${XFCC_BY};By=${XFCC_BY};Cert="${pem()}"`, /XFCC element not understood/],
      ];
      for (const [value, reason] of cases) await expectRefused(await attempt(bed, browser(), 'sc-xfcc', (url) => signedXfcc(url, value)), reason);
    });
    it('CC-17 a Hash of another certificate than Cert is refused', async () => {
      const value = `By=${XFCC_BY};Hash=${hashOf(bed.pki.users.bob)};Cert="${pem()}"`;
      await expectRefused(await attempt(bed, browser(), 'sc-xfcc', (url) => signedXfcc(url, value)), /Hash does not match Cert/);
    });
  });
});
