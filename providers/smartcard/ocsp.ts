import { createHash, randomBytes, verify as verifySignature } from 'node:crypto';
import { OctetString } from '@peculiar/asn1-schema';
import * as ocspAsn from '@peculiar/asn1-ocsp';
import type { SmartcardUpstreamConfig } from '../../src/config/upstream-smartcard.ts';
import { parseDer, type Cert } from './cert.ts';
import type { RevocationStatus } from './crl.ts';
import type { RevocationTarget } from './revocation.ts';
import { AsnConvert, asn1X509, x509 } from './x509.ts';

// OCSP (RFC 6960) for the user's certificate, best effort beside the CRL: a request with a SHA-1
// CertID (what responders support) and a nonce; the answer counts only if it is signed by the issuer
// or by a responder certificate the issuer delegated (EKU OCSPSigning), names our certificate, is
// current, and echoes the nonce. Anything else, and any network failure, is "unknown" (CC-10, CC-11).

type OcspConfig = NonNullable<SmartcardUpstreamConfig['revocation']['ocsp']>;

const SHA1 = '1.3.14.3.2.26';
const EKU_OCSP_SIGNING = '1.3.6.1.5.5.7.3.9';
const MAX_RESPONSE = 64 * 1024;
const SIGNATURE_HASH: Record<string, string | null> = {
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.3.101.112': null,
};

const sha1 = (data: ArrayBuffer | Buffer): Buffer => createHash('sha1').update(Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data)).digest();

function keyBits(cert: Cert): ArrayBuffer {
  return AsnConvert.parse(cert.px.publicKey.rawData, asn1X509.SubjectPublicKeyInfo).subjectPublicKey;
}

export function certId(serial: Buffer, issuer: Cert): ocspAsn.CertID {
  return new ocspAsn.CertID({
    hashAlgorithm: new asn1X509.AlgorithmIdentifier({ algorithm: SHA1, parameters: null }),
    issuerNameHash: new OctetString(sha1(issuer.subjectDer)),
    issuerKeyHash: new OctetString(sha1(keyBits(issuer))),
    serialNumber: new Uint8Array(serial).buffer,
  });
}

function sameId(a: ocspAsn.CertID, b: ocspAsn.CertID): boolean {
  return (
    a.hashAlgorithm.algorithm === b.hashAlgorithm.algorithm &&
    Buffer.from(a.issuerNameHash.buffer).equals(Buffer.from(b.issuerNameHash.buffer)) &&
    Buffer.from(a.issuerKeyHash.buffer).equals(Buffer.from(b.issuerKeyHash.buffer)) &&
    Buffer.from(a.serialNumber).equals(Buffer.from(b.serialNumber))
  );
}

export function buildRequest(id: ocspAsn.CertID, nonce: Buffer | undefined): Buffer {
  const extensions = nonce
    ? [new asn1X509.Extension({ extnID: ocspAsn.id_pkix_ocsp_nonce, critical: false, extnValue: new OctetString(AsnConvert.serialize(new OctetString(nonce))) })]
    : undefined;
  const req = new ocspAsn.OCSPRequest({ tbsRequest: new ocspAsn.TBSRequest({ requestList: [new ocspAsn.Request({ reqCert: id })], requestExtensions: extensions }) });
  return Buffer.from(AsnConvert.serialize(req));
}


async function post(url: string, body: Buffer, timeoutMs: number): Promise<Buffer> {
  const res = await fetch(url, { method: 'POST', body: new Uint8Array(body), headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' }, signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const data = Buffer.from(await res.arrayBuffer());
  if (data.length > MAX_RESPONSE) throw new Error('response too large');
  return data;
}

export class OcspClient {
  readonly #config: OcspConfig;
  readonly #now: () => number;

  constructor(config: OcspConfig, now: () => number = Date.now) {
    this.#config = config;
    this.#now = now;
  }

  async status(target: RevocationTarget, issuer: Cert, clockSkewSeconds: number): Promise<RevocationStatus> {
    const url = this.#config.url ?? target.ocspUrl;
    if (!url) return { status: 'unknown', reason: 'OCSP: no responder URL' };
    const id = certId(target.serial, issuer);
    const nonce = this.#config.nonce ? randomBytes(16) : undefined;
    let raw: Buffer;
    try {
      raw = await post(url, buildRequest(id, nonce), this.#config.timeoutMs);
    } catch (err) {
      return { status: 'unknown', reason: `OCSP: responder unreachable (${err instanceof Error ? err.message.slice(0, 80) : 'error'})` };
    }
    try {
      return this.#interpret(raw, id, issuer, nonce, clockSkewSeconds);
    } catch (err) {
      return { status: 'unknown', reason: `OCSP: unusable response (${err instanceof Error ? err.message.slice(0, 80) : 'error'})` };
    }
  }

  #interpret(raw: Buffer, id: ocspAsn.CertID, issuer: Cert, nonce: Buffer | undefined, clockSkewSeconds: number): RevocationStatus {
    const now = this.#now();
    const skew = clockSkewSeconds * 1000;
    const response = AsnConvert.parse(raw, ocspAsn.OCSPResponse);
    if (response.responseStatus !== ocspAsn.OCSPResponseStatus.successful) {
      return { status: 'unknown', reason: `OCSP: responder answered ${ocspAsn.OCSPResponseStatus[response.responseStatus] ?? response.responseStatus}` };
    }
    if (!response.responseBytes || response.responseBytes.responseType !== ocspAsn.id_pkix_ocsp_basic) return { status: 'unknown', reason: 'OCSP: not a basic response' };
    const basic = AsnConvert.parse(response.responseBytes.response.buffer, ocspAsn.BasicOCSPResponse);
    const tbs = basic.tbsResponseDataRaw ?? AsnConvert.serialize(basic.tbsResponseData);

    // Who signed: the issuer itself, or a responder certificate the issuer signed for OCSP.
    const rid = basic.tbsResponseData.responderID;
    const matchesResponder = (c: Cert) =>
      rid.byName ? Buffer.from(AsnConvert.serialize(rid.byName)).equals(c.subjectDer) : rid.byKey ? sha1(keyBits(c)).equals(Buffer.from(rid.byKey.buffer)) : false;
    const candidates: Cert[] = [issuer];
    for (const c of basic.certs ?? []) {
      const cert = parseDer(Buffer.from(AsnConvert.serialize(c)));
      const eku = cert.px.getExtension(x509.ExtendedKeyUsageExtension);
      const current = cert.px.notBefore.getTime() - skew <= now && now <= cert.px.notAfter.getTime() + skew;
      if (current && eku?.usages.map(String).includes(EKU_OCSP_SIGNING) && cert.issuerDer.equals(issuer.subjectDer) && cert.node.verify(issuer.node.publicKey)) candidates.push(cert);
    }
    const signer = candidates.find(matchesResponder);
    if (!signer) return { status: 'unknown', reason: 'OCSP: response from an unauthorised responder' };
    const alg = basic.signatureAlgorithm.algorithm;
    if (!(alg in SIGNATURE_HASH)) return { status: 'unknown', reason: `OCSP: unsupported signature algorithm ${alg}` };
    if (!verifySignature(SIGNATURE_HASH[alg], Buffer.from(tbs), signer.node.publicKey, Buffer.from(basic.signature))) return { status: 'unknown', reason: 'OCSP: bad response signature' };

    const data = basic.tbsResponseData;
    if (data.producedAt.getTime() - skew > now) return { status: 'unknown', reason: 'OCSP: producedAt in the future' };
    if (nonce) {
      const ext = data.responseExtensions?.find((e) => e.extnID === ocspAsn.id_pkix_ocsp_nonce);
      const echoed = ext ? Buffer.from(AsnConvert.parse(ext.extnValue.buffer, OctetString).buffer) : undefined;
      if (!echoed || !echoed.equals(nonce)) return { status: 'unknown', reason: 'OCSP: nonce missing or mismatched' };
    }
    const single = data.responses.find((r) => sameId(r.certID, id));
    if (!single) return { status: 'unknown', reason: 'OCSP: response is for another certificate' };
    if (single.thisUpdate.getTime() - skew > now) return { status: 'unknown', reason: 'OCSP: thisUpdate in the future' };
    const staleAt = single.nextUpdate ? single.nextUpdate.getTime() + skew : single.thisUpdate.getTime() + this.#config.maxAgeSeconds * 1000;
    if (staleAt < now) return { status: 'unknown', reason: 'OCSP: stale response' };
    if (single.certStatus.revoked) return { status: 'revoked', reason: 'certificate revoked (OCSP)' };
    if (single.certStatus.good !== undefined) return { status: 'good', source: 'ocsp' };
    return { status: 'unknown', reason: 'OCSP: responder does not know the certificate' };
  }
}
