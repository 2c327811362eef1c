import type { Cert } from './cert.ts';
import { x509 } from './x509.ts';

// Certification path building and validation (RFC 5280 section 6, the parts a client-certificate
// login needs): from the leaf through untrusted intermediates to a configured trust anchor, every
// signature verified by OpenSSL, names chained byte for byte, validity with clock skew, CA basic
// constraints and path length, keyCertSign on issuers, no unknown critical extension, and the leaf's
// key usage, extended key usage and policies. Full policy-tree processing and name constraints are
// not implemented: a certificate carrying a critical extension this code does not process is refused.

export const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  certificatePolicies: '2.5.29.32',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  anyExtendedKeyUsage: '2.5.29.37.0',
} as const;

/** Extensions this validator understands well enough to accept when marked critical. */
const UNDERSTOOD_CRITICAL = new Set<string>([OID.basicConstraints, OID.keyUsage, OID.extKeyUsage, OID.subjectAltName, OID.certificatePolicies, OID.subjectKeyId, OID.authorityKeyId]);
const WEAK_HASHES = new Set(['SHA-1', 'MD5', 'MD2']);

export class PathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PathError';
  }
}

export interface PathOptions {
  anchors: Cert[];
  /** Untrusted certificates that may serve as intermediates (configured bundle and what the client sent). */
  intermediates: Cert[];
  now: Date;
  clockSkewSeconds: number;
  maxPathLength: number;
  /** The leaf's EKU must contain one of these. */
  extendedKeyUsages: string[];
  /** The leaf must assert one of these policies (empty: none required). */
  policies: string[];
}

/** A validated path: leaf first, trust anchor last. */
export type CertPath = Cert[];

function ext<T extends x509.Extension>(cert: Cert, type: new (raw: BufferSource) => T): T | null {
  try {
    return cert.px.getExtension(type);
  } catch {
    throw new PathError(`unparseable ${type.name} in ${describe(cert)}`);
  }
}

function describe(cert: Cert): string {
  return `certificate ${cert.px.serialNumber.slice(0, 40)}`;
}

function signedBy(child: Cert, issuer: Cert): boolean {
  if (!child.issuerDer.equals(issuer.subjectDer)) return false;
  try {
    return child.node.verify(issuer.node.publicKey);
  } catch {
    return false;
  }
}

function checkTimes(cert: Cert, role: string, o: PathOptions): void {
  const skew = o.clockSkewSeconds * 1000;
  if (cert.px.notBefore.getTime() - skew > o.now.getTime()) throw new PathError(`${role} certificate not yet valid`);
  if (cert.px.notAfter.getTime() + skew < o.now.getTime()) throw new PathError(`${role} certificate expired`);
}

function checkCriticalExtensions(cert: Cert, role: string): void {
  for (const e of cert.px.extensions) {
    if (e.critical && !UNDERSTOOD_CRITICAL.has(e.type)) throw new PathError(`${role} certificate has an unsupported critical extension ${e.type}`);
  }
}

function checkIssuer(issuer: Cert, belowIntermediates: number, isAnchor: boolean, o: PathOptions): void {
  const role = isAnchor ? 'trust anchor' : 'intermediate';
  checkTimes(issuer, role, o);
  checkCriticalExtensions(issuer, role);
  const bc = ext(issuer, x509.BasicConstraintsExtension);
  // A configured anchor without basic constraints (an old v1 root) is trusted because it was configured.
  if (bc ? !bc.ca : !isAnchor) throw new PathError(`${role} is not a CA certificate`);
  if (bc?.pathLength !== undefined && belowIntermediates > bc.pathLength) throw new PathError(`${role} path length constraint exceeded`);
  const ku = ext(issuer, x509.KeyUsagesExtension);
  if (ku && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0) throw new PathError(`${role} may not sign certificates (keyUsage)`);
}

function checkLeaf(leaf: Cert, o: PathOptions): void {
  checkTimes(leaf, 'user', o);
  checkCriticalExtensions(leaf, 'user');
  const hash = leaf.px.signatureAlgorithm.hash?.name;
  if (hash && WEAK_HASHES.has(hash.toUpperCase())) throw new PathError(`user certificate signed with ${hash}`);
  if (ext(leaf, x509.BasicConstraintsExtension)?.ca) throw new PathError('a CA certificate cannot sign in');
  // Required and checked whatever its criticality (a non-critical KeyUsage is not a licence to ignore it).
  const ku = ext(leaf, x509.KeyUsagesExtension);
  if (!ku) throw new PathError('user certificate has no keyUsage');
  if ((ku.usages & x509.KeyUsageFlags.digitalSignature) === 0) throw new PathError('user certificate keyUsage lacks digitalSignature');
  const eku = ext(leaf, x509.ExtendedKeyUsageExtension);
  if (!eku) throw new PathError('user certificate has no extendedKeyUsage');
  const usages = eku.usages.map(String);
  if (!usages.some((u) => o.extendedKeyUsages.includes(u))) throw new PathError('user certificate is not for client authentication (extendedKeyUsage)');
  if (o.policies.length) {
    const cp = ext(leaf, x509.CertificatePolicyExtension);
    if (!cp || !cp.policies.some((p) => o.policies.includes(p))) throw new PathError('user certificate lacks a required certificate policy');
  }
}

/** Every candidate path from `leaf` up to an anchor, shortest first, without loops. */
function candidatePaths(leaf: Cert, o: PathOptions): CertPath[] {
  const found: CertPath[] = [];
  const walk = (path: CertPath): void => {
    if (found.length >= 16) return;
    const current = path[path.length - 1];
    for (const a of o.anchors) {
      if (path.some((c) => c.sha256 === a.sha256)) continue;
      if (signedBy(current, a)) found.push([...path, a]);
    }
    if (path.length + 1 >= o.maxPathLength) return;
    for (const i of o.intermediates) {
      if (path.some((c) => c.sha256 === i.sha256 || c.subjectDer.equals(i.subjectDer))) continue;
      if (o.anchors.some((a) => a.sha256 === i.sha256)) continue;
      if (signedBy(current, i)) walk([...path, i]);
    }
  };
  walk([leaf]);
  return found.sort((a, b) => a.length - b.length);
}

/**
 * Builds and validates a path for `leaf`. Returns the first path that passes every check; otherwise
 * throws the failure of the shortest candidate (or "no path" when nothing chains to an anchor).
 */
export function validatePath(leaf: Cert, o: PathOptions): CertPath {
  checkLeaf(leaf, o);
  const candidates = candidatePaths(leaf, o);
  if (candidates.length === 0) throw new PathError('no path to a trusted CA');
  let first: unknown;
  for (const path of candidates) {
    try {
      for (let k = 1; k < path.length; k++) checkIssuer(path[k], k - 1, k === path.length - 1, o);
      return path;
    } catch (err) {
      first ??= err;
    }
  }
  throw first instanceof PathError ? first : new PathError('no valid path to a trusted CA');
}
