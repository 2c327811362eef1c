import { describe, it, expect } from 'vitest';
import { smartcardUpstreamSchema, type SmartcardUpstreamInput } from '../../../src/config/upstream-smartcard.ts';

// The smartcard upstream settings refuse what would be unsafe or ambiguous at start-up, not at login.

const base: SmartcardUpstreamInput = {
  id: 'sc',
  displayName: 'Smartcard',
  type: 'smartcard',
  trust: { caFile: '/ca.pem' },
  revocation: { crl: { sources: [{ file: '/crl.pem' }] } },
  proxy: { format: 'nginx', authentication: { mtls: { caFile: '/proxy-ca.pem' } } },
  subject: { from: 'uid' },
};

function problems(input: unknown): string[] {
  const r = smartcardUpstreamSchema.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('smartcard upstream configuration', () => {
  it('applies defaults: per-format header names, fail-closed revocation, amr sc, clientAuth / smartcard-logon EKUs', () => {
    const c = smartcardUpstreamSchema.parse(base);
    expect(c.proxy?.header).toBe('x-ssl-client-cert');
    expect(c.revocation.failOpen).toBe(false);
    expect(c.assurance.amr).toEqual(['sc']);
    expect(c.trust.extendedKeyUsages).toEqual(['1.3.6.1.5.5.7.3.2', '1.3.6.1.4.1.311.20.2.2']);
    expect(c.direct).toBe(false);
    const rfc = smartcardUpstreamSchema.parse({ ...base, proxy: { format: 'rfc9440', authentication: { hmac: { secrets: ['x'.repeat(32)] } } } });
    expect(rfc.proxy).toMatchObject({ header: 'client-cert', chainHeader: 'client-cert-chain', authentication: { hmac: { header: 'client-cert-signature', windowSeconds: 60 } } });
    expect(smartcardUpstreamSchema.parse({ ...base, proxy: { format: 'xfcc', authentication: { hmac: { secrets: ['x'.repeat(32)] } } } }).proxy?.header).toBe('x-forwarded-client-cert');
  });

  it('refuses an unknown header format', () => {
    expect(problems({ ...base, proxy: { format: 'apache', authentication: { mtls: { caFile: '/p.pem' } } } }).join()).toMatch(/proxy.format/);
  });

  it('refuses a proxy that does not authenticate itself (mtls or hmac); an address list alone is not enough', () => {
    expect(problems({ ...base, proxy: { format: 'nginx', authentication: { allowedSources: ['10.0.0.1'] } } }).join()).toMatch(/must authenticate itself/);
  });

  it('refuses short HMAC keys, bad address ranges and header names with underscores', () => {
    expect(problems({ ...base, proxy: { format: 'rfc9440', authentication: { hmac: { secrets: ['short'] } } } }).join()).toMatch(/secrets/);
    expect(problems({ ...base, proxy: { format: 'nginx', authentication: { mtls: { caFile: '/p' }, allowedSources: ['10.0.0.0/33'] } } }).join()).toMatch(/CIDR/);
    expect(problems({ ...base, proxy: { format: 'nginx', header: 'x_ssl_client_cert', authentication: { mtls: { caFile: '/p' } } } }).join()).toMatch(/header/);
  });

  it('refuses options that do not fit the format', () => {
    expect(problems({ ...base, proxy: { format: 'nginx', chainHeader: 'client-cert-chain', authentication: { mtls: { caFile: '/p' } } } }).join()).toMatch(/rfc9440 format only/);
    expect(problems({ ...base, proxy: { format: 'rfc9440', verifyHeader: 'x-verify', authentication: { mtls: { caFile: '/p' } } } }).join()).toMatch(/nginx format only/);
    expect(problems({ ...base, proxy: { format: 'nginx', xfccBy: ['x'], authentication: { mtls: { caFile: '/p' } } } }).join()).toMatch(/xfcc format only/);
  });

  it('needs a certificate source: direct, a proxy, or both', () => {
    const { proxy: _proxy, ...noProxy } = base;
    expect(problems(noProxy).join()).toMatch(/direct/);
    expect(problems({ ...noProxy, direct: true })).toEqual([]);
  });

  it('needs revocation checking unless it is switched off explicitly', () => {
    expect(problems({ ...base, revocation: {} }).join()).toMatch(/revocation\.crl and\/or revocation\.ocsp/);
    expect(problems({ ...base, revocation: { disabled: true } })).toEqual([]);
    expect(problems({ ...base, revocation: { disabled: true, crl: { sources: [{ file: '/c' }] } } }).join()).toMatch(/disabled/);
  });

  it('refuses an amr without sc, an AAL out of range, a bad subject pattern and a bad policy OID', () => {
    expect(problems({ ...base, assurance: { amr: ['pwd'] } }).join()).toMatch(/sc/);
    expect(problems({ ...base, assurance: { aal: 4 } }).join()).toMatch(/aal/);
    expect(problems({ ...base, subject: { from: 'uid', pattern: '(' } }).join()).toMatch(/regular expression/);
    expect(problems({ ...base, subject: { from: 'dn' } }).join()).toMatch(/subject.from/);
    expect(problems({ ...base, trust: { caFile: '/c', policies: ['not.an.oid'] } }).join()).toMatch(/object identifier/);
  });
});
