import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createPublicKey, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import xmlenc from 'xml-encryption';
import { generateKeyPair, simpleSamlAvailable, type KeyPair } from '../../peers/simplesamlphp.ts';
import {
  XML_NS,
  craft,
  decodeResponse,
  encodeResponse,
  first,
  followToClient,
  loginAtIdp,
  snapshot,
  startLogin,
  startSamlEnv,
  type IdpAnswer,
  type PendingLogin,
  type SamlEnv,
  type SamlId,
} from './harness.ts';

// Hostile responses against the SAML connector (security-catalogue section 2). Each case starts a
// real login at SimpleSAMLphp, takes the IdP's genuine response for that transaction, breaks exactly
// one thing (re-signing with the IdP's own key where the case needs a valid signature), and posts it
// to the ACS. Every refusal must be the generic 401 page, set no session cookie and create nothing;
// the refusal reason (audit only) is checked too, so a case cannot pass for the wrong reason.

const { SAML, SAMLP } = XML_NS;
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

describe.skipIf(!simpleSamlAvailable)('SAML upstream: hostile responses are refused', () => {
  let env: SamlEnv;
  let attacker: KeyPair;
  beforeAll(async () => {
    env = await startSamlEnv();
    attacker = generateKeyPair('attacker');
  });
  afterAll(async () => {
    await env?.close();
  });

  async function fresh(upstream: SamlId = 'org'): Promise<{ login: PendingLogin; answer: IdpAnswer }> {
    const login = await startLogin(env, upstream);
    const answer = await loginAtIdp(login.browser, login.ssoRedirect, 'bob', 'bob-password');
    return { login, answer };
  }

  async function post(login: PendingLogin, answer: IdpAnswer, samlResponse: string, relayState = answer.RelayState): Promise<Response> {
    return login.browser.postForm(answer.acs, { SAMLResponse: samlResponse, RelayState: relayState });
  }

  async function expectRefused(login: PendingLogin, answer: IdpAnswer, samlResponse: string, reason: RegExp | undefined, relayState?: string): Promise<void> {
    const before = snapshot(env.db);
    const failures = env.failures.length;
    const res = await post(login, answer, samlResponse, relayState);
    const html = await res.text();
    expect(res.status, html.slice(0, 300)).toBe(401);
    expect(html).toContain('We could not verify your sign-in');
    // Generic: the page never says which check failed.
    expect(html).not.toMatch(/signature|audience|recipient|destination|InResponseTo|assertion/i);
    expect(res.headers.getSetCookie().some((c) => /^_session(\.sig)?=/.test(c))).toBe(false);
    expect(snapshot(env.db)).toEqual(before);
    if (reason) {
      expect(env.failures.length, 'the connector refused it').toBe(failures + 1);
      expect(env.failures.at(-1)).toMatch(reason);
    }
  }

  async function expectAccepted(login: PendingLogin, answer: IdpAnswer, samlResponse: string, relayState?: string): Promise<URL> {
    const res = await post(login, answer, samlResponse, relayState);
    const back = await followToClient(env, login.browser, res, answer.acs);
    expect(back.searchParams.get('code')).toBeTruthy();
    return back;
  }

  const mutate = (samlResponse: string, fn: (doc: Document) => void): string => {
    const doc = decodeResponse(samlResponse);
    fn(doc);
    return encodeResponse(doc);
  };
  const setAll = (doc: Document, ns: string, name: string, attr: string, value: string | null) => {
    for (const el of Array.from(doc.getElementsByTagNameNS(ns, name))) {
      if (value === null) el.removeAttribute(attr);
      else el.setAttribute(attr, value);
    }
  };

  it('positive control: a response re-signed with the IdP key is accepted (so the cases below fail for their own reason)', async () => {
    const { login, answer } = await fresh();
    await expectAccepted(login, answer, craft(answer.SAMLResponse, env.idp.idp));
  });

  describe('signatures and certificates', () => {
    it('wrong IdP certificate configured at the SP: a genuine response is refused', async () => {
      const { login, answer } = await fresh('org-wrongcert');
      await expectRefused(login, answer, answer.SAMLResponse, /signature/i);
    });

    it('tampered assertion: NameID changed after signing', async () => {
      const { login, answer } = await fresh();
      await expectRefused(login, answer, mutate(answer.SAMLResponse, (d) => (first(d, SAML, 'NameID').textContent = 'someone-else')), /signature/i);
    });

    it('tampered assertion: an attribute value changed after signing', async () => {
      const { login, answer } = await fresh();
      const tampered = mutate(answer.SAMLResponse, (d) => {
        const value = Array.from(d.getElementsByTagNameNS(SAML, 'AttributeValue')).find((v) => v.textContent === 'member');
        if (!value) throw new Error('no attribute value');
        value.textContent = 'admin';
      });
      await expectRefused(login, answer, tampered, /signature/i);
    });

    it('signed by another key that carries its own certificate in KeyInfo', async () => {
      const { login, answer } = await fresh();
      await expectRefused(login, answer, craft(answer.SAMLResponse, attacker), /signature/i);
    });

    it('signature exclusion: every signature removed', async () => {
      const { login, answer } = await fresh();
      await expectRefused(login, answer, craft(answer.SAMLResponse, env.idp.idp, { signAssertion: false, signResponse: false }), /signature/i);
    });

    it('response signed but assertion unsigned, and the reverse (both are required)', async () => {
      let { login, answer } = await fresh();
      await expectRefused(login, answer, craft(answer.SAMLResponse, env.idp.idp, { signAssertion: false }), /signature/i);
      ({ login, answer } = await fresh());
      await expectRefused(login, answer, craft(answer.SAMLResponse, env.idp.idp, { signResponse: false }), /signature/i);
    });

    it('SHA-1 signatures and digests are refused', async () => {
      const { login, answer } = await fresh();
      const sha1 = craft(answer.SAMLResponse, env.idp.idp, { signatureAlgorithm: 'http://www.w3.org/2000/09/xmldsig#rsa-sha1', digestAlgorithm: 'http://www.w3.org/2000/09/xmldsig#sha1' });
      await expectRefused(login, answer, sha1, /algorithm .*sha1 not allowed/);
    });
  });

  describe('replay and binding to the login transaction', () => {
    it('replayed response: the same SAMLResponse posted again with a fresh transaction is refused', async () => {
      const first1 = await fresh();
      await expectAccepted(first1.login, first1.answer, first1.answer.SAMLResponse);
      const second = await fresh();
      await expectRefused(second.login, second.answer, first1.answer.SAMLResponse, /InResponseTo/);
    });

    it('the same response posted twice for its own transaction: the transaction is single use', async () => {
      const { login, answer } = await fresh();
      await expectAccepted(login, answer, answer.SAMLResponse);
      await expectRefused(login, answer, answer.SAMLResponse, undefined);
    });

    it('assertion-ID replay cache: an unsolicited response accepted once is refused the second time, even with a fresh transaction', async () => {
      const a = await fresh('org-unsol');
      const unsolicited = craft(a.answer.SAMLResponse, env.idp.idp, {
        mutate: (d) => {
          first(d, SAMLP, 'Response').removeAttribute('InResponseTo');
          setAll(d, SAML, 'SubjectConfirmationData', 'InResponseTo', null);
        },
      });
      await expectAccepted(a.login, a.answer, unsolicited);
      const id = first(decodeResponse(unsolicited), SAML, 'Assertion').getAttribute('ID');
      expect(await env.store.replay.has(`saml-assertion:${env.idp.entityId}:${id}`)).toBe(true);
      const b = await fresh('org-unsol');
      await expectRefused(b.login, b.answer, unsolicited, /replayed assertion/, b.answer.RelayState);
    });

    it('unsolicited response (no InResponseTo) where the upstream does not allow it', async () => {
      const { login, answer } = await fresh();
      const unsolicited = craft(answer.SAMLResponse, env.idp.idp, {
        mutate: (d) => {
          first(d, SAMLP, 'Response').removeAttribute('InResponseTo');
          setAll(d, SAML, 'SubjectConfirmationData', 'InResponseTo', null);
        },
      });
      await expectRefused(login, answer, unsolicited, /InResponseTo/);
    });

    it('InResponseTo naming another request (another browser session)', async () => {
      const { login, answer } = await fresh();
      const other = `_${randomBytes(20).toString('hex')}`;
      const foreign = craft(answer.SAMLResponse, env.idp.idp, {
        mutate: (d) => {
          first(d, SAMLP, 'Response').setAttribute('InResponseTo', other);
          setAll(d, SAML, 'SubjectConfirmationData', 'InResponseTo', other);
        },
      });
      await expectRefused(login, answer, foreign, /InResponseTo/);
    });

    it('a response for no login transaction (unknown RelayState) is refused before the connector', async () => {
      const { login, answer } = await fresh();
      await expectRefused(login, answer, answer.SAMLResponse, undefined, randomBytes(24).toString('base64url'));
    });

    it('a response for one upstream posted to another upstream’s ACS', async () => {
      const { answer } = await fresh('org');
      const other = await fresh('org-url');
      // org-url's transaction, org's response (right IdP key, wrong SP and request).
      await expectRefused(other.login, other.answer, answer.SAMLResponse, /Destination|audience|InResponseTo|Recipient/i);
    });
  });

  describe('audience, recipient, destination, issuer, subject', () => {
    it('wrong audience', async () => {
      const { login, answer } = await fresh();
      await expectRefused(login, answer, craft(answer.SAMLResponse, env.idp.idp, { mutate: (d) => (first(d, SAML, 'Audience').textContent = 'https://another-sp.example/metadata') }), /audience/i);
    });

    it('a second AudienceRestriction that excludes the broker', async () => {
      const { login, answer } = await fresh();
      const twice = craft(answer.SAMLResponse, env.idp.idp, {
        mutate: (d) => {
          const restriction = first(d, SAML, 'AudienceRestriction');
          const extra = restriction.cloneNode(true) as Element;
          first(extra, SAML, 'Audience').textContent = 'https://another-sp.example/metadata';
          restriction.parentNode?.appendChild(extra);
        },
      });
      await expectRefused(login, answer, twice, /audience/i);
    });

    it('wrong Recipient', async () => {
      const { login, answer } = await fresh();
      await expectRefused(login, answer, craft(answer.SAMLResponse, env.idp.idp, { mutate: (d) => setAll(d, SAML, 'SubjectConfirmationData', 'Recipient', 'https://another-sp.example/acs') }), /Recipient/);
    });

    it('wrong Destination', async () => {
      const { login, answer } = await fresh();
      await expectRefused(login, answer, craft(answer.SAMLResponse, env.idp.idp, { mutate: (d) => first(d, SAMLP, 'Response').setAttribute('Destination', 'https://another-sp.example/acs') }), /Destination/);
    });

    it('Issuer of the assertion is not the IdP (same key)', async () => {
      const { login, answer } = await fresh();
      const issuer = craft(answer.SAMLResponse, env.idp.idp, {
        mutate: (d) => {
          const assertion = first(d, SAML, 'Assertion');
          first(assertion, SAML, 'Issuer').textContent = 'https://another-idp.example';
        },
      });
      await expectRefused(login, answer, issuer, /Issuer/);
    });

    it('SubjectConfirmation method other than bearer (holder-of-key)', async () => {
      const { login, answer } = await fresh();
      await expectRefused(login, answer, craft(answer.SAMLResponse, env.idp.idp, { mutate: (d) => setAll(d, SAML, 'SubjectConfirmation', 'Method', 'urn:oasis:names:tc:SAML:2.0:cm:holder-of-key') }), /bearer/);
    });

    it('transient NameID where a persistent one is required', async () => {
      const { login, answer } = await fresh();
      await expectRefused(login, answer, craft(answer.SAMLResponse, env.idp.idp, { mutate: (d) => first(d, SAML, 'NameID').setAttribute('Format', 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient') }), /format/i);
    });

    it('comment injection in the NameID: the identity is the full text, never the prefix', async () => {
      const { login, answer } = await fresh();
      const injected = craft(answer.SAMLResponse, env.idp.idp, {
        mutate: (d) => {
          const nameId = first(d, SAML, 'NameID');
          while (nameId.firstChild) nameId.removeChild(nameId.firstChild);
          nameId.appendChild(d.createTextNode('victim'));
          nameId.appendChild(d.createComment(''));
          nameId.appendChild(d.createTextNode('.evil'));
        },
      });
      const failures = env.failures.length;
      const identities = env.identities.length;
      const res = await post(login, answer, injected);
      if (res.status === 401) {
        expect(env.failures.length).toBe(failures + 1);
      } else {
        expect(env.identities.length).toBe(identities + 1);
        expect(env.identities.at(-1)?.subject).toBe('victim.evil');
      }
    });
  });

  describe('time', () => {
    it('expired assertion (NotOnOrAfter in the past)', async () => {
      const { login, answer } = await fresh();
      const now = Date.now();
      const expired = craft(answer.SAMLResponse, env.idp.idp, {
        mutate: (d) => {
          setAll(d, SAML, 'SubjectConfirmationData', 'NotOnOrAfter', iso(now - 10 * 60_000));
          setAll(d, SAML, 'Conditions', 'NotOnOrAfter', iso(now - 10 * 60_000));
          setAll(d, SAML, 'Conditions', 'NotBefore', iso(now - 20 * 60_000));
        },
      });
      // node-saml (validateInResponseTo) reports a lapsed bearer confirmation as 'no valid subject confirmation'.
      await expectRefused(login, answer, expired, /expired|NotOnOrAfter|subject confirmation/i);
    });

    it('not yet valid (NotBefore in the future beyond the skew)', async () => {
      const { login, answer } = await fresh();
      await expectRefused(login, answer, craft(answer.SAMLResponse, env.idp.idp, { mutate: (d) => setAll(d, SAML, 'Conditions', 'NotBefore', iso(Date.now() + 10 * 60_000)) }), /NotBefore|not yet/i);
    });

    it('old IssueInstant with a far-future NotOnOrAfter (maximum assertion age)', async () => {
      const { login, answer } = await fresh();
      const now = Date.now();
      const old = craft(answer.SAMLResponse, env.idp.idp, {
        mutate: (d) => {
          setAll(d, SAML, 'Assertion', 'IssueInstant', iso(now - 3 * 3600_000));
          setAll(d, SAMLP, 'Response', 'IssueInstant', iso(now - 3 * 3600_000));
          setAll(d, SAML, 'SubjectConfirmationData', 'NotOnOrAfter', iso(now + 24 * 3600_000));
          setAll(d, SAML, 'Conditions', 'NotOnOrAfter', iso(now + 24 * 3600_000));
        },
      });
      await expectRefused(login, answer, old, /too old|expired|subject confirmation/i);
    });
  });

  describe('structure: wrapping, multiple assertions, XXE', () => {
    const evilClone = (d: Document): Element => {
      const evil = first(d, SAML, 'Assertion').cloneNode(true) as Element;
      for (const sig of Array.from(evil.getElementsByTagNameNS(XML_NS.DSIG, 'Signature'))) sig.parentNode?.removeChild(sig);
      evil.setAttribute('ID', `_evil${randomBytes(8).toString('hex')}`);
      first(evil, SAML, 'NameID').textContent = 'admin';
      return evil;
    };

    it('XSW3: an unsigned evil assertion before the signed one', async () => {
      const { login, answer } = await fresh();
      const xsw = mutate(answer.SAMLResponse, (d) => {
        const signed = first(d, SAML, 'Assertion');
        signed.parentNode?.insertBefore(evilClone(d), signed);
      });
      await expectRefused(login, answer, xsw, /exactly one assertion/);
    });

    it('XSW7: an evil assertion inside Extensions', async () => {
      const { login, answer } = await fresh();
      const xsw = mutate(answer.SAMLResponse, (d) => {
        const response = first(d, SAMLP, 'Response');
        const ext = d.createElementNS(SAMLP, 'samlp:Extensions');
        ext.appendChild(evilClone(d));
        response.insertBefore(ext, first(d, SAMLP, 'Status'));
      });
      await expectRefused(login, answer, xsw, /exactly one assertion/);
    });

    it('XSW4-like: the signed assertion moved inside an evil one', async () => {
      const { login, answer } = await fresh();
      const xsw = mutate(answer.SAMLResponse, (d) => {
        const signed = first(d, SAML, 'Assertion');
        const evil = evilClone(d);
        signed.parentNode?.replaceChild(evil, signed);
        evil.appendChild(signed);
      });
      await expectRefused(login, answer, xsw, /exactly one assertion/);
    });

    it('XXE: a DOCTYPE with an external entity', async () => {
      const { login, answer } = await fresh();
      const xml = Buffer.from(answer.SAMLResponse, 'base64').toString('utf8');
      const xxe = Buffer.from(`<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>${xml}`).toString('base64');
      await expectRefused(login, answer, xxe, /DOCTYPE/);
    });

    it('billion laughs: nested internal entities are refused before any expansion, quickly', async () => {
      const { login, answer } = await fresh();
      const xml = Buffer.from(answer.SAMLResponse, 'base64').toString('utf8').replace(/^<\?xml[^>]*\?>/, '');
      const levels = ['<!ENTITY lol0 "lol">', ...Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i};`.repeat(10)}">`)].join('');
      // The reference sits in an attribute value the connector reads (the NameID's text).
      const bomb = `<?xml version="1.0"?><!DOCTYPE lolz [${levels}]>${xml.replace(/(<(?:\w+:)?NameID\b[^>]*>)/, '$1&lol9;')}`;
      const t0 = Date.now();
      await expectRefused(login, answer, Buffer.from(bomb).toString('base64'), /DOCTYPE/);
      expect(Date.now() - t0).toBeLessThan(3000);
    });

    it('deeply nested XML (tens of thousands of levels, within the size limit) -> refused, never a 5xx', async () => {
      const { login, answer } = await fresh();
      const xml = Buffer.from(answer.SAMLResponse, 'base64').toString('utf8');
      const depth = 25_000;
      const deep = xml.replace(/(<\/(?:\w+:)?Response>)\s*$/, `${'<x>'.repeat(depth)}${'</x>'.repeat(depth)}$1`);
      expect(deep.length).toBeGreaterThan(xml.length + depth * 7 - 1);
      const encoded = Buffer.from(deep).toString('base64');
      expect(encodeURIComponent(encoded).length).toBeLessThan(512 * 1024);
      const t0 = Date.now();
      await expectRefused(login, answer, encoded, undefined);
      expect(Date.now() - t0).toBeLessThan(5000);
    });

    it('two SAMLResponse fields', async () => {
      const { login, answer } = await fresh();
      const before = snapshot(env.db);
      const body = new URLSearchParams([['SAMLResponse', answer.SAMLResponse], ['SAMLResponse', answer.SAMLResponse], ['RelayState', answer.RelayState]]);
      const res = await login.browser.agent(answer.acs).request(answer.acs, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: body.toString() });
      expect(res.status).toBe(401);
      expect(env.failures.at(-1)).toMatch(/exactly one SAMLResponse/);
      expect(snapshot(env.db)).toEqual(before);
    });
  });

  describe('encrypted assertions: RSA-OAEP + AES-GCM only', () => {
    async function reencrypt(samlResponse: string, encryptionAlgorithm: xmlenc.EncryptOptions['encryptionAlgorithm'], keyEncryptionAlgorithm: xmlenc.EncryptOptions['keyEncryptionAlgorithm']): Promise<string> {
      const doc = decodeResponse(samlResponse);
      const wrapper = first(doc, SAML, 'EncryptedAssertion');
      const assertionXml = await promisify(xmlenc.decrypt)(new XMLSerializer().serializeToString(wrapper), { key: env.enc.keyPem });
      const rsaPub = createPublicKey(env.enc.certPem).export({ type: 'spki', format: 'pem' }).toString();
      const encrypted = await new Promise<string>((resolve, reject) =>
        xmlenc.encrypt(assertionXml, { rsa_pub: rsaPub, pem: env.enc.certPem, encryptionAlgorithm, keyEncryptionAlgorithm, warnInsecureAlgorithm: false }, (err, result) => (err ? reject(err) : resolve(result))),
      );
      while (wrapper.firstChild) wrapper.removeChild(wrapper.firstChild);
      wrapper.appendChild(doc.importNode(new DOMParser().parseFromString(encrypted, 'text/xml').documentElement, true));
      // The inner assertion keeps the IdP's signature; the Response is signed again over the new ciphertext.
      return craft(encodeResponse(doc), env.idp.idp, { signAssertion: false });
    }

    it('SimpleSAMLphp 1.19 encrypts with AES-128-CBC: refused before decryption', async () => {
      const { login, answer } = await fresh('org-enc');
      expect(Buffer.from(answer.SAMLResponse, 'base64').toString('utf8')).toContain('xmlenc#aes128-cbc');
      await expectRefused(login, answer, answer.SAMLResponse, /aes128-cbc not allowed/);
    });

    it('positive control: RSA-OAEP + AES-256-GCM is decrypted and accepted', async () => {
      const { login, answer } = await fresh('org-enc');
      await expectAccepted(login, answer, await reencrypt(answer.SAMLResponse, 'http://www.w3.org/2009/xmlenc11#aes256-gcm', 'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p'));
    });

    it('RSA-1_5 key transport is refused', async () => {
      const { login, answer } = await fresh('org-enc');
      await expectRefused(login, answer, await reencrypt(answer.SAMLResponse, 'http://www.w3.org/2009/xmlenc11#aes256-gcm', 'http://www.w3.org/2001/04/xmlenc#rsa-1_5'), /rsa-1_5 not allowed/);
    });

    it('AES-256-CBC and 3DES content encryption are refused', async () => {
      let { login, answer } = await fresh('org-enc');
      await expectRefused(login, answer, await reencrypt(answer.SAMLResponse, 'http://www.w3.org/2001/04/xmlenc#aes256-cbc', 'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p'), /aes256-cbc not allowed/);
      ({ login, answer } = await fresh('org-enc'));
      await expectRefused(login, answer, await reencrypt(answer.SAMLResponse, 'http://www.w3.org/2001/04/xmlenc#tripledes-cbc', 'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p'), /tripledes-cbc not allowed/);
    });
  });
});
