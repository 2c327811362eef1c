import { NS, SamlXmlError, attr, children, descendants, descendantsByLocalName, is, isElement } from '../xml.ts';

// The shape of a SAML Response before any signature is checked: one root Response, exactly one
// assertion (plain or encrypted) and it is a direct child, no duplicated IDs, and signatures only
// where SAML puts them. This refuses the signature-wrapping family (XSW1-8: decoy assertions in
// Extensions, inside Signature/Object, nested in each other) before the XML reaches node-saml.

const ID_ATTRIBUTES = ['ID', 'Id', 'id'];
const XMLNS = 'http://www.w3.org/2000/xmlns/';

export interface Envelope {
  response: Element;
  /** The one assertion, or the one EncryptedAssertion. */
  assertion: Element;
  encrypted: boolean;
}

export function checkUniqueIds(root: Element, what: string): void {
  const seen = new Set<string>();
  for (const el of [root, ...descendants(root)]) {
    // By local name in any namespace (evil:ID, xml:id): xml-crypto resolves references that way too.
    for (let i = 0; i < el.attributes.length; i++) {
      const attribute = el.attributes[i];
      if (attribute.namespaceURI === XMLNS || !ID_ATTRIBUTES.includes(attribute.localName ?? attribute.name)) continue;
      if (seen.has(attribute.value)) throw new SamlXmlError(`${what}: duplicate ID`);
      seen.add(attribute.value);
    }
  }
}

/** Signatures may only sign their parent, and only a Response or an Assertion. */
export function checkSignaturePlacement(root: Element, what: string): void {
  for (const sig of descendantsByLocalName(root, 'Signature')) {
    const parent = sig.parentNode;
    if (sig.namespaceURI !== NS.dsig || !isElement(parent)) throw new SamlXmlError(`${what}: unexpected Signature element`);
    if (!is(parent, NS.protocol, 'Response') && !is(parent, NS.assertion, 'Assertion') && !is(parent, NS.protocol, 'LogoutRequest') && !is(parent, NS.protocol, 'LogoutResponse')) {
      throw new SamlXmlError(`${what}: Signature in an unexpected place`);
    }
  }
  for (const el of [root, ...descendants(root)]) {
    let count = 0;
    for (let n = el.firstChild; n; n = n.nextSibling) if (isElement(n) && n.localName === 'Signature') count++;
    if (count > 1) throw new SamlXmlError(`${what}: more than one Signature on one element`);
  }
}

export function checkEnvelope(doc: Document): Envelope {
  const response = doc.documentElement;
  if (!is(response, NS.protocol, 'Response')) throw new SamlXmlError('response: root is not a SAML 2.0 Response');
  // Counted by local name in any namespace: a decoy in a foreign namespace is refused too.
  const plain = descendantsByLocalName(response, 'Assertion');
  const encrypted = descendantsByLocalName(response, 'EncryptedAssertion');
  if (plain.length + encrypted.length === 0) {
    // Usually an error answer (AuthnFailed, NoPassive, NoAuthnContext): say which, for the audit log.
    const code = children(children(response, NS.protocol, 'Status')[0] ?? response, NS.protocol, 'StatusCode')[0];
    const sub = code ? children(code, NS.protocol, 'StatusCode')[0] : undefined;
    throw new SamlXmlError(`response: no assertion (IdP status ${[code, sub].map((c) => (c ? attr(c, 'Value') : undefined)).filter(Boolean).join(' / ') || 'none'})`);
  }
  if (plain.length + encrypted.length !== 1) throw new SamlXmlError('response: expected exactly one assertion');
  const assertion = plain[0] ?? encrypted[0];
  if (assertion.parentNode !== response || assertion.namespaceURI !== NS.assertion) throw new SamlXmlError('response: assertion is not a direct child of the Response');
  checkUniqueIds(response, 'response');
  checkSignaturePlacement(response, 'response');
  return { response, assertion, encrypted: encrypted.length === 1 };
}

/** A decrypted assertion: exactly one Assertion, as the root, with nothing nested in it. */
export function checkDecryptedAssertion(doc: Document): Element {
  const root = doc.documentElement;
  if (!is(root, NS.assertion, 'Assertion')) throw new SamlXmlError('encrypted assertion: content is not an Assertion');
  if (descendantsByLocalName(root, 'Assertion').length > 0 || descendantsByLocalName(root, 'EncryptedAssertion').length > 0) {
    throw new SamlXmlError('encrypted assertion: nested assertion');
  }
  checkUniqueIds(root, 'assertion');
  checkSignaturePlacement(root, 'assertion');
  return root;
}
