import { z } from 'zod';
import type { SmartcardUpstreamConfig } from '../../src/config/upstream-smartcard.ts';
import type { RecheckResult, SessionRechecker } from '../../src/identity/upstream.ts';
import { CertificateFormatError, parseDer, type Cert } from './cert.ts';
import type { CertPath } from './path.ts';
import { pathStatus, targetOf, type RevocationSources } from './revocation.ts';

// A smartcard login leaves with the broker session what re-checking it needs (CC-22): the certificate's
// serial, OCSP responder and expiry, and its issuing CA certificates. Names, UID and e-mail stay out:
// the record is kept in the store for the session's life. Each reuse of the session asks the same
// CRL cache and OCSP responder as a login, and a revoked certificate, or one whose status cannot be
// established (unless revocation.failOpen), ends the session.

const recheckSchema = z.strictObject({
  serial: z.string().regex(/^[0-9a-f]{2,80}$/),
  ocspUrl: z.string().max(2000).optional(),
  /** Epoch seconds when the user certificate expires. */
  notAfter: z.number().int(),
  /** The validated path after the user certificate (CA certificates, base64url DER), anchor last. */
  issuers: z.array(z.string().regex(/^[A-Za-z0-9_-]{1,22000}$/)).min(1).max(10),
});

export function recheckOf(path: CertPath): Record<string, unknown> {
  const leaf = targetOf(path[0]);
  return {
    serial: leaf.serial.toString('hex'),
    ...(leaf.ocspUrl && { ocspUrl: leaf.ocspUrl }),
    notAfter: Math.floor(path[0].px.notAfter.getTime() / 1000),
    issuers: path.slice(1).map((c) => c.der.toString('base64url')),
  };
}

export function sessionRechecker(config: SmartcardUpstreamConfig, sources: RevocationSources, now: () => number, onUnknown: (reason: string) => void): SessionRechecker {
  const skew = config.trust.clockSkewSeconds * 1000;
  return {
    maxSessionAge: config.maxSessionAgeSeconds,
    async recheck(raw): Promise<RecheckResult> {
      const parsed = recheckSchema.safeParse(raw);
      if (!parsed.success) return { valid: false, reason: 'the session keeps no usable certificate record' };
      const r = parsed.data;
      if (r.notAfter * 1000 + skew < now()) return { valid: false, reason: 'user certificate expired since sign-in' };
      let issuers: Cert[];
      try {
        issuers = r.issuers.map((b) => parseDer(Buffer.from(b, 'base64url')));
      } catch (err) {
        if (err instanceof CertificateFormatError) return { valid: false, reason: 'the session keeps no usable certificate record' };
        throw err;
      }
      if (issuers.some((c) => c.px.notAfter.getTime() + skew < now())) return { valid: false, reason: 'a CA certificate of the path expired since sign-in' };
      const status = await pathStatus({ serial: Buffer.from(r.serial, 'hex'), ...(r.ocspUrl && { ocspUrl: r.ocspUrl }) }, issuers, sources);
      if (status.status === 'revoked') return { valid: false, reason: status.reason };
      if (status.status === 'unknown') {
        if (!config.revocation.failOpen) return { valid: false, reason: status.reason };
        onUnknown(status.reason);
      }
      return { valid: true };
    },
  };
}
