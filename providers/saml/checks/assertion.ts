import { NS, SamlXmlError, attr, children, instant, is, optionalChild, requiredChild, textOf } from '../xml.ts';
import { checkIssuer } from './response.ts';
import { issuedRecently, notBefore, notOnOrAfter, type Clock } from './times.ts';

// Checks on the verified assertion, including those node-saml 5.1 leaves out: the Issuer on login,
// the SubjectConfirmation method (bearer only), Recipient, InResponseTo on the confirmation, every
// AudienceRestriction naming the broker, and the NameID format (only persistent ids key accounts).

const BEARER = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';
const MAX_NAMEID = 1024;
const MAX_ATTRIBUTES = 200;
const MAX_VALUES = 100;

export interface AssertionExpectations {
  idpEntityId: string;
  spEntityId: string;
  acsUrl: string;
  nameIdFormat: string;
  clock: Clock;
}

export interface CheckedAssertion {
  id: string;
  issuer: string;
  nameId: string;
  nameIdFormat: string;
  /** InResponseTo of the bearer confirmation(s), if any. */
  inResponseTo?: string;
  /** Latest NotOnOrAfter (confirmation or conditions), epoch ms: how long the id must stay in the replay cache. */
  expiresAt: number;
  authnInstant: number;
  sessionIndex?: string;
  authnContextClassRef?: string;
  attributes: Map<string, string[]>;
}

function checkSubject(assertion: Element, expect: AssertionExpectations): { nameId: string; format: string; inResponseTo?: string; expiresAt: number } {
  const subject = requiredChild(assertion, NS.assertion, 'Subject', 'assertion');
  if (children(subject, NS.assertion, 'EncryptedID').length > 0 || children(subject, NS.assertion, 'BaseID').length > 0) throw new SamlXmlError('assertion: unsupported subject identifier');
  const nameIdEl = requiredChild(subject, NS.assertion, 'NameID', 'assertion subject');
  const nameId = textOf(nameIdEl, 'NameID');
  const format = attr(nameIdEl, 'Format') ?? 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified';
  if (format !== expect.nameIdFormat) throw new SamlXmlError(`assertion: NameID format ${format} is not the required one`);
  if (nameId.length === 0 || nameId.length > MAX_NAMEID || nameId !== nameId.trim()) throw new SamlXmlError('assertion: NameID is empty, too long or padded');
  const nameQualifier = attr(nameIdEl, 'NameQualifier');
  const spNameQualifier = attr(nameIdEl, 'SPNameQualifier');
  if (nameQualifier !== undefined && nameQualifier !== expect.idpEntityId) throw new SamlXmlError('assertion: NameQualifier is another IdP');
  if (spNameQualifier !== undefined && spNameQualifier !== expect.spEntityId) throw new SamlXmlError('assertion: SPNameQualifier is another SP');

  const confirmations = children(subject, NS.assertion, 'SubjectConfirmation');
  if (confirmations.length === 0) throw new SamlXmlError('assertion: no SubjectConfirmation');
  let inResponseTo: string | undefined;
  let expiresAt = 0;
  confirmations.forEach((c, i) => {
    if (attr(c, 'Method') !== BEARER) throw new SamlXmlError('assertion: SubjectConfirmation method is not bearer');
    const data = requiredChild(c, NS.assertion, 'SubjectConfirmationData', 'assertion subject confirmation');
    if (attr(data, 'Recipient') !== expect.acsUrl) throw new SamlXmlError('assertion: Recipient is not this ACS');
    const until = instant(attr(data, 'NotOnOrAfter'), 'SubjectConfirmationData NotOnOrAfter');
    // SAML profiles 4.1.4.2: a bearer confirmation carries NotOnOrAfter.
    if (until === undefined) throw new SamlXmlError('assertion: bearer confirmation without NotOnOrAfter');
    notOnOrAfter(until, expect.clock, 'subject confirmation');
    notBefore(instant(attr(data, 'NotBefore'), 'SubjectConfirmationData NotBefore'), expect.clock, 'subject confirmation');
    expiresAt = Math.max(expiresAt, until);
    const irt = attr(data, 'InResponseTo');
    if (i > 0 && irt !== inResponseTo) throw new SamlXmlError('assertion: confirmations disagree on InResponseTo');
    inResponseTo = irt;
  });
  return { nameId, format, inResponseTo, expiresAt };
}

function checkConditions(assertion: Element, expect: AssertionExpectations): number | undefined {
  const conditions = requiredChild(assertion, NS.assertion, 'Conditions', 'assertion');
  notBefore(instant(attr(conditions, 'NotBefore'), 'Conditions NotBefore'), expect.clock, 'conditions');
  const until = instant(attr(conditions, 'NotOnOrAfter'), 'Conditions NotOnOrAfter');
  notOnOrAfter(until, expect.clock, 'conditions');
  let restrictions = 0;
  for (let n = conditions.firstChild; n; n = n.nextSibling) {
    if (n.nodeType !== 1) continue;
    const el = n as Element;
    if (is(el, NS.assertion, 'AudienceRestriction')) {
      restrictions++;
      // Every restriction must include the broker (SAML core 2.5.1.4).
      const audiences = children(el, NS.assertion, 'Audience').map((a) => textOf(a, 'Audience'));
      if (!audiences.includes(expect.spEntityId)) throw new SamlXmlError('assertion: audience is not this SP');
    } else if (is(el, NS.assertion, 'OneTimeUse') || is(el, NS.assertion, 'ProxyRestriction')) {
      // OneTimeUse: the replay cache already makes every assertion single use.
    } else {
      // An unknown condition makes the assertion indeterminate, hence invalid (SAML core 2.5.1).
      throw new SamlXmlError('assertion: unknown condition');
    }
  }
  if (restrictions === 0) throw new SamlXmlError('assertion: no AudienceRestriction');
  return until;
}

function checkAuthnStatement(assertion: Element, clock: Clock): { authnInstant: number; sessionIndex?: string; classRef?: string } {
  const statements = children(assertion, NS.assertion, 'AuthnStatement');
  if (statements.length !== 1) throw new SamlXmlError('assertion: expected one AuthnStatement');
  const st = statements[0];
  const authnInstant = instant(attr(st, 'AuthnInstant'), 'AuthnInstant');
  if (authnInstant === undefined) throw new SamlXmlError('assertion: missing AuthnInstant');
  if (authnInstant > clock.now + clock.skew) throw new SamlXmlError('assertion: AuthnInstant in the future');
  notOnOrAfter(instant(attr(st, 'SessionNotOnOrAfter'), 'SessionNotOnOrAfter'), clock, 'authn statement session');
  const context = optionalChild(st, NS.assertion, 'AuthnContext', 'authn statement');
  const classRefEl = context ? optionalChild(context, NS.assertion, 'AuthnContextClassRef', 'authn context') : undefined;
  return { authnInstant, sessionIndex: attr(st, 'SessionIndex'), classRef: classRefEl ? textOf(classRefEl, 'AuthnContextClassRef').trim() : undefined };
}

function collectAttributes(assertion: Element): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const statement of children(assertion, NS.assertion, 'AttributeStatement')) {
    // EncryptedAttribute is not supported and is ignored, never half-read.
    for (const a of children(statement, NS.assertion, 'Attribute')) {
      const name = attr(a, 'Name');
      if (!name || name.length > 256) continue;
      const values: string[] = out.get(name) ?? [];
      for (const v of children(a, NS.assertion, 'AttributeValue')) {
        if (v.getAttributeNS('http://www.w3.org/2001/XMLSchema-instance', 'nil') === 'true') continue;
        try {
          values.push(textOf(v, 'AttributeValue'));
        } catch {
          // Complex (element) values are not mapped.
        }
        if (values.length > MAX_VALUES) throw new SamlXmlError('assertion: too many attribute values');
      }
      out.set(name, values);
      if (out.size > MAX_ATTRIBUTES) throw new SamlXmlError('assertion: too many attributes');
    }
  }
  return out;
}

export function checkAssertion(assertion: Element, expect: AssertionExpectations): CheckedAssertion {
  if (!is(assertion, NS.assertion, 'Assertion')) throw new SamlXmlError('assertion: not an Assertion');
  if (attr(assertion, 'Version') !== '2.0') throw new SamlXmlError('assertion: not SAML 2.0');
  const id = attr(assertion, 'ID');
  if (!id || id.length > 256) throw new SamlXmlError('assertion: missing ID');
  checkIssuer(requiredChild(assertion, NS.assertion, 'Issuer', 'assertion'), expect.idpEntityId, 'assertion');
  issuedRecently(instant(attr(assertion, 'IssueInstant'), 'assertion IssueInstant'), expect.clock, 'assertion');
  const subject = checkSubject(assertion, expect);
  const conditionsUntil = checkConditions(assertion, expect);
  const authn = checkAuthnStatement(assertion, expect.clock);
  return {
    id,
    issuer: expect.idpEntityId,
    nameId: subject.nameId,
    nameIdFormat: subject.format,
    inResponseTo: subject.inResponseTo,
    expiresAt: Math.max(subject.expiresAt, conditionsUntil ?? 0),
    authnInstant: authn.authnInstant,
    sessionIndex: authn.sessionIndex,
    authnContextClassRef: authn.classRef,
    attributes: collectAttributes(assertion),
  };
}
