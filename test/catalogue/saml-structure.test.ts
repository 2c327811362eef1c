import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { promisify } from 'node:util';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import xmlenc from 'xml-encryption';
import { simpleSamlAvailable } from '../peers/simplesamlphp.ts';
import { XML_NS, craft, decodeResponse, encodeResponse, first, startSamlEnv, type SamlEnv } from '../providers/saml/harness.ts';
import { acs, b64, mutate, ownSignature, removeSignatures, oobListener, xmlOf } from './saml-acs.ts';

// Security catalogue section 2, document structure: the eight XML signature wrapping shapes after
// SAML Raider's XSWHelpers (SAML-05, -07, -08, -10, -11 and the rest of the class), several assertions
// (SAML-13), several roots (SAML-14), XXE with out-of-band fetches (SAML-23) and parser differentials
// (SAML-41). The wrapping cases mutate a response the IdP signed; the signed content itself is intact,
// which is the whole point of wrapping.

const { SAML, SAMLP, DSIG } = XML_NS;

describe.skipIf(!simpleSamlAvailable)('SAML catalogue: wrapping, several assertions or roots, XXE, parser differentials', () => {
  let env: SamlEnv;
  let io: ReturnType<typeof acs>;
  let oob: Awaited<ReturnType<typeof oobListener>>;
  beforeAll(async () => {
    env = await startSamlEnv();
    io = acs(env);
    oob = await oobListener('<!ENTITY leak "x">');
  });
  afterAll(async () => {
    await oob?.close();
    await env?.close();
  });

  /** A response the IdP signed (assertion and response), for this transaction. */
  const signedFor = (samlResponse: string) => craft(samlResponse, env.idp.idp);

  /** The signed assertion made evil: new ID, NameID admin; optionally without its signature. */
  function evil(assertion: Element, keepSignature: boolean): Element {
    if (!keepSignature) removeSignatures(assertion);
    assertion.setAttribute('ID', '_evil_assertion_ID');
    first(assertion, SAML, 'NameID').textContent = 'admin';
    return assertion;
  }

  function copyWithoutSignature(el: Element): Element {
    const copy = el.cloneNode(true) as Element;
    for (let n = copy.firstChild; n; n = n.nextSibling) if (n.nodeType === 1 && (n as Element).localName === 'Signature') copy.removeChild(n);
    return copy;
  }

  // SAML Raider XSWHelpers.applyXSW1..8, on the IdP-signed response.
  const XSW: Array<[string, string, (d: Document) => void]> = [
    ['SAML-05', 'XSW1: the signed Response copied into its own Signature, the outer Response made evil', (d) => {
      const response = d.documentElement;
      ownSignature(response).appendChild(copyWithoutSignature(response));
      response.setAttribute('ID', '_evil_response_ID');
      first(response, SAML, 'NameID').textContent = 'admin';
    }],
    ['SAML-05', 'XSW2: the signed Response copied in front of its Signature, the outer Response made evil', (d) => {
      const response = d.documentElement;
      const signature = ownSignature(response);
      response.insertBefore(copyWithoutSignature(response), signature);
      response.setAttribute('ID', '_evil_response_ID');
      first(response, SAML, 'NameID').textContent = 'admin';
    }],
    ['SAML-07', 'XSW3: an unsigned evil assertion as a sibling before the signed one', (d) => {
      const signed = first(d, SAML, 'Assertion');
      d.documentElement.insertBefore(evil(signed.cloneNode(true) as Element, false), signed);
    }],
    ['SAML-08', 'XSW4: an evil assertion appended, with the signed assertion nested inside it', (d) => {
      const signed = first(d, SAML, 'Assertion');
      const bad = evil(signed.cloneNode(true) as Element, false);
      d.documentElement.replaceChild(bad, signed);
      bad.appendChild(signed);
    }],
    ['SAML-08', 'XSW5: the signed assertion made evil in place, an unsigned copy of the original appended to the Response', (d) => {
      const signed = first(d, SAML, 'Assertion');
      const original = copyWithoutSignature(signed);
      evil(signed, true);
      d.documentElement.appendChild(original);
    }],
    ['SAML-10', 'XSW6: the assertion made evil in place, an unsigned copy of the original inside its Signature', (d) => {
      const signed = first(d, SAML, 'Assertion');
      const original = copyWithoutSignature(signed);
      ownSignature(signed).appendChild(original);
      evil(signed, true);
    }],
    ['SAML-11', 'XSW7: an unsigned evil assertion inside an Extensions element before the original', (d) => {
      const signed = first(d, SAML, 'Assertion');
      const ext = d.createElementNS(SAMLP, 'samlp:Extensions');
      ext.appendChild(evil(signed.cloneNode(true) as Element, false));
      d.documentElement.insertBefore(ext, first(d, SAMLP, 'Status'));
    }],
    ['SAML-10', 'XSW8: the assertion made evil in place, the unsigned original inside an Object in its Signature', (d) => {
      const signed = first(d, SAML, 'Assertion');
      const original = copyWithoutSignature(signed);
      const object = d.createElementNS(DSIG, 'ds:Object');
      object.appendChild(original);
      ownSignature(signed).appendChild(object);
      evil(signed, true);
    }],
  ];
  for (const [id, name, apply] of XSW) {
    it(`${id} ${name} is refused`, async () => {
      const a = await io.fresh();
      await io.expectRefused(a, mutate(signedFor(a.answer.SAMLResponse), apply), /exactly one assertion|not a direct child|Signature in an unexpected place|duplicate ID/);
    });
  }

  it('SAML-05 the only (signed) assertion moved into the Response’s Signature/Object is refused', async () => {
    const a = await io.fresh();
    const wrapped = mutate(signedFor(a.answer.SAMLResponse), (d) => {
      const signed = first(d, SAML, 'Assertion');
      const object = d.createElementNS(DSIG, 'ds:Object');
      ownSignature(d.documentElement).appendChild(object);
      object.appendChild(signed);
    });
    await io.expectRefused(a, wrapped, /not a direct child/);
  });

  describe('SAML-13 more than one assertion', () => {
    it('SAML-13 two assertions, both validly signed by the IdP (another login’s first), are refused', async () => {
      const other = await io.fresh('org', 'alice');
      const a = await io.fresh();
      const foreign = first(decodeResponse(signedFor(other.answer.SAMLResponse)), SAML, 'Assertion');
      // Each assertion keeps a valid IdP signature of its own; the Response is signed again over both.
      const doc = decodeResponse(signedFor(a.answer.SAMLResponse));
      doc.documentElement.insertBefore(doc.importNode(foreign, true), first(doc, SAML, 'Assertion'));
      await io.expectRefused(a, craftResponseOnly(encodeResponse(doc)), /exactly one assertion/);
    });

    it('SAML-13 an assertion next to an EncryptedAssertion (both the IdP’s) is refused', async () => {
      for (const order of ['plain first', 'encrypted first'] as const) {
        const a = await io.fresh('org-enc');
        const doc = decodeResponse(a.answer.SAMLResponse);
        const wrapper = first(doc, SAML, 'EncryptedAssertion');
        const assertionXml = await promisify(xmlenc.decrypt)(new XMLSerializer().serializeToString(wrapper), { key: env.enc.keyPem });
        const plain = doc.importNode(new DOMParser().parseFromString(assertionXml, 'text/xml').documentElement, true);
        if (order === 'plain first') doc.documentElement.insertBefore(plain, wrapper);
        else doc.documentElement.insertBefore(plain, wrapper.nextSibling);
        await io.expectRefused(a, craftResponseOnly(encodeResponse(doc)), /exactly one assertion/);
      }
    });
  });

  /** Signs only the Response again (assertions keep the IdP's own signatures). */
  function craftResponseOnly(samlResponse: string): string {
    const doc = decodeResponse(samlResponse);
    const keep = Array.from(doc.getElementsByTagNameNS(DSIG, 'Signature')).filter((s) => s.parentNode !== doc.documentElement);
    // craft() strips every signature; put the assertions' back after it signed the Response.
    const saved = keep.map((s) => ({ parentId: (s.parentNode as Element).getAttribute('ID'), xml: new XMLSerializer().serializeToString(s) }));
    expect(saved.length).toBeGreaterThanOrEqual(1);
    const unsigned = encodeResponse(doc);
    return craft(unsigned, env.idp.idp, {
      signAssertion: false,
      mutate: (d) => {
        for (const s of saved) {
          const parent = Array.from(d.getElementsByTagNameNS(SAML, 'Assertion')).find((x) => x.getAttribute('ID') === s.parentId);
          if (!parent) throw new Error('assertion gone');
          const issuer = first(parent, SAML, 'Issuer');
          parent.insertBefore(d.importNode(new DOMParser().parseFromString(s.xml, 'text/xml').documentElement, true), issuer.nextSibling);
        }
      },
    });
  }

  describe('SAML-14 several roots or content after the root', () => {
    it('SAML-14 a second Response after the signed one or before it, text after or before the root: refused', async () => {
      for (const shape of ['evil after', 'evil before', 'text after', 'text before', 'comment and element after'] as const) {
        const a = await io.fresh();
        const xml = xmlOf(signedFor(a.answer.SAMLResponse)).replace(/^<\?xml[^>]*\?>\s*/, '');
        const evilCopy = xml.replace(/<(\w+:)?NameID([^>]*)>[^<]*</, '<$1NameID$2>admin<').replace(/ ID="([^"]+)"/, ' ID="_evil_root"');
        const hostile = { 'evil after': xml + evilCopy, 'evil before': evilCopy + xml, 'text after': `${xml}trailing`, 'text before': `leading${xml}`, 'comment and element after': `${xml}<!-- x --><x/>` }[shape];
        await io.expectRefused(a, b64(hostile), /malformed XML|exactly one root|content (before|after) the root/);
      }
    });
  });

  describe('SAML-23 XXE', () => {
    const withDoctype = (samlResponse: string, doctype: string, reference = '') => {
      const xml = xmlOf(samlResponse).replace(/^<\?xml[^>]*\?>\s*/, '');
      return b64(`<?xml version="1.0"?>${doctype}${reference ? xml.replace(/(<(?:\w+:)?NameID\b[^>]*>)/, `$1${reference}`) : xml}`);
    };

    it('SAML-23 external entities over http and file, a parameter entity, an external DTD: refused, nothing fetched', async () => {
      const cases: Array<[string, string]> = [
        [`<!DOCTYPE r [<!ENTITY x SYSTEM "${oob.base}/entity">]>`, '&x;'],
        ['<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/hostname">]>', '&x;'],
        [`<!DOCTYPE r [<!ENTITY % p SYSTEM "${oob.base}/param.dtd"> %p;]>`, ''],
        [`<!DOCTYPE samlp:Response SYSTEM "${oob.base}/external.dtd">`, ''],
        [`<!doctype r [<!ENTITY x SYSTEM "${oob.base}/lower">]>`, '&x;'],
      ];
      const hits = oob.hits();
      for (const [doctype, reference] of cases) {
        const a = await io.fresh();
        await io.expectRefused(a, withDoctype(a.answer.SAMLResponse, doctype, reference), /DOCTYPE/);
      }
      expect(oob.hits()).toBe(hits);
    });

    it('SAML-23 the same XXE in UTF-16 (where a byte-wise DOCTYPE search would miss it) is refused, nothing fetched', async () => {
      const hits = oob.hits();
      const a = await io.fresh();
      const xml = `<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY x SYSTEM "${oob.base}/utf16">]>${xmlOf(a.answer.SAMLResponse).replace(/^<\?xml[^>]*\?>\s*/, '').replace(/(<(?:\w+:)?NameID\b[^>]*>)/, '$1&x;')}`;
      const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(xml, 'utf16le')]).toString('base64');
      await io.expectRefused(a, utf16, /malformed|DOCTYPE|root/);
      expect(oob.hits()).toBe(hits);
    });
  });

  describe('SAML-41 parser differentials', () => {
    it('SAML-41 a decoy Assertion whose prefix is rebound to another namespace is still counted, and refused', async () => {
      const a = await io.fresh();
      const hostile = mutate(signedFor(a.answer.SAMLResponse), (d) => {
        const decoy = first(d, SAML, 'Assertion').cloneNode(true) as Element;
        removeSignatures(decoy);
        const foreign = d.createElementNS('urn:example:not-saml', 'saml:Assertion');
        for (let n = decoy.firstChild; n; n = decoy.firstChild) foreign.appendChild(n);
        const ext = d.createElementNS(SAMLP, 'samlp:Extensions');
        ext.appendChild(foreign);
        d.documentElement.insertBefore(ext, first(d, SAMLP, 'Status'));
      });
      expect(xmlOf(hostile)).toContain('xmlns:saml="urn:example:not-saml"');
      await io.expectRefused(a, hostile, /exactly one assertion/);
    });

    it('SAML-41 a NameID with markup inside (text readers and DOM readers disagree) is refused', async () => {
      const a = await io.fresh();
      const hostile = craft(a.answer.SAMLResponse, env.idp.idp, {
        mutate: (d) => {
          const nameId = first(d, SAML, 'NameID');
          const text = nameId.textContent ?? '';
          while (nameId.firstChild) nameId.removeChild(nameId.firstChild);
          nameId.appendChild(d.createTextNode(text));
          nameId.appendChild(d.createElementNS('urn:example:x', 'x:b'));
          nameId.appendChild(d.createTextNode('.evil'));
        },
      });
      await io.expectRefused(a, hostile, /unexpected content|NameID/);
    });

    it('SAML-41 a duplicated attribute, an undeclared prefix, a NUL character reference, a second XML declaration: refused', async () => {
      const signedXml = (s: string) => xmlOf(signedFor(s));
      const shapes: Array<[string, (xml: string) => string]> = [
        ['duplicate ID attribute', (xml) => xml.replace(/(<(?:\w+:)?Assertion\b[^>]*?) ID="([^"]+)"/, '$1 ID="$2" ID="_evil"')],
        ['undeclared prefix', (xml) => xml.replace(/(<(?:\w+:)?Status\b)/, '<undeclared:x/>$1')],
        ['NUL character reference', (xml) => xml.replace(/(<(?:\w+:)?NameID\b[^>]*>)/, '$1&#0;')],
        ['second XML declaration', (xml) => xml.replace(/(<(?:\w+:)?Status\b)/, '<?xml version="1.0"?>$1')],
        ['processing instruction', (xml) => xml.replace(/(<(?:\w+:)?Status\b)/, '<?evil data?>$1')],
      ];
      for (const [name, change] of shapes) {
        const a = await io.fresh();
        const original = signedXml(a.answer.SAMLResponse);
        const hostile = change(original);
        expect(hostile, name).not.toBe(original);
        await io.expectRefused(a, b64(hostile), undefined);
        expect(env.failures.at(-1), name).toMatch(/malformed|processing instruction|DOCTYPE|root|signature|not allowed/i);
      }
    });
  });
});
