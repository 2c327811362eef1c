import { KeyObject, sign as nodeSign, webcrypto } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import * as asn1X509 from '@peculiar/asn1-x509';
import * as ocspAsn from '@peculiar/asn1-ocsp';

// A test PKI made with @peculiar/x509 (ECDSA P-256, fast): a smartcard root and issuing CA with
// smartcard-like user certificates (valid, expired, revoked, from another CA with the same issuer
// name, without clientAuth, without digitalSignature, with two UIDs), the issuing CA's and the root's
// CRLs, a proxy CA with the TLS proxy's client certificate, and a server CA with a localhost server
// certificate for nginx and the broker. Everything is written as PEM into one temporary directory.

const crypto = webcrypto as unknown as Crypto;
x509.cryptoProvider.set(crypto);
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;

export const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
export const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const TEST_POLICY = '1.3.6.1.4.1.55555.1.1';

export interface Issued {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
  certPem: string;
  keyPem: string;
}

let serialCounter = 0x1000;
const nextSerial = () => (++serialCounter).toString(16).padStart(8, '0').replace(/^/, '7a');

async function keyPair(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function keyPem(keys: CryptoKeyPair): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
}

async function finish(cert: x509.X509Certificate, keys: CryptoKeyPair): Promise<Issued> {
  return { cert, keys, certPem: cert.toString('pem') + '\n', keyPem: await keyPem(keys) };
}

export async function makeRoot(name: string, opts: { pathLength?: number; notBefore?: Date; notAfter?: Date } = {}): Promise<Issued> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: nextSerial(),
    name,
    notBefore: opts.notBefore ?? new Date(Date.now() - DAY),
    notAfter: opts.notAfter ?? new Date(Date.now() + 3650 * DAY),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, opts.pathLength, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return finish(cert, keys);
}

export interface LeafOptions {
  subject: string | x509.JsonName;
  notBefore?: Date;
  notAfter?: Date;
  keyUsage?: x509.KeyUsageFlags;
  eku?: string[] | null;
  ca?: { pathLength?: number };
  sans?: x509.JsonGeneralNames;
  policies?: string[];
  ocspUrl?: string;
  serialNumber?: string;
}

export async function issue(issuer: Issued, o: LeafOptions): Promise<Issued> {
  const keys = await keyPair();
  const extensions: x509.Extension[] = [];
  if (o.ca) {
    extensions.push(new x509.BasicConstraintsExtension(true, o.ca.pathLength, true));
    extensions.push(new x509.KeyUsagesExtension(o.keyUsage ?? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true));
  } else {
    extensions.push(new x509.BasicConstraintsExtension(false, undefined, true));
    extensions.push(new x509.KeyUsagesExtension(o.keyUsage ?? x509.KeyUsageFlags.digitalSignature, true));
    if (o.eku !== null) extensions.push(new x509.ExtendedKeyUsageExtension(o.eku ?? [EKU_CLIENT_AUTH], false));
  }
  if (o.sans) extensions.push(new x509.SubjectAlternativeNameExtension(o.sans, false));
  if (o.policies) extensions.push(new x509.CertificatePolicyExtension(o.policies, false));
  if (o.ocspUrl) extensions.push(new x509.AuthorityInfoAccessExtension({ ocsp: [new x509.GeneralName('url', o.ocspUrl)] }, false));
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey));
  extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: o.serialNumber ?? nextSerial(),
    subject: o.subject,
    issuer: issuer.cert.subjectName,
    notBefore: o.notBefore ?? new Date(Date.now() - DAY),
    notAfter: o.notAfter ?? new Date(Date.now() + 365 * DAY),
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: ALG,
    extensions,
  });
  return finish(cert, keys);
}

export async function makeCrl(issuer: Issued, revoked: x509.X509Certificate[], opts: { thisUpdate?: Date; nextUpdate?: Date } = {}): Promise<string> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: issuer.cert.subjectName,
    thisUpdate: opts.thisUpdate ?? new Date(Date.now() - 60_000),
    nextUpdate: opts.nextUpdate ?? new Date(Date.now() + 7 * DAY),
    entries: revoked.map((c) => ({ serialNumber: c.serialNumber, revocationDate: new Date(Date.now() - 3_600_000), reason: x509.X509CrlReason.keyCompromise })),
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: ALG,
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey)],
  });
  // RFC 7468 label (the library writes BEGIN CRL, which OpenSSL and so nginx do not read).
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL') + '\n';
}

/** A signed OCSP response for the request's first CertID (for a test responder). */
export async function ocspResponse(requestDer: Buffer, signer: Issued, status: 'good' | 'revoked' | 'unknown', opts: { echoNonce?: boolean; thisUpdate?: Date; nextUpdate?: Date; includeSigner?: boolean } = {}): Promise<Buffer> {
  const req = AsnConvert.parse(requestDer, ocspAsn.OCSPRequest);
  const certID = req.tbsRequest.requestList[0].reqCert;
  const nonce = req.tbsRequest.requestExtensions?.find((e) => e.extnID === ocspAsn.id_pkix_ocsp_nonce);
  const spki = AsnConvert.parse(signer.cert.publicKey.rawData, asn1X509.SubjectPublicKeyInfo);
  const keyHash = Buffer.from(await crypto.subtle.digest('SHA-1', spki.subjectPublicKey));
  const certStatus = new ocspAsn.CertStatus(status === 'good' ? { good: null } : status === 'revoked' ? { revoked: new ocspAsn.RevokedInfo({ revocationTime: new Date(Date.now() - 3_600_000) }) } : { unknown: null });
  const data = new ocspAsn.ResponseData({
    responderID: new ocspAsn.ResponderID({ byKey: new ocspAsn.KeyHash(keyHash) }),
    producedAt: new Date(),
    responses: [new ocspAsn.SingleResponse({ certID, certStatus, thisUpdate: opts.thisUpdate ?? new Date(Date.now() - 60_000), nextUpdate: opts.nextUpdate ?? new Date(Date.now() + 3_600_000) })],
    responseExtensions: nonce && opts.echoNonce !== false ? [nonce] : undefined,
  });
  const tbs = Buffer.from(AsnConvert.serialize(data));
  const signature = nodeSign('sha256', tbs, KeyObject.from(signer.keys.privateKey));
  const basic = new ocspAsn.BasicOCSPResponse({
    tbsResponseData: data,
    signatureAlgorithm: new asn1X509.AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' }),
    signature: new Uint8Array(signature).buffer,
    certs: opts.includeSigner ? [AsnConvert.parse(signer.cert.rawData, asn1X509.Certificate)] : undefined,
  });
  const response = new ocspAsn.OCSPResponse({
    responseStatus: ocspAsn.OCSPResponseStatus.successful,
    responseBytes: new ocspAsn.ResponseBytes({ responseType: ocspAsn.id_pkix_ocsp_basic, response: new OctetString(AsnConvert.serialize(basic)) }),
  });
  return Buffer.from(AsnConvert.serialize(response));
}

export interface TestPki {
  dir: string;
  root: Issued;
  issuing: Issued;
  /** Another root whose issuing CA has the same name as ours. */
  rogueRoot: Issued;
  rogueIssuing: Issued;
  users: {
    alice: Issued;
    bob: Issued;
    expired: Issued;
    revoked: Issued;
    foreign: Issued;
    noClientAuth: Issued;
    noDigitalSignature: Issued;
    twoUids: Issued;
  };
  proxyCa: Issued;
  proxy: Issued;
  serverCa: Issued;
  server: Issued;
  files: {
    /** Smartcard trust anchors (root only). */
    smartcardRoots: string;
    smartcardIntermediates: string;
    /** Root + issuing CA (what nginx verifies with). */
    smartcardCaChain: string;
    /** Issuing CA's CRL and the root's CRL. */
    crls: string;
    proxyCa: string;
    proxyCert: string;
    proxyKey: string;
    serverCa: string;
    serverCert: string;
    serverKey: string;
    /** Everything a broker asks TLS clients for: smartcard CAs and the proxy CA. */
    brokerClientCas: string;
  };
  /** Writes a user's certificate and key (and optionally the issuing CA after it) for a TLS client. */
  clientFiles(user: Issued, withChain?: boolean): { cert: string; key: string };
  write(name: string, content: string): string;
}

export async function createTestPki(): Promise<TestPki> {
  const dir = mkdtempSync(join(tmpdir(), 'smartcard-pki-'));
  const write = (name: string, content: string) => {
    const file = join(dir, name);
    writeFileSync(file, content, { mode: 0o600 });
    return file;
  };
  const root = await makeRoot('CN=Test Smartcard Root CA, O=Test Health, C=GB', { pathLength: 1 });
  const issuing = await issue(root, { subject: 'CN=Test Smartcard Issuing CA, O=Test Health, C=GB', ca: { pathLength: 0 } });
  const rogueRoot = await makeRoot('CN=Rogue Root CA, O=Elsewhere, C=GB', { pathLength: 1 });
  const rogueIssuing = await issue(rogueRoot, { subject: 'CN=Test Smartcard Issuing CA, O=Test Health, C=GB', ca: { pathLength: 0 } });
  const person = (cn: string, uid: string): x509.JsonName => [{ C: ['GB'] }, { O: ['Test Health'] }, { CN: [cn] }, { '0.9.2342.19200300.100.1.1': [uid] }];
  const card = (cn: string, uid: string, extra: Partial<LeafOptions> = {}) => ({ subject: person(cn, uid), sans: [{ type: 'email' as const, value: `${uid}@nhs.test` }], policies: [TEST_POLICY], ...extra });
  const alice = await issue(issuing, card('Alice Example', '555000000001'));
  const bob = await issue(issuing, card('Bob Example', '555000000002'));
  const expired = await issue(issuing, card('Eve Expired', '555000000003', { notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) }));
  const revoked = await issue(issuing, card('Rob Revoked', '555000000004'));
  const foreign = await issue(rogueIssuing, card('Alice Example', '555000000001'));
  const noClientAuth = await issue(issuing, card('Sam Server', '555000000005', { eku: [EKU_SERVER_AUTH] }));
  const noDigitalSignature = await issue(issuing, card('Kim Encrypt', '555000000006', { keyUsage: x509.KeyUsageFlags.keyEncipherment }));
  const twoUids = await issue(issuing, card('Tom Twice', '555000000007', { subject: [{ CN: ['Tom Twice'] }, { '0.9.2342.19200300.100.1.1': ['555000000007'] }, { '0.9.2342.19200300.100.1.1': ['555000000001'] }] }));
  const proxyCa = await makeRoot('CN=Test Proxy CA, O=Test Health, C=GB');
  const proxy = await issue(proxyCa, { subject: 'CN=smartcard-proxy, O=Test Health, C=GB', sans: [{ type: 'dns', value: 'smartcard-proxy' }] });
  const serverCa = await makeRoot('CN=Test Server CA, O=Test Health, C=GB');
  const server = await issue(serverCa, { subject: 'CN=localhost', eku: [EKU_SERVER_AUTH], keyUsage: x509.KeyUsageFlags.digitalSignature, sans: [{ type: 'dns', value: 'localhost' }, { type: 'ip', value: '127.0.0.1' }] });

  const crls = (await makeCrl(issuing, [revoked.cert])) + (await makeCrl(root, []));
  const files = {
    smartcardRoots: write('smartcard-roots.pem', root.certPem),
    smartcardIntermediates: write('smartcard-intermediates.pem', issuing.certPem),
    smartcardCaChain: write('smartcard-ca-chain.pem', root.certPem + issuing.certPem),
    crls: write('smartcard-crls.pem', crls),
    proxyCa: write('proxy-ca.pem', proxyCa.certPem),
    proxyCert: write('proxy.pem', proxy.certPem),
    proxyKey: write('proxy.key', proxy.keyPem),
    serverCa: write('server-ca.pem', serverCa.certPem),
    serverCert: write('server.pem', server.certPem),
    serverKey: write('server.key', server.keyPem),
    brokerClientCas: write('broker-client-cas.pem', root.certPem + issuing.certPem + proxyCa.certPem),
  };
  let n = 0;
  return {
    dir,
    root,
    issuing,
    rogueRoot,
    rogueIssuing,
    users: { alice, bob, expired, revoked, foreign, noClientAuth, noDigitalSignature, twoUids },
    proxyCa,
    proxy,
    serverCa,
    server,
    files,
    clientFiles(user, withChain = false) {
      n++;
      const chain = withChain ? (user === foreign ? rogueIssuing : issuing).certPem : '';
      return { cert: write(`client-${n}.pem`, user.certPem + chain), key: write(`client-${n}.key`, user.keyPem) };
    },
    write,
  };
}
