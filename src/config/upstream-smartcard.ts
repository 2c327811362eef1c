import { isIP } from 'node:net';
import { z } from 'zod';
import { checkEntitledUses, commonUpstreamFields } from './upstream-common.ts';

// Settings of a smartcard / client-certificate upstream (providers/smartcard). Owned by the smartcard work.
// The certificate arrives either straight from the TLS socket (direct mutual TLS) or in a header set by a
// TLS-terminating proxy that must authenticate itself (mTLS to the broker, or an HMAC over the header).
// Whoever forwarded it, the broker validates the certificate itself: chain, times, usages, revocation.

const OID = z.string().regex(/^[0-2](\.(0|[1-9]\d{0,9})){1,30}$/, 'must be a dotted object identifier');
/** A lower-case HTTP header name (RFC 9110 token without underscores: proxies drop or rewrite those). */
const HEADER = z
  .string()
  .regex(/^[A-Za-z0-9-]{1,64}$/, 'letters, digits and - only')
  .transform((h) => h.toLowerCase());

const CIDR = z.string().refine((v) => {
  const [addr, bits, ...rest] = v.split('/');
  if (rest.length) return false;
  const family = isIP(addr);
  if (!family) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}, 'must be an IP address or CIDR range (10.0.0.0/8, ::1/128)');

// CRLs and OCSP responses are signed, so plain http (the usual for CRL distribution points) is fine.
const fetchUrl = z.url().refine((u) => u.startsWith('https:') || u.startsWith('http:'), 'must be an http(s) URL');

/** Extended key usages that count as "client authentication" (any one is enough). */
export const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
export const EKU_SMARTCARD_LOGON = '1.3.6.1.4.1.311.20.2.2';

export const SUBJECT_SOURCES = ['uid', 'serialNumber', 'cn', 'san-email', 'san-upn', 'san-uri', 'issuer-serial', 'fingerprint'] as const;
export const PROXY_FORMATS = ['rfc9440', 'nginx', 'xfcc'] as const;

const DEFAULT_HEADERS: Record<(typeof PROXY_FORMATS)[number], { header: string; chainHeader?: string }> = {
  rfc9440: { header: 'client-cert', chainHeader: 'client-cert-chain' },
  nginx: { header: 'x-ssl-client-cert' },
  xfcc: { header: 'x-forwarded-client-cert' },
};

const trustSchema = z.strictObject({
  /** Trust anchors: PEM bundle of the CA certificates trusted to issue smartcard certificates. */
  caFile: z.string().min(1),
  /** Untrusted intermediates for path building (the proxy may not forward the chain). */
  intermediatesFile: z.string().min(1).optional(),
  /** Seconds of clock difference tolerated on notBefore / notAfter (and CRL nextUpdate). */
  clockSkewSeconds: z.number().int().min(0).max(600).default(60),
  /** Most certificates in a path, leaf and anchor included. */
  maxPathLength: z.number().int().min(2).max(10).default(5),
  /** The leaf must assert one of these certificate policies (empty: no policy requirement). */
  policies: z.array(OID).default([]),
  /** The leaf's extended key usage must contain one of these (client authentication, smartcard logon). */
  extendedKeyUsages: z.array(OID).min(1).default([EKU_CLIENT_AUTH, EKU_SMARTCARD_LOGON]),
});

const crlSourceSchema = z.union([z.strictObject({ file: z.string().min(1) }), z.strictObject({ url: fetchUrl })]);

const crlSchema = z.strictObject({
  /** Where the CRLs come from (PEM or DER; one per issuing CA, and one per intermediate's issuer when scope is chain). */
  sources: z.array(crlSourceSchema).min(1),
  /** Re-read files and re-fetch URLs this often; a CRL past its nextUpdate is re-fetched at once. */
  refreshSeconds: z.number().int().min(10).max(86_400).default(300),
  /** After a failed fetch, wait this long before trying that source again (the last good copy stays in use while fresh). */
  retrySeconds: z.number().int().min(1).max(3600).default(30),
  timeoutMs: z.number().int().min(100).max(60_000).default(5000),
  maxBytes: z.number().int().min(1024).max(100 * 1024 * 1024).default(20 * 1024 * 1024),
  /** A CRL without nextUpdate counts as stale this long after its thisUpdate. */
  maxAgeSeconds: z.number().int().min(60).default(7 * 86_400),
  /** chain: every certificate of the path is checked (a CRL for every issuer is needed); leaf: only the user's. */
  scope: z.enum(['chain', 'leaf']).default('chain'),
});

const ocspSchema = z.strictObject({
  /** Responder URL; otherwise the leaf's Authority Information Access. */
  url: fetchUrl.optional(),
  timeoutMs: z.number().int().min(100).max(30_000).default(3000),
  /** Oldest thisUpdate accepted when the response has no nextUpdate. */
  maxAgeSeconds: z.number().int().min(60).max(7 * 86_400).default(3600),
  /** Send a nonce and require it back (some responders answer only cached, nonce-less responses). */
  nonce: z.boolean().default(true),
});

const revocationSchema = z.strictObject({
  crl: crlSchema.optional(),
  ocsp: ocspSchema.optional(),
  /**
   * When revocation status cannot be established (CRL unreachable or stale, OCSP down or "unknown"):
   * false (the default) refuses the login; true lets it through and logs it. A certificate found
   * revoked is always refused.
   */
  failOpen: z.boolean().default(false),
  /** No revocation checking at all: must be said explicitly (short-lived certificates, a test bed). */
  disabled: z.literal(true).optional(),
});

const hmacSchema = z.strictObject({
  /** Shared keys (at least 32 characters; from ${ENV}). Several keys allow rotation: each of them verifies. */
  secrets: z.array(z.string().min(32)).min(1),
  /** Header carrying `t=<unix seconds>;sig=<base64url HMAC-SHA256>`. */
  header: HEADER.default('client-cert-signature'),
  /** How far the signature's timestamp may be from now, either way. */
  windowSeconds: z.number().int().min(5).max(600).default(60),
});

const proxyAuthSchema = z
  .strictObject({
    /** The proxy connects over TLS with a client certificate chaining to this CA bundle (the broker listens with tls.requestCert). */
    mtls: z
      .strictObject({
        caFile: z.string().min(1),
        /** Accept only proxy certificates with one of these names (subject CN or SAN DNS, exact match). */
        allowedNames: z.array(z.string().min(1)).min(1).optional(),
      })
      .optional(),
    /** The proxy signs the forwarded certificate, a timestamp and the request path with a shared key. */
    hmac: hmacSchema.optional(),
    /** The proxy's addresses (the TCP peer, never X-Forwarded-For); checked in addition to mtls / hmac. */
    allowedSources: z.array(CIDR).min(1).optional(),
  })
  .refine((a) => a.mtls !== undefined || a.hmac !== undefined, 'a proxy must authenticate itself: configure mtls, hmac or both');

const proxySchema = z
  .strictObject({
    /** How the proxy forwards the certificate: RFC 9440 Client-Cert, nginx $ssl_client_escaped_cert, Envoy XFCC. */
    format: z.enum(PROXY_FORMATS),
    /** Header with the user's certificate (default per format: client-cert, x-ssl-client-cert, x-forwarded-client-cert). */
    header: HEADER.optional(),
    /** rfc9440: header with the chain (default client-cert-chain). */
    chainHeader: HEADER.optional(),
    /** nginx: header carrying $ssl_client_verify; when set, the proxy must report SUCCESS (the broker still validates). */
    verifyHeader: HEADER.optional(),
    /** Upper bound on the certificate header, checked before any parsing. */
    maxHeaderBytes: z.number().int().min(1024).max(65_536).default(8192),
    /** Upper bound on the chain header (rfc9440) or on an XFCC header carrying Chain=. */
    maxChainHeaderBytes: z.number().int().min(1024).max(262_144).default(16_384),
    /** xfcc: the By= values (the broker's own identity at the proxy) accepted; unset: By= is not checked. */
    xfccBy: z.array(z.string().min(1)).min(1).optional(),
    authentication: proxyAuthSchema,
  })
  .transform((p) => ({ ...p, header: p.header ?? DEFAULT_HEADERS[p.format].header, chainHeader: p.chainHeader ?? DEFAULT_HEADERS[p.format].chainHeader }))
  .refine((p) => p.format === 'rfc9440' || p.chainHeader === undefined, { message: 'chainHeader is for the rfc9440 format only', path: ['chainHeader'] })
  .refine((p) => p.format === 'nginx' || p.verifyHeader === undefined, { message: 'verifyHeader is for the nginx format only', path: ['verifyHeader'] })
  .refine((p) => p.format === 'xfcc' || p.xfccBy === undefined, { message: 'xfccBy is for the xfcc format only', path: ['xfccBy'] });

const subjectSchema = z
  .strictObject({
    /**
     * Where the account key comes from: a subject DN attribute (uid, serialNumber, cn), a SAN (e-mail, UPN,
     * URI), or the certificate itself (issuer-serial, fingerprint: strongest, but change on card renewal).
     * Exactly one value must be present; several (two UIDs, two e-mail SANs) refuse the login.
     */
    from: z.enum(SUBJECT_SOURCES),
    /** Optional regular expression over the parsed value; its first capture group (or the whole match) is the subject. */
    pattern: z
      .string()
      .min(1)
      .max(500)
      .refine((p) => {
        try {
          new RegExp(p);
          return true;
        } catch {
          return false;
        }
      }, 'must be a valid regular expression')
      .optional(),
    /** Prefix the subject with the issuing CA's key identifier, so two trusted CAs cannot assert the same user. */
    scopeToIssuer: z.boolean().default(false),
  });

const assuranceSchema = z
  .strictObject({
    /** acr recorded for these logins, e.g. AAL3_SMARTCARD. */
    acr: z.string().min(1).max(100).optional(),
    /** Authenticator assurance level of these logins, e.g. 3 for a PIN-protected hardware smartcard. */
    aal: z.number().int().min(1).max(3).optional(),
    /** RFC 8176 methods; must include "sc". Add "hwk", "pin" or "mfa" only where the card policy guarantees them. */
    amr: z.array(z.string().regex(/^[a-z0-9_-]{1,32}$/)).min(1).default(['sc']),
  })
  .refine((a) => a.amr.includes('sc'), { message: 'amr must include "sc"', path: ['amr'] });

export const smartcardUpstreamSchema = z
  .strictObject({
    ...commonUpstreamFields,
    type: z.literal('smartcard'),
    trust: trustSchema,
    revocation: revocationSchema,
    /** Accept the certificate from the TLS connection to the broker itself (the broker listens with tls.requestCert). */
    direct: z.boolean().default(false),
    /** Accept the certificate from a header set by an authenticated TLS-terminating proxy. */
    proxy: proxySchema.optional(),
    subject: subjectSchema,
    assurance: assuranceSchema.default({ amr: ['sc'] }),
    /**
     * Longest a broker sign-in session from this upstream is reused (single sign-on) before the card must be
     * presented again; every reuse within it re-checks the certificate's revocation (CC-22). 0: never reused.
     */
    maxSessionAgeSeconds: z
      .number()
      .int()
      .min(0)
      .max(86_400)
      .default(900)
      .describe('seconds a broker session from a smartcard sign-in is reused at most before the card is asked for again (each reuse re-checks revocation); 0 = a fresh sign-in every time'),
  })
  .superRefine((c, ctx) => {
    if (!c.direct && c.proxy === undefined) ctx.addIssue({ code: 'custom', path: ['direct'], message: 'accept the certificate directly (direct: true), from a proxy (proxy: …), or both' });
    const r = c.revocation;
    if (r.disabled && (r.crl || r.ocsp)) ctx.addIssue({ code: 'custom', path: ['revocation', 'disabled'], message: 'revocation is disabled but crl or ocsp is configured' });
    if (!r.disabled && !r.crl && !r.ocsp) ctx.addIssue({ code: 'custom', path: ['revocation'], message: 'configure revocation.crl and/or revocation.ocsp, or set revocation.disabled: true' });
    checkEntitledUses(c, c.mapping.privileged ?? [], ctx);
  });

export type SmartcardUpstreamConfig = z.infer<typeof smartcardUpstreamSchema>;
export type SmartcardUpstreamInput = z.input<typeof smartcardUpstreamSchema>;
export type SmartcardProxyConfig = NonNullable<SmartcardUpstreamConfig['proxy']>;
