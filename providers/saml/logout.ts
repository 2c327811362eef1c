import { createVerify } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import type { Context } from 'koa';
import type { Profile } from '@node-saml/passport-saml';
import type { ConnectorDeps } from '../../src/identity/upstream.ts';
import { BadRequestError } from '../../src/web/errors.ts';
import { h, layout } from '../../src/web/html.ts';
import type { IdpMetadata } from './metadata.ts';
import { REDIRECT_SIG_ALGS } from './checks/algorithms.ts';
import { checkSignaturePlacement, checkUniqueIds } from './checks/envelope.ts';
import { checkIssuer } from './checks/response.ts';
import { issuedRecently, notOnOrAfter, type Clock } from './checks/times.ts';
import { NS, SamlXmlError, attr, children, instant, is, parseXml, requiredChild, textOf } from './xml.ts';

// Single logout over the HTTP-Redirect binding (best effort). The IdP's LogoutRequest must be
// signed (node-saml accepts an unsigned redirect-binding message, so the signature is checked here on
// the raw query string, each parameter exactly once), come from the configured IdP, be addressed to
// this endpoint, be fresh and not replayed; then the broker ends the user's sessions and answers with
// a signed LogoutResponse. A LogoutResponse (to our own request) only gets a "signed out" page.

const INFLATE_LIMIT = 256 * 1024;
const PARAMS = new Set(['SAMLRequest', 'SAMLResponse', 'RelayState', 'SigAlg', 'Signature']);
const SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success';

export interface SingleLogoutOptions {
  provider: string;
  md: IdpMetadata;
  sloUrl: string;
  spEntityId: string;
  clock: Clock;
  replay: ConnectorDeps['replay'];
  onUpstreamLogout: ConnectorDeps['onUpstreamLogout'];
  logoutResponseUrl(request: Profile, relayState: string): Promise<string>;
}

/** The raw (still URL-encoded) query parameters, each at most once: the signature covers these bytes. */
function rawParams(querystring: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of querystring.split('&')) {
    if (part === '') continue;
    const i = part.indexOf('=');
    const key = decodeURIComponent(i < 0 ? part : part.slice(0, i));
    if (!PARAMS.has(key)) continue;
    if (out.has(key)) throw new SamlXmlError(`logout: repeated ${key}`);
    out.set(key, i < 0 ? '' : part.slice(i + 1));
  }
  return out;
}

function decode(raw: string): string {
  return decodeURIComponent(raw.replace(/\+/g, ' '));
}

function verifyRedirectSignature(params: Map<string, string>, messageKey: string, certs: string[]): void {
  const sigAlgRaw = params.get('SigAlg');
  const signatureRaw = params.get('Signature');
  // SAML-40: unsigned logout messages are refused.
  if (sigAlgRaw === undefined || signatureRaw === undefined) throw new SamlXmlError('logout: unsigned message');
  const hash = REDIRECT_SIG_ALGS[decode(sigAlgRaw)];
  if (!hash) throw new SamlXmlError('logout: signature algorithm not allowed');
  // SAML bindings 3.4.4.1: the signed octets are the parameters as they were encoded on the wire.
  let signed = `${messageKey}=${params.get(messageKey)}`;
  if (params.has('RelayState')) signed += `&RelayState=${params.get('RelayState')}`;
  signed += `&SigAlg=${sigAlgRaw}`;
  const signature = Buffer.from(decode(signatureRaw), 'base64');
  const ok = certs.some((cert) => createVerify(hash).update(signed).verify(cert, signature));
  if (!ok) throw new SamlXmlError('logout: bad signature');
}

/** The Redirect binding's DEFLATE, bounded: a bomb (or garbage) is a refusal, not a 500. */
function inflate(base64: string): string {
  try {
    return inflateRawSync(Buffer.from(base64, 'base64'), { maxOutputLength: INFLATE_LIMIT }).toString('utf8');
  } catch {
    throw new SamlXmlError('logout: message is not DEFLATE data or inflates beyond the limit');
  }
}

export async function handleSingleLogout(ctx: Context, o: SingleLogoutOptions): Promise<void> {
  try {
    const params = rawParams(ctx.querystring);
    const messageKey = params.has('SAMLRequest') ? 'SAMLRequest' : params.has('SAMLResponse') ? 'SAMLResponse' : undefined;
    if (!messageKey || (params.has('SAMLRequest') && params.has('SAMLResponse'))) throw new SamlXmlError('logout: no SAML message');
    verifyRedirectSignature(params, messageKey, o.md.signingCerts);
    const xml = inflate(decode(params.get(messageKey) ?? ''));
    const root = parseXml(xml, 'logout').documentElement;
    checkUniqueIds(root, 'logout');
    checkSignaturePlacement(root, 'logout');
    const destination = attr(root, 'Destination');
    if (destination !== o.sloUrl) throw new SamlXmlError('logout: Destination is not this endpoint');
    if (attr(root, 'Version') !== '2.0') throw new SamlXmlError('logout: not SAML 2.0');
    checkIssuer(requiredChild(root, NS.assertion, 'Issuer', 'logout'), o.md.entityId, 'logout');
    issuedRecently(instant(attr(root, 'IssueInstant'), 'logout IssueInstant'), o.clock, 'logout');
    const messageId = attr(root, 'ID');
    if (!messageId) throw new SamlXmlError('logout: missing ID');
    if (!(await o.replay.rememberOnce(`saml-logout:${o.md.entityId}:${messageId}`, Math.ceil((o.clock.maxAge + 2 * o.clock.skew) / 1000)))) {
      throw new SamlXmlError('logout: replayed message');
    }

    if (messageKey === 'SAMLResponse') {
      if (!is(root, NS.protocol, 'LogoutResponse')) throw new SamlXmlError('logout: not a LogoutResponse');
      const status = requiredChild(requiredChild(root, NS.protocol, 'Status', 'logout'), NS.protocol, 'StatusCode', 'logout');
      if (attr(status, 'Value') !== SUCCESS) throw new SamlXmlError('logout: IdP reported failure');
      ctx.type = 'html';
      ctx.body = layout('Signed out', h`<h1 class="nhsuk-heading-l">You have signed out</h1><p>You can close this window.</p>`);
      return;
    }

    if (!is(root, NS.protocol, 'LogoutRequest')) throw new SamlXmlError('logout: not a LogoutRequest');
    notOnOrAfter(instant(attr(root, 'NotOnOrAfter'), 'logout NotOnOrAfter'), o.clock, 'logout');
    if (children(root, NS.assertion, 'EncryptedID').length > 0) throw new SamlXmlError('logout: encrypted NameID not supported');
    const nameIdEl = requiredChild(root, NS.assertion, 'NameID', 'logout');
    const nameId = textOf(nameIdEl, 'NameID');
    const spNameQualifier = attr(nameIdEl, 'SPNameQualifier');
    if (spNameQualifier !== undefined && spNameQualifier !== o.spEntityId) throw new SamlXmlError('logout: NameID for another SP');
    const sessionIndexes = children(root, NS.protocol, 'SessionIndex').map((el) => textOf(el, 'SessionIndex'));
    if (sessionIndexes.length === 0) await o.onUpstreamLogout({ provider: o.provider, subject: nameId });
    for (const sid of sessionIndexes) await o.onUpstreamLogout({ provider: o.provider, subject: nameId, sid });

    const relayState = params.has('RelayState') ? decode(params.get('RelayState') ?? '') : '';
    if (o.md.slo) {
      const answered: Profile = { issuer: o.md.entityId, nameID: nameId, nameIDFormat: attr(nameIdEl, 'Format') ?? '', ID: messageId };
      ctx.redirect(await o.logoutResponseUrl(answered, relayState));
      return;
    }
    ctx.type = 'html';
    ctx.body = layout('Signed out', h`<h1 class="nhsuk-heading-l">You have signed out</h1><p>You can close this window.</p>`);
  } catch (err) {
    if (err instanceof SamlXmlError || err instanceof URIError || (err instanceof Error && /inflate|incorrect header|invalid/i.test(err.message))) {
      throw new BadRequestError('This sign-out request could not be verified.');
    }
    throw err;
  }
}

