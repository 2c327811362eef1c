import { NS, SamlXmlError, attr, instant, is, optionalChild, requiredChild, textOf } from '../xml.ts';
import { issuedRecently, type Clock } from './times.ts';

// Checks on the Response element that node-saml leaves out: Destination (the ACS URL) and Issuer
// (the IdP this endpoint belongs to). Reads the signed Response when it is signed.

const ENTITY_FORMAT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:entity';
const SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success';

export interface ResponseExpectations {
  idpEntityId: string;
  acsUrl: string;
  clock: Clock;
  /** Whether `response` is the signature-verified Response. */
  signed: boolean;
}

export interface CheckedResponse {
  inResponseTo?: string;
}

/** The IdP's Issuer element: its entity ID, in entity format. */
export function checkIssuer(issuer: Element, idpEntityId: string, what: string): void {
  const format = attr(issuer, 'Format');
  if (format !== undefined && format !== ENTITY_FORMAT) throw new SamlXmlError(`${what}: Issuer format is not entity`);
  if (textOf(issuer, `${what} Issuer`) !== idpEntityId) throw new SamlXmlError(`${what}: Issuer is not the configured IdP`);
}

export function checkResponse(response: Element, expect: ResponseExpectations): CheckedResponse {
  if (!is(response, NS.protocol, 'Response')) throw new SamlXmlError('response: not a Response');
  if (attr(response, 'Version') !== '2.0') throw new SamlXmlError('response: not SAML 2.0');
  if (!attr(response, 'ID')) throw new SamlXmlError('response: missing ID');
  const status = requiredChild(requiredChild(response, NS.protocol, 'Status', 'response'), NS.protocol, 'StatusCode', 'response');
  if (attr(status, 'Value') !== SUCCESS) throw new SamlXmlError('response: status is not Success');
  // SAML bindings 3.5.5.2: a signed message must carry Destination, and it must be where it arrived.
  const destination = attr(response, 'Destination');
  if (destination === undefined && expect.signed) throw new SamlXmlError('response: signed but no Destination');
  if (destination !== undefined && destination !== expect.acsUrl) throw new SamlXmlError('response: Destination is not this ACS');
  const issuer = optionalChild(response, NS.assertion, 'Issuer', 'response');
  if (!issuer) throw new SamlXmlError('response: missing Issuer');
  checkIssuer(issuer, expect.idpEntityId, 'response');
  issuedRecently(instant(attr(response, 'IssueInstant'), 'response IssueInstant'), expect.clock, 'response');
  return { inResponseTo: attr(response, 'InResponseTo') };
}
