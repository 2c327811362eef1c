import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import type { Issued } from '../../peers/pki.ts';
import { baseUpstream, GENERIC, startBed, TlsBrowser, type Bed, type Outcome } from './harness.ts';

// Direct mutual TLS: no proxy; the browser presents its smartcard certificate to the broker itself
// (HTTPS with tls.requestCert), and the connector reads it from the TLS socket. The issuer is the
// broker's own HTTPS origin and openid-client talks to it directly.

function refused(outcome: Outcome): void {
  expect(outcome.kind).toBe('page');
  if (outcome.kind !== 'page') return;
  expect(outcome.status).toBe(401);
  expect(outcome.html).toContain(GENERIC);
}

describe('smartcard login by direct mutual TLS to the broker', () => {
  let bed: Bed;
  const browsers: TlsBrowser[] = [];
  const browser = (user?: Issued, withChain = false) => {
    const b = new TlsBrowser(bed.pki, user, { withChain });
    browsers.push(b);
    return b;
  };

  beforeAll(async () => {
    bed = await startBed({
      nginx: false,
      upstreams: (pki) => [
        baseUpstream(pki, 'smartcard-direct', { direct: true }),
        // Proxy-only: a certificate on the broker's own TLS connection is not enough.
        baseUpstream(pki, 'smartcard-proxied', { proxy: { format: 'nginx', authentication: { mtls: { caFile: pki.files.proxyCa } } } }),
      ],
    });
  });

  afterAll(async () => {
    for (const b of browsers) await b.close();
    await bed?.close();
  });

  it('signs in with the valid certificate, end to end', async () => {
    const before = await bed.counts();
    const l = await bed.login(browser(bed.pki.users.alice), 'smartcard-direct');
    const claims = await bed.redeem(l.outcome, l);
    expect(claims.iss).toBe(bed.brokerUrl);
    expect(claims.acr).toBe('AAL3_SMARTCARD');
    expect(claims.amr).toEqual(['sc']);
    expect((await bed.counts()).accounts).toBe(before.accounts + 1);
  });

  it('also when the browser sends the chain with its certificate', async () => {
    const l = await bed.login(browser(bed.pki.users.bob, true), 'smartcard-direct');
    expect((await bed.redeem(l.outcome, l)).sub).toBeTruthy();
  });

  for (const [name, pick, reason] of [
    ['expired', (b: Bed) => b.pki.users.expired, /expired/],
    ['revoked', (b: Bed) => b.pki.users.revoked, /revoked/],
    ['from another CA', (b: Bed) => b.pki.users.foreign, /no path/],
    ['without clientAuth', (b: Bed) => b.pki.users.noClientAuth, /client authentication/],
  ] as const) {
    it(`refuses a certificate ${name}, creating nothing`, async () => {
      const before = await bed.counts();
      const since = bed.logs.length;
      const { outcome } = await bed.login(browser(pick(bed)), 'smartcard-direct');
      refused(outcome);
      expect(bed.reasons(since).join(' | ')).toMatch(reason);
      expect(await bed.counts()).toEqual(before);
    });
  }

  it('refuses a browser without a certificate', async () => {
    const since = bed.logs.length;
    refused((await bed.login(browser(), 'smartcard-direct')).outcome);
    expect(bed.reasons(since).join(' | ')).toMatch(/no client certificate presented/);
  });

  it('refuses a forwarded-certificate header on a direct connection, as spoofing, even with a valid card', async () => {
    const b = browser(bed.pki.users.bob);
    const since = bed.logs.length;
    const { outcome } = await bed.login(b, 'smartcard-direct', (url) => b.get(url.href, { 'X-SSL-Client-Cert': encodeURIComponent(bed.pki.users.alice.certPem) }));
    refused(outcome);
    expect(bed.reasons(since).join(' | ')).toMatch(/spoofing suspected/);
  });

  it('a proxy-only upstream does not take the certificate from the broker\'s own TLS connection', async () => {
    const since = bed.logs.length;
    refused((await bed.login(browser(bed.pki.users.alice), 'smartcard-proxied')).outcome);
    expect(bed.reasons(since).join(' | ')).toMatch(/needs the smartcard proxy/);
  });
});
