import type { SmartcardUpstreamConfig } from '../../src/config/upstream-smartcard.ts';
import type { Cert } from './cert.ts';
import type { CrlCache, RevocationStatus } from './crl.ts';
import type { OcspClient } from './ocsp.ts';
import { AsnConvert, asn1X509, x509 } from './x509.ts';

// The revocation status of a validated path, at login and again whenever the broker session that login
// started is reused (CC-22). The user certificate is known by its serial (and its OCSP responder), so a
// session can be re-checked without keeping the certificate, whose names are personal data; its issuers
// are CA certificates, kept whole.

/** What revocation checking needs of a certificate: its serial, and where to ask OCSP about it. */
export interface RevocationTarget {
  /** The serialNumber INTEGER's content bytes, as in the certificate. */
  serial: Buffer;
  /** The OCSP responder in its authorityInfoAccess (revocation.ocsp.url, when set, wins). */
  ocspUrl?: string;
}

export function targetOf(cert: Cert): RevocationTarget {
  const serial = Buffer.from(AsnConvert.parse(cert.der, asn1X509.Certificate).tbsCertificate.serialNumber);
  const aia = cert.px.getExtension(x509.AuthorityInfoAccessExtension);
  const ocspUrl = aia?.ocsp.find((n) => n.type === 'url')?.value;
  return ocspUrl ? { serial, ocspUrl } : { serial };
}

export type PathStatus = { status: 'good' } | { status: 'revoked'; reason: string } | { status: 'unknown'; reason: string };

export interface RevocationSources {
  config: SmartcardUpstreamConfig;
  crls?: CrlCache;
  ocsp?: OcspClient;
}

/**
 * The user certificate `leaf` and, with crl.scope chain, each intermediate of `issuers` (the validated
 * path after the leaf, anchor last). Revoked anywhere wins; otherwise every certificate checked needs one
 * "good" answer, or the status is unknown and the caller's fail-open/fail-closed setting decides.
 */
export async function pathStatus(leaf: RevocationTarget, issuers: Cert[], sources: RevocationSources): Promise<PathStatus> {
  const { config, crls, ocsp } = sources;
  if (config.revocation.disabled) return { status: 'good' };
  const unknown: string[] = [];
  const scope = config.revocation.crl?.scope ?? 'leaf';
  const last = scope === 'chain' ? issuers.length : 1;
  for (let i = 0; i < last; i++) {
    const target = i === 0 ? leaf : targetOf(issuers[i - 1]);
    const issuer = issuers[i];
    if (!issuer) return { status: 'unknown', reason: 'no issuer certificate to check revocation against' };
    const role = i === 0 ? 'user certificate' : 'intermediate';
    const results: RevocationStatus[] = [];
    if (crls) results.push(await crls.status(target, issuer, i > 0, config.trust.clockSkewSeconds));
    if (ocsp && i === 0) results.push(await ocsp.status(target, issuer, config.trust.clockSkewSeconds));
    const revoked = results.find((r) => r.status === 'revoked');
    if (revoked && revoked.status === 'revoked') return { status: 'revoked', reason: `${role} ${revoked.reason}` };
    if (results.length && !results.some((r) => r.status === 'good')) {
      unknown.push(`${role}: ${results.map((r) => (r.status === 'unknown' ? r.reason : r.status)).join('; ')}`);
    }
  }
  return unknown.length ? { status: 'unknown', reason: `revocation status unknown: ${unknown.join(' | ')}` } : { status: 'good' };
}
