import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createVerify } from 'node:crypto';
import { request } from 'node:http';
import { inflateRawSync } from 'node:zlib';
import { DOMParser } from '@xmldom/xmldom';
import * as oc from 'openid-client';
import { simpleSamlAvailable } from '../peers/simplesamlphp.ts';
import { XML_NS, craft, first, snapshot, startSamlEnv, type SamlEnv } from '../providers/saml/harness.ts';
import { acs, setAll, type Attempt } from './saml-acs.ts';

// Security catalogue section 2, what binds a response to this broker, this login and this person:
// comment/CDATA splits in identity values (SAML-17), size limits before parsing (SAML-25), requests of
// another upstream (SAML-28), RelayState and unsolicited responses (SAML-29), missing audience
// (SAML-32), confirmation methods (SAML-35), OneTimeUse (SAML-37), the broker's own AuthnRequest
// signature (SAML-43) and which NameIDs may key an account (SAML-44).

const { SAML, SAMLP } = XML_NS;
const PERSISTENT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';

/** The AuthnRequest the broker sent in its redirect to the IdP. */
function authnRequest(ssoRedirect: string): Element {
  const xml = inflateRawSync(Buffer.from(new URL(ssoRedirect).searchParams.get('SAMLRequest') ?? '', 'base64')).toString('utf8');
  return new DOMParser().parseFromString(xml, 'text/xml').documentElement;
}

const unsolicited = (d: Document) => {
  first(d, SAMLP, 'Response').removeAttribute('InResponseTo');
  setAll(d, SAML, 'SubjectConfirmationData', 'InResponseTo', null);
};

describe.skipIf(!simpleSamlAvailable)('SAML catalogue: binding a response to the broker, the login and the person', () => {
  let env: SamlEnv;
  let io: ReturnType<typeof acs>;
  beforeAll(async () => {
    env = await startSamlEnv();
    io = acs(env);
  });
  afterAll(async () => {
    await env?.close();
  });

  describe('SAML-17 comment, CDATA and character-reference splits in identity values', () => {
    /** Posts the response; when accepted, returns the identity the connector produced. */
    async function outcome(a: Attempt, samlResponse: string) {
      const failures = env.failures.length;
      const identities = env.identities.length;
      const res = await io.post(a, samlResponse);
      if (res.status === 401) {
        expect(env.failures.length).toBe(failures + 1);
        return undefined;
      }
      expect(res.status).toBe(303);
      expect(env.identities.length).toBe(identities + 1);
      return env.identities.at(-1);
    }

    it('SAML-17 a NameID split by CDATA or a character reference is read whole, never as the prefix', async () => {
      const splits: Array<(d: Document, el: Element) => void> = [
        (d, el) => {
          el.appendChild(d.createTextNode('victim'));
          el.appendChild(d.createCDATASection('.evil'));
        },
        (d, el) => {
          el.appendChild(d.createTextNode('victim'));
          el.appendChild(d.createComment('x'));
          el.appendChild(d.createCDATASection('.evil'));
        },
      ];
      for (const split of splits) {
        const a = await io.fresh();
        const identity = await outcome(
          a,
          craft(a.answer.SAMLResponse, env.idp.idp, {
            mutate: (d) => {
              const nameId = first(d, SAML, 'NameID');
              while (nameId.firstChild) nameId.removeChild(nameId.firstChild);
              split(d, nameId);
            },
          }),
        );
        if (identity) expect(identity.subject).toBe('victim.evil');
      }
      // A character reference is plain text after parsing: the whole value, through the real parser.
      const a = await io.fresh();
      const signed = craft(a.answer.SAMLResponse, env.idp.idp, { mutate: (d) => (first(d, SAML, 'NameID').textContent = 'victim.evil') });
      const viaReference = Buffer.from(Buffer.from(signed, 'base64').toString('utf8').replace('victim.evil', 'victim&#46;evil')).toString('base64');
      const identity = await outcome(a, viaReference);
      expect(identity?.subject).toBe('victim.evil');
    });

    it('SAML-17 an attribute value split by a comment is read whole (mail claim), never the prefix', async () => {
      const a = await io.fresh();
      const injected = craft(a.answer.SAMLResponse, env.idp.idp, {
        mutate: (d) => {
          const value = Array.from(d.getElementsByTagNameNS(SAML, 'AttributeValue')).find((v) => v.textContent === 'bob@trust.example');
          if (!value) throw new Error('no mail attribute');
          while (value.firstChild) value.removeChild(value.firstChild);
          value.appendChild(d.createTextNode('admin@trust.example'));
          value.appendChild(d.createComment(''));
          value.appendChild(d.createTextNode('.evil.example'));
        },
      });
      const identity = await outcome(a, injected);
      if (identity) {
        const mail = Object.entries(identity.claims).find(([k]) => /mail/.test(k))?.[1];
        expect(mail).toBe('admin@trust.example.evil.example');
      }
    });
  });

  describe('SAML-25 size limits before any XML parsing', () => {
    function rawPost(url: string, body: string | (() => AsyncGenerator<Buffer>), headers: Record<string, string>): Promise<{ status: number; ms: number }> {
      const t0 = Date.now();
      return new Promise((resolve, reject) => {
        const req = request(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: Date.now() - t0 }));
        });
        req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' || (err as NodeJS.ErrnoException).code === 'EPIPE' ? resolve({ status: 0, ms: Date.now() - t0 }) : reject(err)));
        if (typeof body === 'string') req.end(body);
        else
          void (async () => {
            for await (const chunk of body()) if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
            req.end();
          })().catch(() => undefined);
      });
    }

    it('SAML-25 a 10 MB SAMLResponse (declared, or chunked without a length) is refused with 413 before the connector parses anything', async () => {
      for (const mode of ['declared', 'chunked'] as const) {
        const a = await io.fresh();
        const before = snapshot(env.db);
        const failures = env.failures.length;
        const big = `SAMLResponse=${'A'.repeat(10 * 1024 * 1024)}&RelayState=${encodeURIComponent(a.answer.RelayState)}`;
        const res =
          mode === 'declared'
            ? await rawPost(a.answer.acs, big, { 'content-length': String(Buffer.byteLength(big)) })
            : await rawPost(
                a.answer.acs,
                async function* () {
                  for (let i = 0; i < big.length; i += 64 * 1024) yield Buffer.from(big.slice(i, i + 64 * 1024));
                },
                { 'transfer-encoding': 'chunked' },
              );
        // The broker answers 413 and may close the connection while the client is still sending.
        expect([413, 0], `${mode}: ${res.status}`).toContain(res.status);
        expect(res.ms).toBeLessThan(10_000);
        expect(env.failures.length, 'the connector never saw it').toBe(failures);
        expect(snapshot(env.db)).toEqual(before);
      }
      // The broker is still serving logins afterwards.
      const a = await io.fresh();
      await io.expectAccepted(a, a.answer.SAMLResponse);
    });
  });

  it('SAML-28 InResponseTo naming the request the broker sent for another upstream is refused', async () => {
    const other = await io.fresh('org-url');
    const foreignRequestId = authnRequest(other.login.ssoRedirect).getAttribute('ID') ?? '';
    expect(foreignRequestId).toMatch(/^_[0-9a-f]{40}$/);
    const a = await io.fresh('org');
    const hostile = craft(a.answer.SAMLResponse, env.idp.idp, {
      mutate: (d) => {
        first(d, SAMLP, 'Response').setAttribute('InResponseTo', foreignRequestId);
        setAll(d, SAML, 'SubjectConfirmationData', 'InResponseTo', foreignRequestId);
      },
    });
    await io.expectRefused(a, hostile, /InResponseTo/);
  });

  describe('SAML-29 unsolicited responses and RelayState', () => {
    it('SAML-29 an unsolicited response with RelayState pointing at an external URL is refused without any redirect', async () => {
      for (const upstream of ['org', 'org-unsol'] as const) {
        const a = await io.fresh(upstream);
        const res = await io.expectRefused(a, craft(a.answer.SAMLResponse, env.idp.idp, { mutate: unsolicited }), undefined, { relayState: 'https://evil.example/landing' });
        expect(res.headers.get('location')).toBeNull();
      }
    });

    it('SAML-29 an IdP-initiated POST with no RelayState at all is refused, even where unsolicited responses are allowed', async () => {
      const a = await io.fresh('org-unsol');
      const before = snapshot(env.db);
      const res = await a.login.browser.postForm(a.answer.acs, { SAMLResponse: craft(a.answer.SAMLResponse, env.idp.idp, { mutate: unsolicited }) });
      expect(res.status).toBe(401);
      expect(res.headers.get('location')).toBeNull();
      expect(snapshot(env.db)).toEqual(before);
    });
  });

  describe('SAML-32 audience missing', () => {
    it('SAML-32 no AudienceRestriction at all, or an empty one, is refused', async () => {
      let a = await io.fresh();
      await io.expectRefused(a, craft(a.answer.SAMLResponse, env.idp.idp, { mutate: (d) => { const r = first(d, SAML, 'AudienceRestriction'); r.parentNode?.removeChild(r); } }), /AudienceRestriction|audience/i);
      a = await io.fresh();
      await io.expectRefused(a, craft(a.answer.SAMLResponse, env.idp.idp, { mutate: (d) => { const au = first(d, SAML, 'Audience'); au.parentNode?.removeChild(au); } }), /audience/i);
    });
  });

  describe('SAML-35 confirmation methods', () => {
    it('SAML-35 sender-vouches, and a holder-of-key confirmation next to the bearer one, are refused', async () => {
      let a = await io.fresh();
      await io.expectRefused(a, craft(a.answer.SAMLResponse, env.idp.idp, { mutate: (d) => setAll(d, SAML, 'SubjectConfirmation', 'Method', 'urn:oasis:names:tc:SAML:2.0:cm:sender-vouches') }), /bearer/);
      a = await io.fresh();
      const mixed = craft(a.answer.SAMLResponse, env.idp.idp, {
        mutate: (d) => {
          const bearer = first(d, SAML, 'SubjectConfirmation');
          const hok = bearer.cloneNode(true) as Element;
          hok.setAttribute('Method', 'urn:oasis:names:tc:SAML:2.0:cm:holder-of-key');
          bearer.parentNode?.insertBefore(hok, bearer.nextSibling);
        },
      });
      await io.expectRefused(a, mixed, /bearer/);
    });
  });

  describe('SAML-37 OneTimeUse', () => {
    const oneTimeUse = (d: Document) => first(d, SAML, 'Conditions').appendChild(d.createElementNS(SAML, 'saml:OneTimeUse'));

    it('SAML-37 [P] an assertion with OneTimeUse is accepted once in a normal login', async () => {
      const a = await io.fresh();
      await io.expectAccepted(a, craft(a.answer.SAMLResponse, env.idp.idp, { mutate: oneTimeUse }));
    });

    it('SAML-37 an unsolicited OneTimeUse assertion is accepted once and refused the second time (replay cache)', async () => {
      const a = await io.fresh('org-unsol');
      const once = craft(a.answer.SAMLResponse, env.idp.idp, { mutate: (d) => (unsolicited(d), oneTimeUse(d)) });
      await io.expectAccepted(a, once);
      const b = await io.fresh('org-unsol');
      await io.expectRefused(b, once, /replayed assertion/);
    });
  });

  it('SAML-43 [P] the AuthnRequest is signed with RSA-SHA256 over the exact query octets, by the SP key the IdP knows', async () => {
    const a = await io.fresh();
    const url = new URL(a.login.ssoRedirect);
    const raw = url.search.slice(1).split('&');
    const param = (k: string) => raw.find((p) => p.startsWith(`${k}=`));
    const signed = ['SAMLRequest', 'RelayState', 'SigAlg'].map(param).filter(Boolean).join('&');
    expect(url.searchParams.get('SigAlg')).toBe('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
    const signature = Buffer.from(url.searchParams.get('Signature') ?? '', 'base64');
    expect(createVerify('RSA-SHA256').update(signed).verify(env.sp.certPem, signature)).toBe(true);
    // One flipped character in the signed octets no longer verifies (the check above can fail).
    expect(createVerify('RSA-SHA256').update(signed.replace('SigAlg=', 'SigAlg=x')).verify(env.sp.certPem, signature)).toBe(false);
    const request = authnRequest(a.login.ssoRedirect);
    expect(request.localName).toBe('AuthnRequest');
    expect(request.getAttribute('AssertionConsumerServiceURL')).toBe(`${env.base}/upstream/org/callback`);
    expect(request.getAttribute('Destination')).toBe(env.idp.ssoUrl);
    expect(first(request, SAML, 'Issuer').textContent).toBe(`${env.base}/upstream/org/metadata`);
    expect(first(request, SAMLP, 'NameIDPolicy').getAttribute('Format')).toBe(PERSISTENT);
  });

  describe('SAML-44 which NameIDs key an account', () => {
    it('SAML-44 unspecified and e-mail NameID formats are refused like transient ones', async () => {
      for (const format of ['urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified', 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress']) {
        const a = await io.fresh();
        await io.expectRefused(a, craft(a.answer.SAMLResponse, env.idp.idp, { mutate: (d) => first(d, SAML, 'NameID').setAttribute('Format', format) }), /format/i);
      }
      const a = await io.fresh();
      await io.expectRefused(a, craft(a.answer.SAMLResponse, env.idp.idp, { mutate: (d) => first(d, SAML, 'NameID').removeAttribute('Format') }), /format/i);
    });

    it('SAML-44 the same persistent NameID from two upstreams keys two accounts (namespaced by IdP); the same upstream again finds its own', async () => {
      const shared = `shared-${Date.now()}`;
      const signIn = async (upstream: 'org' | 'org-url'): Promise<string> => {
        const a = await io.fresh(upstream);
        const back = await io.expectAccepted(a, craft(a.answer.SAMLResponse, env.idp.idp, { mutate: (d) => (first(d, SAML, 'NameID').textContent = shared) }));
        const tokens = await oc.authorizationCodeGrant(env.web, back, { pkceCodeVerifier: a.login.verifier, expectedState: a.login.state, expectedNonce: a.login.nonce });
        const sub = tokens.claims()?.sub;
        expect(sub).toBeTruthy();
        return sub!;
      };
      const before = snapshot(env.db);
      const viaOrg = await signIn('org');
      const viaOther = await signIn('org-url');
      expect(viaOther).not.toBe(viaOrg);
      const mid = snapshot(env.db);
      expect(mid.accounts).toBe(before.accounts + 2);
      expect(mid.links).toBe(before.links + 2);
      expect(await signIn('org')).toBe(viaOrg);
      expect(snapshot(env.db).accounts).toBe(mid.accounts);
    });
  });
});

