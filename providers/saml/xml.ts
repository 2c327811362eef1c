import { DOMParser } from '@xmldom/xmldom';

// Small, strict DOM helpers for SAML. Elements are selected by namespace and local name (never by
// prefix, never by XPath over the whole document), so a wrapped or prefixed decoy is not picked up.

export const NS = {
  protocol: 'urn:oasis:names:tc:SAML:2.0:protocol',
  assertion: 'urn:oasis:names:tc:SAML:2.0:assertion',
  metadata: 'urn:oasis:names:tc:SAML:2.0:metadata',
  dsig: 'http://www.w3.org/2000/09/xmldsig#',
  xenc: 'http://www.w3.org/2001/04/xmlenc#',
  xenc11: 'http://www.w3.org/2009/xmlenc11#',
} as const;

export class SamlXmlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SamlXmlError';
  }
}

const ELEMENT_NODE = 1;
const TEXT_NODE = 3;
const CDATA_SECTION_NODE = 4;
const COMMENT_NODE = 8;
const PROCESSING_INSTRUCTION_NODE = 7;
const DOCUMENT_TYPE_NODE = 10;

/**
 * Parses XML strictly: no DOCTYPE (so no entities, no XXE), no stray content, warnings are errors,
 * exactly one root element and no text around it.
 */
export function parseXml(xml: string, what: string): Document {
  // Entity declarations are the XXE and billion-laughs vector; SAML never needs a DOCTYPE.
  if (/<!DOCTYPE/i.test(xml) || /<!ENTITY/i.test(xml)) throw new SamlXmlError(`${what}: DOCTYPE not allowed`);
  // xmldom drops text before the root without a word; a well-formed document starts with markup.
  if (!/^\uFEFF?\s*</.test(xml)) throw new SamlXmlError(`${what}: content before the root element`);
  const problems: string[] = [];
  const onProblem = (msg: string): void => {
    problems.push(msg);
  };
  const doc = new DOMParser({ locator: {}, errorHandler: { warning: onProblem, error: onProblem, fatalError: onProblem } }).parseFromString(xml, 'text/xml');
  if (problems.length > 0) throw new SamlXmlError(`${what}: malformed XML`);
  let roots = 0;
  for (let n = doc.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === ELEMENT_NODE) roots++;
    else if (n.nodeType === DOCUMENT_TYPE_NODE) throw new SamlXmlError(`${what}: DOCTYPE not allowed`);
    else if (n.nodeType === PROCESSING_INSTRUCTION_NODE && n.nodeName.toLowerCase() !== 'xml') throw new SamlXmlError(`${what}: processing instruction not allowed`);
    else if ((n.nodeType === TEXT_NODE || n.nodeType === CDATA_SECTION_NODE) && (n.nodeValue ?? '').trim() !== '') throw new SamlXmlError(`${what}: content after the root element`);
  }
  if (roots !== 1 || !doc.documentElement) throw new SamlXmlError(`${what}: expected exactly one root element`);
  // SAML messages are a dozen levels deep; anything far deeper is an attack on recursive walkers.
  const stack: Array<[Element, number]> = [[doc.documentElement, 1]];
  while (stack.length) {
    const [el, depth] = stack.pop()!;
    if (depth > MAX_DEPTH) throw new SamlXmlError(`${what}: nested too deeply`);
    for (let n = el.firstChild; n; n = n.nextSibling) if (isElement(n)) stack.push([n, depth + 1]);
  }
  return doc;
}

const MAX_DEPTH = 64;

export function isElement(node: Node | null): node is Element {
  return node !== null && node.nodeType === ELEMENT_NODE;
}

export function is(el: Element, ns: string, localName: string): boolean {
  return el.namespaceURI === ns && el.localName === localName;
}

/** Direct child elements with this namespace and local name. */
export function children(parent: Element, ns: string, localName: string): Element[] {
  const out: Element[] = [];
  for (let n = parent.firstChild; n; n = n.nextSibling) if (isElement(n) && is(n, ns, localName)) out.push(n);
  return out;
}

/** At most one direct child; two are refused (a classic smuggling shape). */
export function optionalChild(parent: Element, ns: string, localName: string, what: string): Element | undefined {
  const found = children(parent, ns, localName);
  if (found.length > 1) throw new SamlXmlError(`${what}: more than one ${localName}`);
  return found[0];
}

export function requiredChild(parent: Element, ns: string, localName: string, what: string): Element {
  const found = optionalChild(parent, ns, localName, what);
  if (!found) throw new SamlXmlError(`${what}: missing ${localName}`);
  return found;
}

/** Every descendant element (document order), with this namespace and local name, or all when omitted. */
export function descendants(root: Element, ns?: string, localName?: string): Element[] {
  // Iterative, in document order: no recursion depth to exhaust.
  const out: Element[] = [];
  const stack: Element[] = [];
  for (let n = root.lastChild; n; n = n.previousSibling) if (isElement(n)) stack.push(n);
  while (stack.length) {
    const el = stack.pop()!;
    if ((ns === undefined || el.namespaceURI === ns) && (localName === undefined || el.localName === localName)) out.push(el);
    for (let n = el.lastChild; n; n = n.previousSibling) if (isElement(n)) stack.push(n);
  }
  return out;
}

/** Descendants matched by local name only, whatever their namespace (for counting decoys). */
export function descendantsByLocalName(root: Element, localName: string): Element[] {
  return descendants(root).filter((el) => el.localName === localName);
}

/**
 * The element's text: all text and CDATA descendants joined, comments skipped. Refuses element
 * children, so a NameID cannot carry markup. Comment injection (`admin@a.example<!---->.evil`) yields
 * the full text, never the prefix.
 */
export function textOf(el: Element, what: string): string {
  let out = '';
  for (let n = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 3 || n.nodeType === 4) out += n.nodeValue ?? '';
    else if (n.nodeType === COMMENT_NODE) continue;
    else throw new SamlXmlError(`${what}: unexpected content`);
  }
  return out;
}

export function attr(el: Element, name: string): string | undefined {
  return el.hasAttribute(name) ? el.getAttribute(name) ?? undefined : undefined;
}

/** An xs:dateTime in epoch milliseconds; SAML requires UTC. */
export function instant(value: string | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(value)) throw new SamlXmlError(`${what}: not a UTC dateTime`);
  const ms = Date.parse(value);
  if (!Number.isFinite(ms)) throw new SamlXmlError(`${what}: not a dateTime`);
  return ms;
}

export function xmlEscape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}
