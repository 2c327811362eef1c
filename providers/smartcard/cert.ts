import { X509Certificate as NodeX509, createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { x509 } from './x509.ts';

// One parsed certificate, seen through two well-kept parsers: node:crypto (OpenSSL) verifies
// signatures; @peculiar/x509 reads names and extensions. Both parse the same DER, and a certificate
// either of them refuses is refused.

export class CertificateFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertificateFormatError';
  }
}

export interface Cert {
  der: Buffer;
  node: NodeX509;
  px: x509.X509Certificate;
  /** DER of the subject and issuer names, compared byte for byte when chaining. */
  subjectDer: Buffer;
  issuerDer: Buffer;
  /** Hex SHA-256 of the DER. */
  sha256: string;
}

/** Largest certificate accepted (a smartcard certificate is 1-3 KiB). */
const MAX_CERT_BYTES = 16 * 1024;

export function parseDer(der: Buffer): Cert {
  if (der.length === 0 || der.length > MAX_CERT_BYTES) throw new CertificateFormatError('certificate size out of bounds');
  let node: NodeX509;
  let px: x509.X509Certificate;
  try {
    node = new NodeX509(der);
    px = new x509.X509Certificate(new Uint8Array(der));
  } catch {
    throw new CertificateFormatError('not a DER X.509 certificate');
  }
  // Trailing bytes after the certificate, or a parser disagreement, mean it is not what it claims.
  if (!Buffer.from(px.rawData).equals(der) || !node.raw.equals(der)) throw new CertificateFormatError('certificate has trailing or non-canonical bytes');
  return {
    der,
    node,
    px,
    subjectDer: Buffer.from(px.subjectName.toArrayBuffer()),
    issuerDer: Buffer.from(px.issuerName.toArrayBuffer()),
    sha256: createHash('sha256').update(der).digest('hex'),
  };
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+?)\r?\n?-----END \1-----/;

/**
 * Strict PEM: only CERTIFICATE blocks, only base64 inside, nothing but whitespace between blocks.
 * Returns the DER of each block. `max` bounds how many blocks are accepted.
 */
export function pemBlocks(text: string, max: number): Buffer[] {
  const out: Buffer[] = [];
  const re = new RegExp(PEM_BLOCK.source, 'g');
  let m: RegExpExecArray | null;
  let last = 0;
  while ((m = re.exec(text)) !== null) {
    if (text.slice(last, m.index).trim() !== '') throw new CertificateFormatError('unexpected text around the PEM');
    if (m[1] !== 'CERTIFICATE') throw new CertificateFormatError(`unexpected PEM block ${m[1].slice(0, 30)}`);
    const b64 = m[2].replace(/\r?\n/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) throw new CertificateFormatError('malformed base64 in PEM');
    out.push(Buffer.from(b64, 'base64'));
    if (out.length > max) throw new CertificateFormatError(`more than ${max} certificate(s)`);
    last = re.lastIndex;
  }
  if (text.slice(last).trim() !== '') throw new CertificateFormatError('unexpected text around the PEM');
  if (out.length === 0) throw new CertificateFormatError('no PEM certificate');
  return out;
}

/** A PEM bundle of trusted configuration (CA files): every block a certificate. */
export async function readBundle(file: string): Promise<Cert[]> {
  const text = await readFile(file, 'utf8');
  return pemBlocks(text, 1000).map(parseDer);
}

/** Base64url SHA-256 thumbprint (the x5t#S256 form). */
export function thumbprint(cert: Cert): string {
  return Buffer.from(cert.sha256, 'hex').toString('base64url');
}
