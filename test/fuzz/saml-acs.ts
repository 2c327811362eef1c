import { inflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { SignedXml } from 'xml-crypto';
import { generateKeyPair, type KeyPair } from '../peers/simplesamlphp.ts';
import { IDP_ENTITY, SAML_UPSTREAM, type FuzzBed } from './bed.ts';
import { startUpstreamLogin } from './login-start.ts';
import { stateRows } from './state.ts';
import type { FuzzTarget } from './target.ts';

// The SAML ACS under fuzz. Every input gets a fresh login transaction (so the response reaches the
// signature, InResponseTo, audience, time and replay checks), then one of: random bytes, random
// "XML", or a generated Response with fuzzed fields, signed with the IdP's key, an attacker's key or not
// at all, sometimes altered after signing, sometimes carrying a DOCTYPE, a second assertion or deep nesting.

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

interface Fields {
  inResponseTo: 'match' | 'absent' | string;
  destination: 'acs' | 'absent' | string;
  audience: 'sp' | string;
  issuer: 'idp' | string;
  nameId: string;
  notBefore: number;
  notOnOrAfter: number;
  status: 'Success' | 'Requester' | string;
  sign: 'both' | 'assertion' | 'response' | 'none' | 'attacker';
  extra: 'none' | 'doctype' | 'comment-in-nameid' | 'second-assertion' | 'deep' | 'pi';
  flipAt: number | null;
}

const text = fc.string({ maxLength: 40 });
/** Mostly the right value, so most inputs fail on one or two fields and some pass every check. */
const mostly = <T, U>(right: T, wrong: fc.Arbitrary<U>) => fc.oneof({ weight: 7, arbitrary: fc.constant(right) }, { weight: 1, arbitrary: wrong });
const FIELDS: fc.Arbitrary<Fields> = fc.record({
  inResponseTo: mostly('match', fc.oneof(fc.constant('absent'), text)),
  destination: mostly('acs', fc.oneof(fc.constant('absent'), text)),
  audience: mostly('sp', text),
  issuer: mostly('idp', text),
  nameId: mostly('user-0001', fc.oneof(fc.stringMatching(/^[a-z0-9]{1,20}$/), text)),
  notBefore: mostly(-30, fc.integer({ min: -3600, max: 600 })),
  notOnOrAfter: mostly(300, fc.integer({ min: -600, max: 7200 })),
  status: mostly('Success', fc.oneof(fc.constant('Requester'), text)),
  sign: mostly('both', fc.constantFrom('assertion', 'response', 'none', 'attacker')),
  extra: mostly('none', fc.constantFrom('doctype', 'comment-in-nameid', 'second-assertion', 'deep', 'pi')),
  flipAt: mostly(null, fc.nat()),
}) as fc.Arbitrary<Fields>;

function buildResponse(f: Fields, ctx: { requestId: string; acs: string; sp: string; key: KeyPair }): string {
  const now = Date.now();
  const id = `_${Math.random().toString(36).slice(2)}${now}`;
  const aid = `_a${Math.random().toString(36).slice(2)}${now}`;
  const inResponseTo = f.inResponseTo === 'match' ? ` InResponseTo="${ctx.requestId}"` : f.inResponseTo === 'absent' ? '' : ` InResponseTo="${esc(f.inResponseTo)}"`;
  const destination = f.destination === 'acs' ? ` Destination="${ctx.acs}"` : f.destination === 'absent' ? '' : ` Destination="${esc(f.destination)}"`;
  const issuer = f.issuer === 'idp' ? IDP_ENTITY : esc(f.issuer);
  const audience = f.audience === 'sp' ? ctx.sp : esc(f.audience);
  const nameId = f.extra === 'comment-in-nameid' ? `${esc(f.nameId)}<!---->.evil` : esc(f.nameId);
  const status = f.status === 'Success' || f.status === 'Requester' ? `urn:oasis:names:tc:SAML:2.0:status:${f.status}` : esc(f.status);
  const assertion = (assertionId: string, who: string) =>
    `<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="${assertionId}" Version="2.0" IssueInstant="${iso(now)}"><saml:Issuer>${issuer}</saml:Issuer>` +
    `<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">${who}</saml:NameID>` +
    `<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData${inResponseTo} NotOnOrAfter="${iso(now + f.notOnOrAfter * 1000)}" Recipient="${ctx.acs}"/></saml:SubjectConfirmation></saml:Subject>` +
    `<saml:Conditions NotBefore="${iso(now + f.notBefore * 1000)}" NotOnOrAfter="${iso(now + f.notOnOrAfter * 1000)}"><saml:AudienceRestriction><saml:Audience>${audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions>` +
    `<saml:AuthnStatement AuthnInstant="${iso(now)}" SessionIndex="${assertionId}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>` +
    `</saml:Assertion>`;
  const deep = f.extra === 'deep' ? `${'<x>'.repeat(5000)}${'</x>'.repeat(5000)}` : '';
  let xml =
    `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="${id}" Version="2.0" IssueInstant="${iso(now)}"${destination}${inResponseTo}>` +
    `<saml:Issuer>${issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="${status}"/></samlp:Status>${assertion(aid, nameId)}${deep}</samlp:Response>`;
  const key = f.sign === 'attacker' ? ATTACKER : ctx.key;
  const sign = (target: string, after: string) => {
    const sig = new SignedXml({ privateKey: key.keyPem, publicCert: key.certPem, signatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256', canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#' });
    sig.addReference({ xpath: target, transforms: ['http://www.w3.org/2000/09/xmldsig#enveloped-signature', 'http://www.w3.org/2001/10/xml-exc-c14n#'], digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256' });
    sig.computeSignature(xml, { location: { reference: after, action: 'after' } });
    xml = sig.getSignedXml();
  };
  try {
    if (f.sign !== 'none' && f.sign !== 'response') sign("/*[local-name(.)='Response']/*[local-name(.)='Assertion']", "/*[local-name(.)='Response']/*[local-name(.)='Assertion']/*[local-name(.)='Issuer']");
    if (f.sign !== 'none' && f.sign !== 'assertion') sign("/*[local-name(.)='Response']", "/*[local-name(.)='Response']/*[local-name(.)='Issuer']");
  } catch {
    // The fuzzed fields made XML xml-crypto cannot sign: send it unsigned.
  }
  // After signing, so a signed response carries the extra: the broker must refuse it, not just the signer.
  if (f.extra === 'second-assertion') xml = xml.replace('</samlp:Response>', `${assertion(`${aid}x`, 'victim')}</samlp:Response>`);
  if (f.extra === 'doctype') xml = `<!DOCTYPE r [<!ENTITY a "${'x'.repeat(100)}"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>${xml.replace(esc(f.nameId) || '>', (m) => `${m}&b;`)}`;
  if (f.extra === 'pi') xml = `<?xml version="1.0"?><?evil x?>${xml}`;
  if (f.flipAt !== null) {
    const i = f.flipAt % xml.length;
    xml = `${xml.slice(0, i)}${String.fromCharCode((xml.charCodeAt(i) + 1) % 128)}${xml.slice(i + 1)}`;
  }
  return Buffer.from(xml, 'utf8').toString('base64');
}

let ATTACKER: KeyPair;

/** What must make the broker refuse a generated response (a flipped byte may land where no check looks: KeyInfo). */
function wrongFields(f: Fields): string[] {
  if (f.flipAt !== null) return [];
  const wrong: string[] = [];
  if (f.inResponseTo !== 'match') wrong.push('InResponseTo');
  if (f.audience !== 'sp') wrong.push('audience');
  if (f.issuer !== 'idp') wrong.push('issuer');
  if (f.status !== 'Success') wrong.push('status');
  if (f.sign !== 'both') wrong.push(`signatures (${f.sign})`);
  if (f.extra === 'second-assertion' || f.extra === 'doctype' || f.extra === 'deep') wrong.push(f.extra);
  if (f.notBefore > 60) wrong.push('NotBefore');
  if (f.notOnOrAfter < -60) wrong.push('NotOnOrAfter');
  if (f.destination !== 'acs' && f.destination !== 'absent') wrong.push('Destination');
  return wrong;
}

const INPUT = fc.oneof(
  { weight: 6, arbitrary: FIELDS.map((f) => ({ kind: 'generated' as const, f })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 300 }).map((s) => ({ kind: 'raw' as const, value: s })) },
  { weight: 1, arbitrary: fc.base64String({ maxLength: 400 }).map((s) => ({ kind: 'raw' as const, value: s })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 300 }).map((s) => ({ kind: 'raw' as const, value: Buffer.from(`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">${s}</samlp:Response>`).toString('base64') })) },
);
const RELAY = fc.oneof({ weight: 8, arbitrary: fc.constant('match') }, { weight: 1, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.string({ maxLength: 60 }) });

export const samlAcsTarget: FuzzTarget = {
  name: 'SAML ACS',
  async run(bed: FuzzBed, numRuns: number) {
    ATTACKER ??= generateKeyPair('fuzz-attacker');
    const acs = `${bed.base}/upstream/${SAML_UPSTREAM}/callback`;
    const sp = `${bed.base}/upstream/${SAML_UPSTREAM}/metadata`;
    await fc.assert(
      fc.asyncProperty(INPUT, RELAY, async (input, relay) => {
        const { ua, upstreamUrl } = await startUpstreamLogin(bed.base, SAML_UPSTREAM);
        const relayState = upstreamUrl.searchParams.get('RelayState') ?? '';
        const request = inflateRawSync(Buffer.from(upstreamUrl.searchParams.get('SAMLRequest') ?? '', 'base64')).toString('utf8');
        const requestId = /ID="([^"]+)"/.exec(request)?.[1] ?? '';
        const samlResponse = input.kind === 'raw' ? input.value : buildResponse(input.f, { requestId, acs, sp, key: bed.idp });
        const before = stateRows(bed.dbFile);
        const res = await ua.postForm(acs, { SAMLResponse: samlResponse, RelayState: relay === 'match' ? relayState : relay });
        const body = await res.text();
        if (res.status >= 500) throw new Error(`ACS answered ${res.status}: ${body.slice(0, 200)}`);
        if (res.status === 303 && input.kind === 'generated') {
          const broken = wrongFields(input.f);
          if (broken.length) throw new Error(`ACS accepted a response with ${broken.join(', ')} wrong`);
        }
        if (res.status >= 400) {
          if (stateRows(bed.dbFile) > before) throw new Error('ACS changed state on a refused response');
          if (res.headers.getSetCookie().some((c) => /^_session/.test(c))) throw new Error('ACS set a session cookie on a refused response');
        }
        return true;
      }),
      { numRuns },
    );
  },
};
