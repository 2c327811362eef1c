import { createHash } from 'node:crypto';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { nginxAvailable } from '../../peers/nginx.ts';
import type { Issued } from '../../peers/pki.ts';
import { signForwarded } from '../../../providers/smartcard/index.ts';
import { baseUpstream, GENERIC, HMAC_SECRET, startBed, TlsBrowser, XFCC_BY, type Bed, type Outcome } from './harness.ts';

// Smartcard logins through a real TLS proxy: Debian's nginx asks the browser for its certificate,
// forwards it to the broker in a header and authenticates itself to the broker with its own client
// certificate. The relying party is openid-client, talking to the broker through nginx (the issuer).
// Bad certificates, spoofed headers, forged or replayed signatures and malformed or oversized
// headers must all end on the broker's generic 401 page, never a 500, with nothing created.

const available = nginxAvailable();

function refused(outcome: Outcome): void {
  expect(outcome.kind).toBe('page');
  if (outcome.kind !== 'page') return;
  expect(outcome.status).toBe(401);
  expect(outcome.html).toContain(GENERIC);
}

const der = (u: Issued) => Buffer.from(u.cert.rawData);
const sf = (u: Issued) => `:${der(u).toString('base64')}:`;
const escapedPem = (u: Issued) => encodeURIComponent(u.certPem);

describe.skipIf(!available)('smartcard login through nginx (mTLS proxy hop)', () => {
  let bed: Bed;
  let aliceSub: string;
  const browsers: TlsBrowser[] = [];
  const browser = (user?: Issued, options?: ConstructorParameters<typeof TlsBrowser>[2]) => {
    const b = new TlsBrowser(bed.pki, user, options);
    browsers.push(b);
    return b;
  };

  beforeAll(async () => {
    bed = await startBed({
      nginx: true,
      upstreams: (pki) => {
        const mtls = { mtls: { caFile: pki.files.proxyCa, allowedNames: ['smartcard-proxy'] }, allowedSources: ['127.0.0.1/32', '::1/128'] };
        return [
          // The deployment form: nginx's verification result must be SUCCESS, and the broker re-validates.
          baseUpstream(pki, 'smartcard', { proxy: { format: 'nginx', verifyHeader: 'x-ssl-client-verify', authentication: mtls } }),
          // Without the verification header, so the broker's own checks are what refuses.
          baseUpstream(pki, 'smartcard-nv', { proxy: { format: 'nginx', authentication: mtls } }),
          // A signing proxy (played by the test), RFC 9440 headers, the chain from the header only.
          baseUpstream(pki, 'smartcard-hmac', {
            trust: { caFile: pki.files.smartcardRoots },
            proxy: { format: 'rfc9440', authentication: { hmac: { secrets: [HMAC_SECRET] }, allowedSources: ['127.0.0.1/32', '::1/128'] } },
          }),
          baseUpstream(pki, 'smartcard-xfcc', { proxy: { format: 'xfcc', xfccBy: [XFCC_BY], authentication: { hmac: { secrets: [HMAC_SECRET] } } } }),
        ];
      },
    });
  });

  afterAll(async () => {
    for (const b of browsers) await b.close();
    await bed?.close();
  });

  it('signs in with a valid smartcard certificate, end to end (openid-client through nginx)', async () => {
    const before = await bed.counts();
    const l = await bed.login(browser(bed.pki.users.alice), 'smartcard');
    const claims = await bed.redeem(l.outcome, l);
    expect(claims.iss).toBe(bed.issuer);
    expect(claims.acr).toBe('AAL3_SMARTCARD');
    expect(claims.amr).toEqual(['sc']);
    aliceSub = claims.sub;
    const after = await bed.counts();
    expect(after.accounts).toBe(before.accounts + 1);
    // The same card again: the same account.
    const again = await bed.login(browser(bed.pki.users.alice), 'smartcard');
    expect((await bed.redeem(again.outcome, again)).sub).toBe(aliceSub);
    expect((await bed.counts()).accounts).toBe(after.accounts);
  });

  describe('bad certificates are refused with the generic page and nothing is created', () => {
    const cases: Array<[string, (b: Bed) => Issued, RegExp]> = [
      ['expired', (b) => b.pki.users.expired, /expired/],
      ['revoked in the CRL', (b) => b.pki.users.revoked, /revoked/],
      ['from another CA (same issuer name)', (b) => b.pki.users.foreign, /no path to a trusted CA/],
      ['without the clientAuth EKU', (b) => b.pki.users.noClientAuth, /client authentication/],
      ['without digitalSignature key usage', (b) => b.pki.users.noDigitalSignature, /digitalSignature/],
      ['with two UIDs', (b) => b.pki.users.twoUids, /2 values of subject UID/],
    ];
    for (const [name, user, reason] of cases) {
      it(`${name}: the broker's own validation refuses it`, async () => {
        const before = await bed.counts();
        const since = bed.logs.length;
        const { outcome } = await bed.login(browser(user(bed)), 'smartcard-nv');
        refused(outcome);
        expect(bed.reasons(since).join(' | ')).toMatch(reason);
        expect(await bed.counts()).toEqual(before);
      });
    }
    for (const [name, user] of cases.slice(0, 5)) {
      it(`${name}: refused where nginx reports a failed verification too`, async () => {
        const before = await bed.counts();
        const { outcome } = await bed.login(browser(user(bed)), 'smartcard');
        refused(outcome);
        expect(await bed.counts()).toEqual(before);
      });
    }

    it('no certificate at all', async () => {
      const since = bed.logs.length;
      const { outcome } = await bed.login(browser(), 'smartcard');
      refused(outcome);
      expect(bed.reasons(since).join(' | ')).toMatch(/no client certificate/);
    });
  });

  describe('header spoofing', () => {
    it('through nginx, a client-sent copy of the headers is replaced by the proxy (CC-02)', async () => {
      // Alice's card on the TLS connection, Bob's certificate in every header form the client could forge.
      const bob = bed.pki.users.bob;
      const b = browser(bed.pki.users.alice);
      const l = await bed.login(b, 'smartcard', (url) =>
        b.get(url.href, [
          ['X-SSL-Client-Cert', escapedPem(bob)],
          ['X-SSL-Client-Verify', 'SUCCESS'],
          ['Client-Cert', sf(bob)],
          ['X_SSL_Client_Cert', escapedPem(bob)],
          ['x-forwarded-client-cert', `Cert="${escapedPem(bob)}"`],
        ]),
      );
      expect((await bed.redeem(l.outcome, l)).sub).toBe(aliceSub);
    });

    const direct = async (headers: Array<[string, string]>, user?: Issued, upstream = 'smartcard') => {
      const attacker = browser(user);
      const before = await bed.counts();
      const since = bed.logs.length;
      const { outcome } = await bed.login(attacker, upstream, (url) => attacker.get(`${bed.brokerUrl}${url.pathname}${url.search}`, headers));
      refused(outcome);
      expect(await bed.counts()).toEqual(before);
      return bed.reasons(since).join(' | ');
    };

    it('the same headers sent straight to the broker, without a client certificate, are refused and reported as spoofing (CC-01)', async () => {
      expect(await direct([['X-SSL-Client-Cert', escapedPem(bed.pki.users.alice)], ['X-SSL-Client-Verify', 'SUCCESS']])).toMatch(/spoofing suspected/);
    });

    it('… and with a valid smartcard (not the proxy) on the connection', async () => {
      expect(await direct([['X-SSL-Client-Cert', escapedPem(bed.pki.users.alice)], ['X-SSL-Client-Verify', 'SUCCESS']], bed.pki.users.bob)).toMatch(/spoofing suspected/);
    });

    it('… in the RFC 9440 form, the XFCC form and with an underscore name', async () => {
      expect(await direct([['Client-Cert', sf(bed.pki.users.alice)]])).toMatch(/spoofing suspected/);
      expect(await direct([['x-forwarded-client-cert', `Cert="${escapedPem(bed.pki.users.alice)}"`]])).toMatch(/spoofing suspected/);
      expect(await direct([['x_ssl_client_cert', escapedPem(bed.pki.users.alice)]])).toMatch(/spoofing suspected/);
    });
  });

  describe('a signing proxy (HMAC over certificate, time and path)', () => {
    const signed = (url: URL, cert: string, chain: string, opts: { secret?: string; t?: number; path?: string } = {}): Array<[string, string]> => {
      const t = opts.t ?? Math.floor(Date.now() / 1000);
      const path = opts.path ?? `${url.pathname}${url.search}`;
      return [
        ['Client-Cert', cert],
        ...(chain ? [['Client-Cert-Chain', chain] as [string, string]] : []),
        ['Client-Cert-Signature', signForwarded(opts.secret ?? HMAC_SECRET, t, path, [cert, chain])],
      ];
    };
    const viaSigner = async (user: Issued | undefined, make: (url: URL) => Array<[string, string]>, upstream = 'smartcard-hmac') => {
      const b = browser(user);
      const before = await bed.counts();
      const since = bed.logs.length;
      let sent: Array<[string, string]> = [];
      let target = '';
      const l = await bed.login(b, upstream, (url) => {
        sent = make(url);
        target = `${bed.brokerUrl}${url.pathname}${url.search}`;
        return b.get(target, sent);
      });
      return { l, before, reasons: bed.reasons(since).join(' | '), sent, target, browser: b };
    };
    const alice = () => sf(bed.pki.users.alice);
    const chain = () => sf(bed.pki.issuing);

    it('a correctly signed RFC 9440 header logs in (intermediate from Client-Cert-Chain)', async () => {
      const { l } = await viaSigner(undefined, (url) => signed(url, alice(), chain()));
      const claims = await bed.redeem(l.outcome, l);
      expect(claims.acr).toBe('AAL3_SMARTCARD');
    });

    it('without the chain header the path cannot be built', async () => {
      const { l, reasons } = await viaSigner(undefined, (url) => signed(url, alice(), ''));
      refused(l.outcome);
      expect(reasons).toMatch(/no path/);
    });

    it('a forged signature is refused as spoofing', async () => {
      const { l, before, reasons } = await viaSigner(undefined, (url) => signed(url, alice(), chain(), { secret: 'not-the-shared-secret-0123456789-xyz' }));
      refused(l.outcome);
      expect(reasons).toMatch(/spoofing suspected.*forged proxy signature/);
      expect(await bed.counts()).toEqual(before);
    });

    it('a signature over another path is refused', async () => {
      const { l, reasons } = await viaSigner(undefined, (url) => signed(url, alice(), chain(), { path: '/upstream/smartcard-hmac/callback?state=other' }));
      refused(l.outcome);
      expect(reasons).toMatch(/forged proxy signature/);
    });

    it('a signature outside its time window is refused', async () => {
      const { l, reasons } = await viaSigner(undefined, (url) => signed(url, alice(), chain(), { t: Math.floor(Date.now() / 1000) - 600 }));
      refused(l.outcome);
      expect(reasons).toMatch(/time window/);
    });

    it('a replayed signed header is refused', async () => {
      const first = await viaSigner(undefined, (url) => signed(url, alice(), chain()));
      expect(first.l.outcome.kind).toBe('client');
      // The captured request again, as is: the signature (and the login transaction) is used up.
      const before = await bed.counts();
      const res = await first.browser.get(first.target, first.sent);
      expect(res.status).toBe(401);
      expect(await res.text()).toContain(GENERIC);
      expect(await bed.counts()).toEqual(before);
      // The same signed headers on a fresh login transaction: the signature covers the path, so it fails.
      const again = await viaSigner(undefined, () => first.sent);
      refused(again.l.outcome);
      expect(again.reasons).toMatch(/forged proxy signature|replayed/);
    });

    it('two certificates in one header, duplicated headers, malformed PEM/DER and an oversized header are refused (none a 500)', async () => {
      const bob = sf(bed.pki.users.bob);
      const two = await viaSigner(undefined, (url) => signed(url, `${alice()}, ${bob}`, chain()));
      refused(two.l.outcome);
      expect(two.reasons).toMatch(/several certificates/);

      // Two Client-Cert header lines (undici would fold them into one; node:https keeps them apart).
      const b = browser();
      const c = await bed.toCallback(b, 'smartcard-hmac');
      const since = bed.logs.length;
      const lines = signed(c.callback, alice(), chain()).flat();
      const dup = await b.rawGet(`${bed.brokerUrl}${c.callback.pathname}${c.callback.search}`, [...lines, 'Client-Cert', bob]);
      expect(dup.status).toBe(401);
      expect(dup.body).toContain(GENERIC);
      expect(bed.reasons(since).join(' | ')).toMatch(/appears 2 times/);

      const garbage = await viaSigner(undefined, (url) => signed(url, ':bm90IGEgY2VydGlmaWNhdGU=:', chain()));
      refused(garbage.l.outcome);
      expect(garbage.reasons).toMatch(/malformed certificate/);

      const notSf = await viaSigner(undefined, (url) => signed(url, bed.pki.users.alice.certPem.replace(/\n/g, ' '), chain()));
      refused(notSf.l.outcome);
      expect(notSf.reasons).toMatch(/not an RFC 9440 byte sequence/);

      const truncated = await viaSigner(undefined, (url) => signed(url, `:${der(bed.pki.users.alice).subarray(0, 200).toString('base64')}:`, chain()));
      refused(truncated.l.outcome);
      expect(truncated.reasons).toMatch(/malformed certificate/);

      const huge = `:${Buffer.alloc(9000, 1).toString('base64')}:`;
      const big = await viaSigner(undefined, (url) => signed(url, huge, chain()));
      refused(big.l.outcome);
      expect(big.reasons).toMatch(/larger than 8192 bytes/);
    });

    it('XFCC: one element from our proxy with a matching hash logs in; several elements, a wrong hash or a foreign By= do not', async () => {
      const pem = escapedPem(bed.pki.users.alice);
      const hash = createHash('sha256').update(der(bed.pki.users.alice)).digest('hex');
      const xfcc = (value: string) => (url: URL): Array<[string, string]> => [
        ['x-forwarded-client-cert', value],
        ['client-cert-signature', signForwarded(HMAC_SECRET, Math.floor(Date.now() / 1000), `${url.pathname}${url.search}`, [value])],
      ];
      const good = await viaSigner(undefined, xfcc(`By=${XFCC_BY};Hash=${hash};Cert="${pem}";Subject="CN=Alice Example,O=Test Health"`), 'smartcard-xfcc');
      expect((await bed.redeem(good.l.outcome, good.l)).sub).toBeTruthy();

      const several = await viaSigner(undefined, xfcc(`By=${XFCC_BY};Hash=${hash};Cert="${pem}",By=${XFCC_BY};Hash=${hash};Cert="${pem}"`), 'smartcard-xfcc');
      refused(several.l.outcome);
      expect(several.reasons).toMatch(/2 elements/);

      const wrongHash = await viaSigner(undefined, xfcc(`By=${XFCC_BY};Hash=${'0'.repeat(64)};Cert="${pem}"`), 'smartcard-xfcc');
      refused(wrongHash.l.outcome);
      expect(wrongHash.reasons).toMatch(/Hash does not match/);

      const foreignBy = await viaSigner(undefined, xfcc(`By=spiffe://elsewhere/broker;Hash=${hash};Cert="${pem}"`), 'smartcard-xfcc');
      refused(foreignBy.l.outcome);
      expect(foreignBy.reasons).toMatch(/By= is not this broker/);
    });
  });
});
