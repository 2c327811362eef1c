import type { SmartcardUpstreamConfig } from '../../src/config/upstream-smartcard.ts';
import { thumbprint, type Cert } from './cert.ts';
import { AsnConvert, asn1X509, x509 } from './x509.ts';
import { OID } from './path.ts';

// From a validated certificate to the identity the broker links accounts with. Values come from the
// parsed DER (never from a header's text rendering of the subject), each source must yield exactly
// one value (CC-13, CC-14: a second UID or e-mail SAN is ambiguous and refused), and an optional
// regular expression narrows the value to the identifier (e.g. the 12 digits of a UUID).

export class SubjectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SubjectError';
  }
}

const ATTR = {
  uid: '0.9.2342.19200300.100.1.1',
  serialNumber: '2.5.4.5',
  cn: '2.5.4.3',
  givenName: '2.5.4.42',
  surname: '2.5.4.4',
  o: '2.5.4.10',
  ou: '2.5.4.11',
} as const;

interface SanValues {
  email: string[];
  upn: string[];
  uri: string[];
  dns: string[];
}

/**
 * Subject alternative names, read with the library's GeneralName parser one entry at a time, so an
 * otherName it does not know (a card vendor's) is skipped rather than failing the whole extension.
 */
export function sanValues(cert: Cert): SanValues {
  const out: SanValues = { email: [], upn: [], uri: [], dns: [] };
  const raw = cert.px.extensions.find((e) => e.type === OID.subjectAltName);
  if (!raw) return out;
  const names = AsnConvert.parse(raw.value, asn1X509.SubjectAlternativeName);
  for (const asn of names) {
    let name: x509.GeneralName;
    try {
      name = new x509.GeneralName(asn);
    } catch {
      continue;
    }
    if (name.type === 'email') out.email.push(name.value);
    else if (name.type === 'upn') out.upn.push(name.value);
    else if (name.type === 'url') out.uri.push(name.value);
    else if (name.type === 'dns') out.dns.push(name.value);
  }
  return out;
}

function dnValues(cert: Cert, oid: string): string[] {
  return cert.px.subjectName.getField(oid);
}

function exactlyOne(values: string[], what: string): string {
  if (values.length === 0) throw new SubjectError(`certificate has no ${what}`);
  if (values.length > 1) throw new SubjectError(`certificate has ${values.length} values of ${what}`);
  const v = values[0];
  // NUL and other control characters have no place in an identifier (CC-13).
  if (v === '' || /[\u0000-\u001f\u007f]/.test(v)) throw new SubjectError(`certificate ${what} is empty or has control characters`);
  return v;
}

function keyIdOf(cert: Cert): string {
  const aki = cert.px.getExtension(x509.AuthorityKeyIdentifierExtension);
  return aki?.keyId ?? Buffer.from(cert.issuerDer).toString('base64url').slice(0, 32);
}

/** The account key for this certificate, per the upstream's subject settings. */
export function subjectOf(cert: Cert, issuer: Cert, settings: SmartcardUpstreamConfig['subject']): string {
  let value: string;
  switch (settings.from) {
    case 'uid':
      value = exactlyOne(dnValues(cert, ATTR.uid), 'subject UID');
      break;
    case 'serialNumber':
      value = exactlyOne(dnValues(cert, ATTR.serialNumber), 'subject serialNumber');
      break;
    case 'cn':
      value = exactlyOne(dnValues(cert, ATTR.cn), 'subject CN');
      break;
    case 'san-email':
      value = exactlyOne(sanValues(cert).email, 'e-mail SAN');
      break;
    case 'san-upn':
      value = exactlyOne(sanValues(cert).upn, 'UPN SAN');
      break;
    case 'san-uri':
      value = exactlyOne(sanValues(cert).uri, 'URI SAN');
      break;
    case 'issuer-serial':
      value = `${Buffer.from(issuer.subjectDer).toString('base64url')}:${cert.px.serialNumber}`;
      break;
    case 'fingerprint':
      value = thumbprint(cert);
      break;
  }
  if (settings.pattern !== undefined) {
    const m = new RegExp(settings.pattern, 'u').exec(value);
    if (!m) throw new SubjectError(`certificate ${settings.from} does not match the subject pattern`);
    value = m[1] ?? m[0];
    if (!value) throw new SubjectError('the subject pattern captured nothing');
  }
  if (value.length > 512) throw new SubjectError('subject too long');
  return settings.scopeToIssuer ? `${keyIdOf(cert)}/${value}` : value;
}

function put(claims: Record<string, unknown>, key: string, values: string[]): void {
  if (values.length === 1) claims[key] = values[0];
  else if (values.length > 1) claims[key] = values;
}

/** Verified attributes of the certificate, for the upstream's claim mapping. */
export function claimsOf(cert: Cert): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  const cn = dnValues(cert, ATTR.cn);
  if (cn.length === 1) claims.name = cn[0];
  put(claims, 'cn', cn);
  put(claims, 'given_name', dnValues(cert, ATTR.givenName));
  put(claims, 'family_name', dnValues(cert, ATTR.surname));
  put(claims, 'uid', dnValues(cert, ATTR.uid));
  put(claims, 'serial_number', dnValues(cert, ATTR.serialNumber));
  put(claims, 'organization', dnValues(cert, ATTR.o));
  put(claims, 'organizational_unit', dnValues(cert, ATTR.ou));
  const san = sanValues(cert);
  put(claims, 'email', san.email);
  put(claims, 'upn', san.upn);
  put(claims, 'san_uri', san.uri);
  claims['x5t#S256'] = thumbprint(cert);
  claims.cert_issuer = cert.px.issuer;
  claims.cert_serial = cert.px.serialNumber;
  claims.cert_not_after = Math.floor(cert.px.notAfter.getTime() / 1000);
  return claims;
}
