import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createSign, randomBytes } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { DOMParser } from '@xmldom/xmldom';
import { SignedXml } from 'xml-crypto';
import { simpleSamlAvailable } from '../../peers/simplesamlphp.ts';
import { XML_NS, decodeResponse, first, followToClient, loginAtIdp, startLogin, startSamlEnv, type Browser, type SamlEnv } from './harness.ts';

// The SP metadata the broker publishes, and single logout with SimpleSAMLphp in both directions.

const MD = 'urn:oasis:names:tc:SAML:2.0:metadata';

describe.skipIf(!simpleSamlAvailable)('SAML upstream: SP metadata and single logout', () => {
  let env: SamlEnv;
  beforeAll(async () => {
    env = await startSamlEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('publishes signed SP metadata (RSA-SHA256) with the ACS, SLO, NameID format and only GCM for encryption', async () => {
    const res = await fetch(`${env.base}/upstream/org-enc/metadata`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/samlmetadata+xml');
    const xml = await res.text();
    const doc = new DOMParser().parseFromString(xml, 'text/xml');
    const entity = doc.documentElement;
    expect(entity.getAttribute('entityID')).toBe(`${env.base}/upstream/org-enc/metadata`);
    const sp = first(doc, MD, 'SPSSODescriptor');
    expect(sp.getAttribute('AuthnRequestsSigned')).toBe('true');
    expect(sp.getAttribute('WantAssertionsSigned')).toBe('true');
    expect(first(doc, MD, 'AssertionConsumerService').getAttribute('Location')).toBe(`${env.base}/upstream/org-enc/callback`);
    expect(first(doc, MD, 'AssertionConsumerService').getAttribute('Binding')).toBe('urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST');
    expect(first(doc, MD, 'SingleLogoutService').getAttribute('Location')).toBe(`${env.base}/upstream/org-enc/slo`);
    expect(first(doc, MD, 'NameIDFormat').textContent).toBe('urn:oasis:names:tc:SAML:2.0:nameid-format:persistent');
    const methods = Array.from(doc.getElementsByTagNameNS(MD, 'EncryptionMethod')).map((m) => m.getAttribute('Algorithm'));
    expect(methods).toContain('http://www.w3.org/2009/xmlenc11#aes256-gcm');
    expect(methods.some((m) => m?.includes('cbc') || m?.includes('1_5'))).toBe(false);
    // The signature verifies with the SP certificate, over the EntityDescriptor, with SHA-256.
    const signature = first(doc, XML_NS.DSIG, 'Signature');
    expect(first(signature, XML_NS.DSIG, 'SignatureMethod').getAttribute('Algorithm')).toBe('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
    expect(first(signature, XML_NS.DSIG, 'DigestMethod').getAttribute('Algorithm')).toBe('http://www.w3.org/2001/04/xmlenc#sha256');
    const verifier = new SignedXml({ publicCert: env.sp.certPem });
    verifier.loadSignature(signature);
    expect(verifier.checkSignature(xml)).toBe(true);
    // The plain upstream publishes no encryption key (SimpleSAMLphp then does not encrypt).
    const plain = await (await fetch(`${env.base}/upstream/org/metadata`)).text();
    expect(plain).not.toContain('use="encryption"');
  });

  async function signIn(): Promise<{ browser: Browser; nameId: string; sessionIndex: string }> {
    const login = await startLogin(env, 'org');
    const answer = await loginAtIdp(login.browser, login.ssoRedirect, 'alice', 'alice-password');
    const doc = decodeResponse(answer.SAMLResponse);
    const nameId = first(doc, XML_NS.SAML, 'NameID').textContent ?? '';
    const sessionIndex = first(doc, XML_NS.SAML, 'AuthnStatement').getAttribute('SessionIndex') ?? '';
    const res = await login.browser.postForm(answer.acs, { SAMLResponse: answer.SAMLResponse, RelayState: answer.RelayState });
    await followToClient(env, login.browser, res, answer.acs);
    return { browser: login.browser, nameId, sessionIndex };
  }

  async function follow(browser: Browser, start: string, stopAt: (url: string) => boolean): Promise<{ url: string; res: Response; visited: string[] }> {
    let url = start;
    const visited = [url];
    let res = await browser.get(url);
    for (let i = 0; i < 10 && res.status >= 300 && res.status < 400 && !stopAt(url); i++) {
      url = new URL(res.headers.get('location') ?? '', url).href;
      visited.push(url);
      res = await browser.get(url);
    }
    return { url, res, visited };
  }

  it('IdP-initiated logout: the signed LogoutRequest ends the broker sessions of that NameID and is answered', async () => {
    const { browser, nameId, sessionIndex } = await signIn();
    env.logouts.length = 0;
    const done = `${env.idp.baseUrl}/module.php/core/welcome`;
    const { visited } = await follow(browser, `${env.idp.baseUrl}/saml2/idp/initSLO.php?RelayState=${encodeURIComponent(done)}`, (u) => u.startsWith(done));
    const atBroker = visited.find((u) => u.startsWith(`${env.base}/upstream/org/slo?`));
    expect(atBroker, visited.join('\n')).toBeDefined();
    expect(new URL(atBroker!).searchParams.get('Signature')).toBeTruthy();
    expect(env.logouts).toEqual([{ provider: 'org', subject: nameId, sid: sessionIndex }]);
    // The broker answered with a signed LogoutResponse to the IdP's SLO endpoint.
    const answered = visited.find((u) => u.startsWith(`${env.idp.baseUrl}/saml2/idp/SingleLogoutService.php`) && u.includes('SAMLResponse='));
    expect(answered).toBeDefined();
    const response = inflateRawSync(Buffer.from(new URL(answered!).searchParams.get('SAMLResponse') ?? '', 'base64')).toString('utf8');
    expect(response).toContain('urn:oasis:names:tc:SAML:2.0:status:Success');
    expect(new URL(answered!).searchParams.get('SigAlg')).toBe('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
  });

  it('SP-initiated logout: a signed LogoutRequest to the IdP, whose signed LogoutResponse is accepted', async () => {
    const { browser, nameId, sessionIndex } = await signIn();
    const url = await env.connectors.org.logoutUrl({ subject: nameId, sessionIndex });
    expect(url).toBeDefined();
    const request = new URL(url!);
    expect(request.origin + request.pathname).toBe(`${env.idp.baseUrl}/saml2/idp/SingleLogoutService.php`);
    expect(request.searchParams.get('SigAlg')).toBe('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
    const xml = inflateRawSync(Buffer.from(request.searchParams.get('SAMLRequest') ?? '', 'base64')).toString('utf8');
    expect(xml).toContain(nameId);
    expect(xml).toContain(sessionIndex);
    const { url: last, res } = await follow(browser, url!, (u) => u.startsWith(`${env.base}/upstream/org/slo?`));
    expect(last.startsWith(`${env.base}/upstream/org/slo?SAMLResponse=`), last).toBe(true);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('You have signed out');
  });

  function logoutRequest(options: { issuer?: string; destination?: string; nameId?: string }): string {
    return `<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_${randomBytes(16).toString('hex')}" Version="2.0" IssueInstant="${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}" Destination="${options.destination ?? `${env.base}/upstream/org/slo`}"><saml:Issuer>${options.issuer ?? env.idp.entityId}</saml:Issuer><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">${options.nameId ?? 'victim'}</saml:NameID><samlp:SessionIndex>_s</samlp:SessionIndex></samlp:LogoutRequest>`;
  }

  function redirectQuery(xml: string, key?: string): string {
    const enc = (v: string) => encodeURIComponent(v);
    let q = `SAMLRequest=${enc(deflateRawSync(xml).toString('base64'))}&SigAlg=${enc('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256')}`;
    if (key) q += `&Signature=${enc(createSign('RSA-SHA256').update(q).sign(key, 'base64'))}`;
    return q;
  }

  it('refuses unsigned, wrongly signed, misaddressed or foreign-issuer LogoutRequests, and replays', async () => {
    env.logouts.length = 0;
    const slo = `${env.base}/upstream/org/slo`;
    const cases: Array<[string, string]> = [
      ['unsigned', redirectQuery(logoutRequest({}))],
      ['signed by another key', redirectQuery(logoutRequest({}), env.sp.keyPem)],
      ['another IdP as issuer', redirectQuery(logoutRequest({ issuer: 'https://another-idp.example' }), env.idp.idp.keyPem)],
      ['addressed to another endpoint', redirectQuery(logoutRequest({ destination: `${env.base}/upstream/org-url/slo` }), env.idp.idp.keyPem)],
    ];
    for (const [what, query] of cases) {
      const res = await fetch(`${slo}?${query}`, { redirect: 'manual' });
      expect(res.status, what).toBe(400);
    }
    expect(env.logouts).toEqual([]);
    // A correctly signed one is honoured once; its replay is refused.
    const good = redirectQuery(logoutRequest({ nameId: 'someone' }), env.idp.idp.keyPem);
    expect((await fetch(`${slo}?${good}`, { redirect: 'manual' })).status).toBe(302);
    expect((await fetch(`${slo}?${good}`, { redirect: 'manual' })).status).toBe(400);
    expect(env.logouts).toEqual([{ provider: 'org', subject: 'someone', sid: '_s' }]);
  });
});
