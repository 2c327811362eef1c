import { NS, SamlXmlError, attr, children, descendantsByLocalName, isElement } from '../xml.ts';

// Algorithm allow-lists, checked on the XML before any key is used. node-saml 5.1 passes encrypted
// assertions to xml-encryption 3.x without options, and that accepts RSA-1_5, 3DES and AES-CBC (padding
// oracles); xml-crypto still accepts SHA-1. Only RSA-OAEP + AES-GCM and SHA-2 signatures get through.

const SIGNATURE_METHODS = new Set([
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha384',
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512',
]);
const DIGEST_METHODS = new Set([
  'http://www.w3.org/2001/04/xmlenc#sha256',
  'http://www.w3.org/2001/04/xmldsig-more#sha384',
  'http://www.w3.org/2001/04/xmlenc#sha512',
]);
const CANONICALIZATION = new Set(['http://www.w3.org/2001/10/xml-exc-c14n#', 'http://www.w3.org/TR/2001/REC-xml-c14n-20010315']);
// Enveloped signature plus one canonicalisation; never XSLT or XPath filters.
const TRANSFORMS = new Set(['http://www.w3.org/2000/09/xmldsig#enveloped-signature', ...CANONICALIZATION]);

export const CONTENT_ENCRYPTION = new Set(['http://www.w3.org/2009/xmlenc11#aes128-gcm', 'http://www.w3.org/2009/xmlenc11#aes256-gcm']);
export const KEY_TRANSPORT = new Set(['http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p']);

/** Redirect-binding SigAlg values accepted on logout messages. */
export const REDIRECT_SIG_ALGS: Record<string, string> = {
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256': 'RSA-SHA256',
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha384': 'RSA-SHA384',
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512': 'RSA-SHA512',
};

function one(parent: Element, ns: string, name: string, what: string): Element {
  const found = children(parent, ns, name);
  if (found.length !== 1) throw new SamlXmlError(`${what}: expected one ${name}`);
  return found[0];
}

/** Every XML signature under root: SHA-2 only, one same-document reference to its parent's ID, at most two known transforms. */
export function checkSignatureAlgorithms(root: Element, what: string): void {
  for (const sig of [...(root.localName === 'Signature' ? [root] : []), ...descendantsByLocalName(root, 'Signature')]) {
    const signedInfo = one(sig, NS.dsig, 'SignedInfo', what);
    const c14n = attr(one(signedInfo, NS.dsig, 'CanonicalizationMethod', what), 'Algorithm') ?? '';
    if (!CANONICALIZATION.has(c14n)) throw new SamlXmlError(`${what}: canonicalization ${c14n} not allowed`);
    const method = attr(one(signedInfo, NS.dsig, 'SignatureMethod', what), 'Algorithm') ?? '';
    if (!SIGNATURE_METHODS.has(method)) throw new SamlXmlError(`${what}: signature algorithm ${method} not allowed`);
    const reference = one(signedInfo, NS.dsig, 'Reference', what);
    const parent = sig.parentNode;
    const parentId = isElement(parent) ? attr(parent, 'ID') : undefined;
    // URI="" (the whole document) or a pointer to another element is a wrapping vector.
    if (!parentId || attr(reference, 'URI') !== `#${parentId}`) throw new SamlXmlError(`${what}: signature reference does not point at its parent`);
    const transformsEl = children(reference, NS.dsig, 'Transforms');
    if (transformsEl.length > 1) throw new SamlXmlError(`${what}: more than one Transforms`);
    const transforms = transformsEl.length ? children(transformsEl[0], NS.dsig, 'Transform') : [];
    if (transforms.length > 2) throw new SamlXmlError(`${what}: too many transforms`);
    for (const t of transforms) {
      const alg = attr(t, 'Algorithm') ?? '';
      if (!TRANSFORMS.has(alg)) throw new SamlXmlError(`${what}: transform ${alg} not allowed`);
    }
    const digest = attr(one(reference, NS.dsig, 'DigestMethod', what), 'Algorithm') ?? '';
    if (!DIGEST_METHODS.has(digest)) throw new SamlXmlError(`${what}: digest algorithm ${digest} not allowed`);
  }
}

/**
 * Every EncryptionMethod inside an EncryptedAssertion: AES-GCM for the content, RSA-OAEP for the key.
 * Anything else (RSA-1_5, 3DES, AES-CBC, unknown, misplaced) is refused before decryption, so no
 * decryption oracle is ever exposed.
 */
export function checkEncryptionAlgorithms(encryptedAssertion: Element): void {
  const data = descendantsByLocalName(encryptedAssertion, 'EncryptedData');
  if (data.length !== 1 || data[0].namespaceURI !== NS.xenc || data[0].parentNode !== encryptedAssertion) {
    throw new SamlXmlError('encrypted assertion: expected one EncryptedData');
  }
  if (children(data[0], NS.xenc, 'EncryptionMethod').length !== 1) throw new SamlXmlError('encrypted assertion: EncryptedData needs one EncryptionMethod');
  const keys = descendantsByLocalName(encryptedAssertion, 'EncryptedKey');
  if (keys.length < 1) throw new SamlXmlError('encrypted assertion: no EncryptedKey');
  for (const key of keys) {
    if (children(key, NS.xenc, 'EncryptionMethod').length !== 1) throw new SamlXmlError('encrypted assertion: EncryptedKey needs one EncryptionMethod');
  }
  for (const method of descendantsByLocalName(encryptedAssertion, 'EncryptionMethod')) {
    const alg = attr(method, 'Algorithm') ?? '';
    const parent = method.parentNode;
    const parentName = isElement(parent) ? parent.localName : '';
    if (method.namespaceURI !== NS.xenc) throw new SamlXmlError('encrypted assertion: EncryptionMethod in an unknown namespace');
    if (parentName === 'EncryptedData' && CONTENT_ENCRYPTION.has(alg)) continue;
    if (parentName === 'EncryptedKey' && KEY_TRANSPORT.has(alg)) continue;
    throw new SamlXmlError(`encrypted assertion: algorithm ${alg || '(none)'} not allowed`);
  }
  // AgreementMethod, DerivedKey and friends are not part of the SAML profile in use.
  for (const name of ['AgreementMethod', 'DerivedKey']) {
    if (descendantsByLocalName(encryptedAssertion, name).length > 0) throw new SamlXmlError(`encrypted assertion: ${name} not supported`);
  }
}
