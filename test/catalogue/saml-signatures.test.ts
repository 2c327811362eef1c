import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLSerializer } from '@xmldom/xmldom';
import { simpleSamlAvailable, type KeyPair } from '../peers/simplesamlphp.ts';
import { XML_NS, craft, decodeResponse, first, startSamlEnv, type SamlEnv } from '../providers/saml/harness.ts';
import { ASSERTION_XPATH, EXC_C14N, RESPONSE_XPATH, acs, b64, calculatedDigest, ownSignature, resignSignedInfo, signBoth, signXml, oobListener, unsignedXml } from './saml-acs.ts';

// Security catalogue section 2, signature rows: certificate cloning (SAML-04), a comment inside
// DigestValue (SAML-16), reference tricks (SAML-19), transforms (SAML-20) and SHA-1 (SAML-22). Every
// hostile response starts from SimpleSAMLphp's genuine answer to a fresh login and is re-signed with
// the IdP's own key wherever the attack allows, so the one hostile detail is the only thing wrong.

const { SAML, SAMLP, DSIG } = XML_NS;
const RSA_SHA1 = 'http://www.w3.org/2000/09/xmldsig#rsa-sha1';
const SHA1 = 'http://www.w3.org/2000/09/xmldsig#sha1';
const XSLT = 'http://www.w3.org/TR/1999/REC-xslt-19991116';
const XPATH = 'http://www.w3.org/TR/1999/REC-xpath-19991116';
const XPATH2 = 'http://www.w3.org/2002/06/xmldsig-filter2';

/** A certificate with the same subject, issuer and serial number as `original`, on a new key. */
function cloneCertificate(original: string): KeyPair {
  const cert = new X509Certificate(original);
  const subject = `/${cert.subject.split('\n').join('/')}`;
  const dir = mkdtempSync(join(tmpdir(), 'saml-clone-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2', '-subj', subject, '-set_serial', `0x${cert.serialNumber}`, '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  return { keyPem: readFileSync(join(dir, 'key.pem'), 'utf8'), certPem: readFileSync(join(dir, 'cert.pem'), 'utf8') };
}

describe.skipIf(!simpleSamlAvailable)('SAML catalogue: signatures, references, transforms, algorithms', () => {
  let env: SamlEnv;
  let io: ReturnType<typeof acs>;
  // Out-of-band listener: an XSLT or entity that the broker evaluated would call it.
  let oob: Awaited<ReturnType<typeof oobListener>>;
  beforeAll(async () => {
    env = await startSamlEnv();
    io = acs(env);
    oob = await oobListener('<x/>');
  });
  afterAll(async () => {
    await oob?.close();
    await env?.close();
  });

  it('[P] control: a response signed by this file’s own signing helper with the IdP key is accepted', async () => {
    const a = await io.fresh();
    await io.expectAccepted(a, b64(signBoth(unsignedXml(a.answer.SAMLResponse), env.idp.idp)));
  });

  it('SAML-04 certificate cloning: same subject, issuer and serial as the IdP certificate, another key, is refused', async () => {
    const clone = cloneCertificate(env.idp.idp.certPem);
    const genuine = new X509Certificate(env.idp.idp.certPem);
    const cloned = new X509Certificate(clone.certPem);
    expect([cloned.subject, cloned.issuer, cloned.serialNumber]).toEqual([genuine.subject, genuine.issuer, genuine.serialNumber]);
    expect(cloned.fingerprint256).not.toBe(genuine.fingerprint256);
    const a = await io.fresh();
    // craft() puts the signer's certificate into KeyInfo: the clone travels with the response.
    const forged = craft(a.answer.SAMLResponse, clone);
    expect(Buffer.from(forged, 'base64').toString('utf8')).toContain(clone.certPem.split('\n')[1]);
    await io.expectRefused(a, forged, /signature/i);
  });

  it('SAML-16 a comment inside DigestValue hiding the digest of the tampered assertion (CVE-2025-29775) is refused', async () => {
    const a = await io.fresh();
    const doc = decodeResponse(craft(a.answer.SAMLResponse, env.idp.idp));
    const response = doc.documentElement;
    const assertion = first(doc, SAML, 'Assertion');
    first(assertion, SAML, 'NameID').textContent = 'admin';
    // The tampered assertion's real digest goes into a comment in front of the original digest, in both
    // references; SignedInfo canonicalises without comments, so both SignatureValues still verify.
    for (const signature of [ownSignature(assertion), ownSignature(response)]) {
      const xml = new XMLSerializer().serializeToString(doc);
      const digest = calculatedDigest(xml, signature, env.idp.idp);
      const value = first(signature, DSIG, 'DigestValue');
      const original = value.textContent ?? '';
      expect(digest).not.toBe(original);
      value.insertBefore(doc.createComment(digest), value.firstChild);
      // The vulnerable reading (first child of DigestValue) now yields the tampered content's digest.
      expect(value.firstChild?.nodeValue).toBe(digest);
    }
    await io.expectRefused(a, b64(new XMLSerializer().serializeToString(doc)), /signature/i);
  });

  describe('SAML-19 reference tricks', () => {
    it('SAML-19 URI="" (the whole document) on the Response signature is refused', async () => {
      const a = await io.fresh();
      const signed = signBoth(unsignedXml(a.answer.SAMLResponse), env.idp.idp, { response: { isEmptyUri: true } });
      expect(signed).toContain('URI=""');
      await io.expectRefused(a, b64(signed), /reference does not point at its parent/);
    });

    it('SAML-19 a Response signature whose reference points at the assertion, not the Response, is refused', async () => {
      const a = await io.fresh();
      const signed = signBoth(unsignedXml(a.answer.SAMLResponse), env.idp.idp, { response: { target: ASSERTION_XPATH } });
      await io.expectRefused(a, b64(signed), /reference does not point at its parent/);
    });

    it('SAML-19 two elements with the assertion’s ID (a decoy Extensions element) is refused', async () => {
      const a = await io.fresh();
      const xml = unsignedXml(a.answer.SAMLResponse, (d) => {
        const ext = d.createElementNS(SAMLP, 'samlp:Extensions');
        ext.setAttribute('ID', first(d, SAML, 'Assertion').getAttribute('ID') ?? '');
        d.documentElement.insertBefore(ext, first(d, SAMLP, 'Status'));
      });
      await io.expectRefused(a, b64(signBoth(xml, env.idp.idp)), /duplicate ID/);
    });

    it('SAML-19 the assertion’s ID repeated as an ID attribute in another namespace is refused as a duplicate', async () => {
      const a = await io.fresh();
      const xml = unsignedXml(a.answer.SAMLResponse, (d) => {
        const ext = d.createElementNS(SAMLP, 'samlp:Extensions');
        ext.setAttributeNS('urn:example:evil', 'evil:ID', first(d, SAML, 'Assertion').getAttribute('ID') ?? '');
        d.documentElement.insertBefore(ext, first(d, SAMLP, 'Status'));
      });
      await io.expectRefused(a, b64(signBoth(xml, env.idp.idp)), /duplicate ID/);
    });
  });

  describe('SAML-20 transforms beyond enveloped-signature + exclusive c14n', () => {
    /** Replaces the assertion signature's transforms, signs its SignedInfo again, then signs the Response again over it. */
    function withTransforms(samlResponse: string, build: (d: Document) => Element[]): string {
      const doc = decodeResponse(craft(samlResponse, env.idp.idp));
      const assertion = first(doc, SAML, 'Assertion');
      const signature = ownSignature(assertion);
      const transforms = first(signature, DSIG, 'Transforms');
      while (transforms.firstChild) transforms.removeChild(transforms.firstChild);
      for (const t of build(doc)) transforms.appendChild(t);
      resignSignedInfo(signature, env.idp.idp);
      doc.documentElement.removeChild(ownSignature(doc.documentElement));
      const xml = signXml(new XMLSerializer().serializeToString(doc), { key: env.idp.idp, target: RESPONSE_XPATH, after: "/*[local-name(.)='Response']/*[local-name(.)='Issuer']" });
      return b64(xml);
    }
    const transform = (d: Document, algorithm: string, child?: Element): Element => {
      const t = d.createElementNS(DSIG, 'ds:Transform');
      t.setAttribute('Algorithm', algorithm);
      if (child) t.appendChild(child);
      return t;
    };
    const enveloped = (d: Document) => transform(d, 'http://www.w3.org/2000/09/xmldsig#enveloped-signature');

    it('SAML-20 an XSLT transform (with a stylesheet that would call out) is refused and never run', async () => {
      const a = await io.fresh();
      const hits = oob.hits();
      const hostile = withTransforms(a.answer.SAMLResponse, (d) => {
        const xsl = 'http://www.w3.org/1999/XSL/Transform';
        const sheet = d.createElementNS(xsl, 'xsl:stylesheet');
        sheet.setAttribute('version', '1.0');
        const template = d.createElementNS(xsl, 'xsl:template');
        template.setAttribute('match', '/');
        const value = d.createElementNS(xsl, 'xsl:value-of');
        value.setAttribute('select', `document('${oob.base}/oob')`);
        template.appendChild(value);
        sheet.appendChild(template);
        return [enveloped(d), transform(d, XSLT, sheet)];
      });
      await io.expectRefused(a, hostile, /transform .*xslt.* not allowed/);
      expect(oob.hits()).toBe(hits);
    });

    it('SAML-20 XPath and XPath Filter 2.0 transforms are refused', async () => {
      for (const [algorithm, ns, name, text] of [
        [XPATH, DSIG, 'ds:XPath', "not(ancestor-or-self::*[local-name()='NameID'])"],
        [XPATH2, XPATH2, 'f:XPath', "//*[local-name()='NameID']"],
      ] as const) {
        const a = await io.fresh();
        const hostile = withTransforms(a.answer.SAMLResponse, (d) => {
          const x = d.createElementNS(ns, name);
          if (algorithm === XPATH2) x.setAttribute('Filter', 'subtract');
          x.appendChild(d.createTextNode(text));
          return [enveloped(d), transform(d, algorithm, x)];
        });
        await io.expectRefused(a, hostile, /transform .* not allowed/);
      }
    });

    it('SAML-20 more than two transforms (enveloped + c14n + c14n) are refused', async () => {
      const a = await io.fresh();
      const hostile = withTransforms(a.answer.SAMLResponse, (d) => [enveloped(d), transform(d, EXC_C14N), transform(d, EXC_C14N)]);
      await io.expectRefused(a, hostile, /too many transforms/);
    });
  });

  describe('SAML-22 SHA-1', () => {
    it('SAML-22 an rsa-sha1 signature over a SHA-256 digest is refused', async () => {
      const a = await io.fresh();
      const signed = signBoth(unsignedXml(a.answer.SAMLResponse), env.idp.idp, { assertion: { signatureAlgorithm: RSA_SHA1 } });
      await io.expectRefused(a, b64(signed), /signature algorithm .*rsa-sha1 not allowed/);
    });

    it('SAML-22 an rsa-sha256 signature over a SHA-1 digest is refused', async () => {
      const a = await io.fresh();
      const signed = signBoth(unsignedXml(a.answer.SAMLResponse), env.idp.idp, { response: { digestAlgorithm: SHA1 } });
      await io.expectRefused(a, b64(signed), /digest algorithm .*sha1 not allowed/);
    });
  });
});
