import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createSign, randomBytes } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { simpleSamlAvailable, type KeyPair } from '../peers/simplesamlphp.ts';
import { startSamlEnv, type SamlEnv } from '../providers/saml/harness.ts';
import { iso } from './saml-acs.ts';

// Security catalogue section 2, single logout (SAML-40: unsigned or expired LogoutRequest and
// LogoutResponse) and the Redirect binding's inflate limit (SAML-25: deflate bomb). A refused message
// is a 400 page that ends nobody's session; the accepted controls show the refusals are for the reason tested.

const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const RSA_SHA1 = 'http://www.w3.org/2000/09/xmldsig#rsa-sha1';

describe.skipIf(!simpleSamlAvailable)('SAML catalogue: single logout messages', () => {
  let env: SamlEnv;
  let slo: string;
  beforeAll(async () => {
    env = await startSamlEnv();
    slo = `${env.base}/upstream/org/slo`;
  });
  afterAll(async () => {
    await env?.close();
  });

  interface Message {
    kind?: 'LogoutRequest' | 'LogoutResponse';
    issueInstant?: number;
    notOnOrAfter?: number;
    status?: string;
    nameId?: string;
  }

  function message(m: Message = {}): string {
    const kind = m.kind ?? 'LogoutRequest';
    const head = `<samlp:${kind} xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_${randomBytes(16).toString('hex')}" Version="2.0" IssueInstant="${iso(m.issueInstant ?? Date.now())}" Destination="${slo}"${m.notOnOrAfter ? ` NotOnOrAfter="${iso(m.notOnOrAfter)}"` : ''}${kind === 'LogoutResponse' ? ` InResponseTo="_${randomBytes(20).toString('hex')}"` : ''}><saml:Issuer>${env.idp.entityId}</saml:Issuer>`;
    const body =
      kind === 'LogoutRequest'
        ? `<saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">${m.nameId ?? 'victim'}</saml:NameID><samlp:SessionIndex>_s</samlp:SessionIndex>`
        : `<samlp:Status><samlp:StatusCode Value="${m.status ?? 'urn:oasis:names:tc:SAML:2.0:status:Success'}"/></samlp:Status>`;
    return `${head}${body}</samlp:${kind}>`;
  }

  /** The Redirect-binding query: deflated, base64, signed over the exact octets (unless key is undefined). */
  function query(xml: string, key: KeyPair | undefined, options: { param?: 'SAMLRequest' | 'SAMLResponse'; sigAlg?: string; deflated?: Buffer } = {}): string {
    const enc = encodeURIComponent;
    const sigAlg = options.sigAlg ?? RSA_SHA256;
    let q = `${options.param ?? 'SAMLRequest'}=${enc((options.deflated ?? deflateRawSync(xml)).toString('base64'))}&SigAlg=${enc(sigAlg)}`;
    if (key) q += `&Signature=${enc(createSign(sigAlg === RSA_SHA1 ? 'RSA-SHA1' : 'RSA-SHA256').update(q).sign(key.keyPem, 'base64'))}`;
    return q;
  }

  async function get(q: string): Promise<{ status: number; html: string; ms: number }> {
    const t0 = Date.now();
    const res = await fetch(`${slo}?${q}`, { redirect: 'manual' });
    return { status: res.status, html: await res.text(), ms: Date.now() - t0 };
  }

  async function refused(q: string, what: string): Promise<void> {
    const before = env.logouts.length;
    const res = await get(q);
    expect(res.status, what).toBe(400);
    expect(res.html, what).not.toContain('You have signed out');
    expect(env.logouts.length, what).toBe(before);
  }

  it('SAML-40 [P] a signed, fresh LogoutRequest ends the session it names; a signed, fresh LogoutResponse shows the signed-out page', async () => {
    const before = env.logouts.length;
    expect((await get(query(message({ nameId: 'control-user' }), env.idp.idp))).status).toBe(302);
    expect(env.logouts.slice(before)).toEqual([{ provider: 'org', subject: 'control-user', sid: '_s' }]);
    const answer = await get(query(message({ kind: 'LogoutResponse' }), env.idp.idp, { param: 'SAMLResponse' }));
    expect(answer.status).toBe(200);
    expect(answer.html).toContain('You have signed out');
  });

  it('SAML-40 expired LogoutRequests are refused: old IssueInstant, NotOnOrAfter passed, or issued in the future', async () => {
    const now = Date.now();
    await refused(query(message({ issueInstant: now - 3 * 3600_000 }), env.idp.idp), 'IssueInstant three hours ago');
    await refused(query(message({ notOnOrAfter: now - 10 * 60_000 }), env.idp.idp), 'NotOnOrAfter ten minutes ago');
    await refused(query(message({ issueInstant: now + 3600_000 }), env.idp.idp), 'IssueInstant an hour ahead');
  });

  it('SAML-40 unsigned, wrongly signed or SHA-1 signed LogoutResponses are refused, and so is an expired signed one', async () => {
    const response = (m: Message = {}) => message({ kind: 'LogoutResponse', ...m });
    await refused(query(response(), undefined, { param: 'SAMLResponse' }), 'unsigned');
    await refused(query(response(), env.sp, { param: 'SAMLResponse' }), 'signed by another key');
    await refused(query(response(), env.idp.idp, { param: 'SAMLResponse', sigAlg: RSA_SHA1 }), 'rsa-sha1');
    await refused(query(response({ issueInstant: Date.now() - 3 * 3600_000 }), env.idp.idp, { param: 'SAMLResponse' }), 'IssueInstant three hours ago');
    await refused(query(response({ status: 'urn:oasis:names:tc:SAML:2.0:status:Requester' }), env.idp.idp, { param: 'SAMLResponse' }), 'a failure status');
  });

  it('SAML-40 a LogoutRequest by HTTP-POST (where no signature is checked on the query) ends nothing', async () => {
    const before = env.logouts.length;
    const res = await fetch(slo, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ SAMLRequest: Buffer.from(message()).toString('base64') }).toString(), redirect: 'manual' });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(env.logouts.length).toBe(before);
  });

  it('SAML-25 deflate bomb on the Redirect binding: refused quickly whether unsigned or signed by the IdP itself', async () => {
    // About 6 MB of inflated XML from a query that fits under Node's 16 KiB header limit.
    const padding = `<!--${' '.repeat(6 * 1024 * 1024)}-->`;
    const bombXml = message().replace('<saml:Issuer>', `${padding}<saml:Issuer>`);
    const deflated = deflateRawSync(bombXml, { level: 9 });
    expect(deflated.length).toBeLessThan(8 * 1024);
    expect(bombXml.length / deflated.length).toBeGreaterThan(500);
    for (const key of [undefined, env.idp.idp]) {
      const before = env.logouts.length;
      const res = await get(query(bombXml, key, { deflated }));
      expect(res.status).toBe(400);
      expect(res.ms).toBeLessThan(3000);
      expect(env.logouts.length).toBe(before);
    }
  });
});
