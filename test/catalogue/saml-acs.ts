// Shared steps for the SAML catalogue tests (not a test file): a genuine SimpleSAMLphp response for a
// fresh login transaction, posted (as is, mutated or re-signed) to the broker's ACS, and the checks a
// refusal must pass: the generic 401 page that names no check, no session cookie, nothing created,
// and the audited reason, so a case cannot pass for the wrong reason.
import { createSign } from 'node:crypto';
import { createServer } from 'node:http';
import { expect } from 'vitest';
import { XMLSerializer } from '@xmldom/xmldom';
import { SignedXml } from 'xml-crypto';
import { XML_NS, decodeResponse, encodeResponse, first, followToClient, loginAtIdp, snapshot, startLogin, type IdpAnswer, type PendingLogin, type SamlEnv, type SamlId } from '../providers/saml/harness.ts';
import type { KeyPair } from '../peers/simplesamlphp.ts';
import { freePort } from '../peers/ports.ts';

export const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
export const SHA256 = 'http://www.w3.org/2001/04/xmlenc#sha256';
export const EXC_C14N = 'http://www.w3.org/2001/10/xml-exc-c14n#';
export const ENVELOPED = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';
export const RESPONSE_XPATH = "/*[local-name(.)='Response']";
export const ASSERTION_XPATH = "/*[local-name(.)='Response']/*[local-name(.)='Assertion']";
const RESPONSE_ISSUER_XPATH = "/*[local-name(.)='Response']/*[local-name(.)='Issuer']";
const ASSERTION_ISSUER_XPATH = "/*[local-name(.)='Response']/*[local-name(.)='Assertion']/*[local-name(.)='Issuer']";

export const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

export interface Attempt {
  login: PendingLogin;
  answer: IdpAnswer;
}

export function acs(env: SamlEnv) {
  async function fresh(upstream: SamlId = 'org', user = 'bob'): Promise<Attempt> {
    const login = await startLogin(env, upstream);
    const answer = await loginAtIdp(login.browser, login.ssoRedirect, user, `${user}-password`);
    return { login, answer };
  }

  function post(a: Attempt, samlResponse: string, relayState = a.answer.RelayState, acsUrl = a.answer.acs): Promise<Response> {
    return a.login.browser.postForm(acsUrl, { SAMLResponse: samlResponse, RelayState: relayState });
  }

  async function expectRefused(a: Attempt, samlResponse: string, reason: RegExp | undefined, options: { relayState?: string; acsUrl?: string } = {}): Promise<Response> {
    const before = snapshot(env.db);
    const failures = env.failures.length;
    const identities = env.identities.length;
    const res = await post(a, samlResponse, options.relayState, options.acsUrl);
    const html = await res.text();
    expect(res.status, html.slice(0, 300)).toBe(401);
    expect(res.headers.get('location')).toBeNull();
    expect(html).toContain('We could not verify your sign-in');
    expect(html).not.toMatch(/signature|audience|recipient|destination|InResponseTo|assertion|digest|transform|not allowed|DTD|XSLT/i);
    expect(res.headers.getSetCookie().some((c) => /^_session(\.sig)?=/.test(c))).toBe(false);
    expect(snapshot(env.db)).toEqual(before);
    expect(env.identities.length, 'no identity came out of the connector').toBe(identities);
    if (reason) {
      expect(env.failures.length, 'the connector refused it').toBe(failures + 1);
      expect(env.failures.at(-1)).toMatch(reason);
    }
    return res;
  }

  async function expectAccepted(a: Attempt, samlResponse: string, relayState?: string): Promise<URL> {
    const res = await post(a, samlResponse, relayState);
    const back = await followToClient(env, a.login.browser, res, a.answer.acs);
    expect(back.searchParams.get('code')).toBeTruthy();
    return back;
  }

  return { fresh, post, expectRefused, expectAccepted };
}

export function mutate(samlResponse: string, fn: (doc: Document) => void): string {
  const doc = decodeResponse(samlResponse);
  fn(doc);
  return encodeResponse(doc);
}

export function setAll(doc: Document, ns: string, name: string, attr: string, value: string | null): void {
  for (const el of Array.from(doc.getElementsByTagNameNS(ns, name))) {
    if (value === null) el.removeAttribute(attr);
    else el.setAttribute(attr, value);
  }
}

export function removeSignatures(el: Element | Document): void {
  for (const sig of Array.from(el.getElementsByTagNameNS(XML_NS.DSIG, 'Signature'))) sig.parentNode?.removeChild(sig);
}

/** The Signature that is a direct child of `parent`. */
export function ownSignature(parent: Element): Element {
  for (let n = parent.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 1 && (n as Element).localName === 'Signature' && (n as Element).namespaceURI === XML_NS.DSIG) return n as Element;
  }
  throw new Error(`no Signature on ${parent.localName}`);
}

export interface SignSpec {
  key: KeyPair;
  /** What is signed (the reference). */
  target: string;
  /** Where the Signature goes (after this element). */
  after: string;
  isEmptyUri?: boolean;
  signatureAlgorithm?: string;
  digestAlgorithm?: string;
  transforms?: string[];
}

/** One XML signature, with full control of reference and placement (the harness's craft() signs the usual two). */
export function signXml(xml: string, spec: SignSpec): string {
  const sig = new SignedXml({ privateKey: spec.key.keyPem, publicCert: spec.key.certPem, signatureAlgorithm: spec.signatureAlgorithm ?? RSA_SHA256, canonicalizationAlgorithm: EXC_C14N });
  sig.addReference({ xpath: spec.target, transforms: spec.transforms ?? [ENVELOPED, EXC_C14N], digestAlgorithm: spec.digestAlgorithm ?? SHA256, isEmptyUri: spec.isEmptyUri ?? false });
  sig.computeSignature(xml, { location: { reference: spec.after, action: 'after' } });
  return sig.getSignedXml();
}

/** The usual pair: assertion then response, each with one reference to itself. */
export function signBoth(xml: string, key: KeyPair, override: { response?: Partial<SignSpec>; assertion?: Partial<SignSpec> | false } = {}): string {
  let out = xml;
  if (override.assertion !== false) out = signXml(out, { key, target: ASSERTION_XPATH, after: ASSERTION_ISSUER_XPATH, ...override.assertion });
  return signXml(out, { key, target: RESPONSE_XPATH, after: RESPONSE_ISSUER_XPATH, ...override.response });
}

/** A SimpleSAMLphp response without its signatures, mutated, as XML text ready for signBoth(). */
export function unsignedXml(samlResponse: string, fn?: (doc: Document) => void): string {
  const doc = decodeResponse(samlResponse);
  removeSignatures(doc);
  fn?.(doc);
  return new XMLSerializer().serializeToString(doc);
}

export const b64 = (xml: string): string => Buffer.from(xml, 'utf8').toString('base64');
export const xmlOf = (samlResponse: string): string => Buffer.from(samlResponse, 'base64').toString('utf8');

/**
 * Signs SignedInfo again after it was edited (extra transforms and the like), the way a verifier
 * canonicalises it, so the SignatureValue is valid and only the edited part can be the reason for a refusal.
 */
export function resignSignedInfo(signature: Element, key: KeyPair): void {
  const verifier = new SignedXml({ publicCert: key.certPem });
  verifier.loadSignature(signature);
  // TypeScript-private in xml-crypto, but it is exactly what checkSignature() verifies the SignatureValue over.
  const canon = (verifier as unknown as { getCanonSignedInfoXml(doc: Document): string }).getCanonSignedInfoXml(signature.ownerDocument);
  const value = first(signature, XML_NS.DSIG, 'SignatureValue');
  while (value.firstChild) value.removeChild(value.firstChild);
  value.appendChild(signature.ownerDocument.createTextNode(createSign('RSA-SHA256').update(canon).sign(key.keyPem, 'base64')));
}

/** The digest a verifier computes for the (possibly tampered) element a signature references. */
export function calculatedDigest(xml: string, signature: Element, key: KeyPair): string {
  const verifier = new SignedXml({ publicCert: key.certPem });
  verifier.loadSignature(signature);
  try {
    verifier.checkSignature(xml);
  } catch {
    // A wrong SignatureValue throws after the references were computed.
  }
  for (const ref of verifier.getReferences()) {
    const m = /calculated digest is (\S+) but/.exec(ref.validationError?.message ?? '');
    if (m) return m[1];
  }
  throw new Error('the references still validate: nothing was tampered with');
}

/**
 * An out-of-band listener on loopback: an entity, DTD or XSLT `document()` the broker evaluated would call
 * it, so a test compares `hits()` before and after. Every request gets `body`.
 */
export async function oobListener(body: string): Promise<{ base: string; hits(): number; close(): Promise<void> }> {
  let hits = 0;
  const server = createServer((_req, res) => {
    hits++;
    res.end(body);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${port}`,
    hits: () => hits,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
