import { z } from 'zod';
import { checkEntitledUses, commonUpstreamFields } from './upstream-common.ts';

// Settings of an upstream SAML 2.0 IdP (providers/saml). Owned by the SAML connector work.
// Secrets (private keys) come from files or from inline PEM with ${ENV} interpolation (config/load.ts).

const NAMEID_FORMATS = {
  persistent: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
  transient: 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient',
  emailAddress: 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
  unspecified: 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified',
} as const;

const pem = (label: string) => z.string().refine((v) => v.includes(`-----BEGIN ${label}`), `must be a PEM ${label.toLowerCase()}`);
const privateKeyPem = z.string().refine((v) => /-----BEGIN (RSA |EC )?PRIVATE KEY-----/.test(v), 'must be a PEM private key');

const authnContextSchema = z.strictObject({
  /** How the IdP compares its context with the requested ones. */
  comparison: z.enum(['exact', 'minimum', 'better', 'maximum']).default('minimum'),
  /** Class refs requested when the login needs no particular assurance (omit: no RequestedAuthnContext). */
  default: z.array(z.string().min(1)).min(1).optional(),
  /**
   * Class refs that satisfy each authenticator assurance level, e.g.
   * { "2": ["urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"], "3": ["urn:…:Smartcard"] }.
   * Used both ways: a minimum AAL becomes a RequestedAuthnContext, and the class ref the IdP returns
   * becomes the login's AAL (the highest level listing it).
   */
  aal: z.partialRecord(z.enum(['1', '2', '3']), z.array(z.string().min(1)).min(1)).default({}),
});

export const samlUpstreamSchema = z
  .strictObject({
    ...commonUpstreamFields,
    type: z.literal('saml'),
    /** The broker's SP entity ID at this IdP (default `${issuer}/upstream/<id>/metadata`). */
    entityId: z.string().min(1).max(1024).optional(),
    /** The IdP's SAML metadata: a local file, or an https URL (refreshed every metadataRefreshSeconds). */
    idpMetadataFile: z.string().min(1).optional(),
    idpMetadataUrl: z.url().optional(),
    metadataRefreshSeconds: z.number().int().min(60).max(7 * 86_400).default(3600),
    /** The IdP entity to use when the metadata is an EntitiesDescriptor holding several. */
    idpEntityId: z.string().min(1).optional(),
    /** Key and certificate that sign AuthnRequests and LogoutRequests (RSA): a file, or inline PEM. */
    spPrivateKeyFile: z.string().min(1).optional(),
    spPrivateKey: privateKeyPem.optional(),
    spCertificateFile: z.string().min(1).optional(),
    spCertificate: pem('CERTIFICATE').optional(),
    /** Key (and its certificate, published in SP metadata) that decrypts encrypted assertions. */
    decryptionPrivateKeyFile: z.string().min(1).optional(),
    decryptionPrivateKey: privateKeyPem.optional(),
    decryptionCertificateFile: z.string().min(1).optional(),
    decryptionCertificate: pem('CERTIFICATE').optional(),
    /** Refuse assertions that arrive unencrypted (needs a decryption key). */
    wantAssertionsEncrypted: z.boolean().default(false),
    wantAssertionsSigned: z.boolean().default(true),
    wantResponseSigned: z.boolean().default(true),
    /** Accept a response with no InResponseTo (IdP-initiated). Off: every response must answer our request. */
    allowUnsolicited: z.boolean().default(false),
    /** Seconds of clock difference tolerated on NotBefore / NotOnOrAfter. */
    clockSkew: z.number().int().min(0).max(300).default(60),
    /** Oldest IssueInstant / AuthnInstant accepted, in seconds (against old assertions with far-off expiry). */
    maxAssertionAge: z.number().int().min(30).max(86_400).default(600),
    /** NameID format asked for and required; only persistent identifiers are safe as an account key. */
    nameIdFormat: z.enum(Object.keys(NAMEID_FORMATS) as [keyof typeof NAMEID_FORMATS, ...Array<keyof typeof NAMEID_FORMATS>]).default('persistent'),
    signatureAlgorithm: z.enum(['sha256', 'sha512']).default('sha256'),
    authnContext: authnContextSchema.optional(),
    /** Send a SAML LogoutRequest to the IdP when the broker session ends (if the IdP has an SLO endpoint). */
    singleLogout: z.boolean().default(true),
  })
  .superRefine((c, ctx) => {
    const oneOf = (a: keyof typeof c, b: keyof typeof c, required: boolean) => {
      if (c[a] !== undefined && c[b] !== undefined) ctx.addIssue({ code: 'custom', path: [b], message: `give ${String(a)} or ${String(b)}, not both` });
      if (required && c[a] === undefined && c[b] === undefined) ctx.addIssue({ code: 'custom', path: [a], message: `${String(a)} or ${String(b)} is required` });
    };
    oneOf('idpMetadataFile', 'idpMetadataUrl', true);
    oneOf('spPrivateKeyFile', 'spPrivateKey', true);
    oneOf('spCertificateFile', 'spCertificate', true);
    oneOf('decryptionPrivateKeyFile', 'decryptionPrivateKey', false);
    oneOf('decryptionCertificateFile', 'decryptionCertificate', false);
    const hasDecryptionKey = c.decryptionPrivateKeyFile !== undefined || c.decryptionPrivateKey !== undefined;
    const hasDecryptionCert = c.decryptionCertificateFile !== undefined || c.decryptionCertificate !== undefined;
    if (hasDecryptionKey !== hasDecryptionCert) ctx.addIssue({ code: 'custom', path: ['decryptionCertificateFile'], message: 'a decryption key needs its certificate (for the SP metadata), and the reverse' });
    if (c.wantAssertionsEncrypted && !hasDecryptionKey) ctx.addIssue({ code: 'custom', path: ['wantAssertionsEncrypted'], message: 'needs a decryption key' });
    if (!c.wantAssertionsSigned && !c.wantResponseSigned) ctx.addIssue({ code: 'custom', path: ['wantAssertionsSigned'], message: 'the response or the assertion (or both) must be signed' });
    if (c.idpMetadataUrl !== undefined && !c.idpMetadataUrl.startsWith('https:') && !/^http:\/\/(localhost|127\.0\.0\.1|\[::1\])[:/]/.test(c.idpMetadataUrl)) {
      ctx.addIssue({ code: 'custom', path: ['idpMetadataUrl'], message: 'must be https (http only for loopback tests)' });
    }
    checkEntitledUses(c, c.mapping.privileged ?? [], ctx);
  });

export type SamlUpstreamConfig = z.infer<typeof samlUpstreamSchema>;
export type SamlUpstreamInput = z.input<typeof samlUpstreamSchema>;

/** The NameID format URN for a configured short name. */
export function nameIdFormatUrn(format: SamlUpstreamConfig['nameIdFormat']): string {
  return NAMEID_FORMATS[format];
}
