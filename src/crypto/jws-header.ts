import { hasDuplicateMembers } from './duplicate-members.ts';

// The shape every JWS the broker verifies must have, checked before any key is looked at, at every
// input (exchange subject and actor tokens, DPoP proofs, client assertions, upstream ID and logout
// tokens). jose and oidc-provider each handle parts of this differently (jose reads crit ["b64","b64"]
// and b64:false outside crit as an ordinary JWS; oidc-provider's client authentication honours b64),
// so one strict rule is applied in front of all of them:
//  - the compact serialisation only: the JSON serialisations can carry unprotected header members and
//    several signatures, which no input expects (RFC 7515 7.2, RFC 8725 3.1);
//  - no member named twice, in the protected header or in the payload (RFC 8725 2.6; see
//    duplicate-members.ts);
//  - no `crit` at all: the broker implements no JWS extension, so every critical parameter is one it
//    does not understand, and RFC 7515 4.1.11 says such a JWS must be refused (this also covers an
//    empty crit, crit naming registered parameters, and crit entries repeated);
//  - no `b64` (RFC 7797): with b64:false the signature covers the raw payload, and an implementation
//    that ignores the parameter verifies other bytes than one that honours it. Even b64:true is refused:
//    the parameter has no business in a JWT.

export class JwsShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JwsShapeError';
  }
}

const SEGMENT = /^[A-Za-z0-9_-]+$/;
const SIGNATURE = /^[A-Za-z0-9_-]*$/;

function segmentText(segment: string): string {
  return Buffer.from(segment, 'base64url').toString('utf8');
}

/** Checks the token's shape and returns its protected header; throws JwsShapeError saying what is wrong. */
export function checkJwsShape(token: string): Record<string, unknown> {
  const first = token.indexOf('.');
  const second = first < 0 ? -1 : token.indexOf('.', first + 1);
  if (second < 0 || token.indexOf('.', second + 1) >= 0) throw new JwsShapeError('not a compact JWS');
  const h = token.slice(0, first);
  const p = token.slice(first + 1, second);
  if (!SEGMENT.test(h) || !SEGMENT.test(p) || !SIGNATURE.test(token.slice(second + 1))) throw new JwsShapeError('not a compact JWS');
  const headerText = segmentText(h);
  if (hasDuplicateMembers(headerText)) throw new JwsShapeError('a header member appears twice');
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch {
    throw new JwsShapeError('the header is not JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new JwsShapeError('the header is not a JSON object');
  const members = header as Record<string, unknown>;
  if (Object.hasOwn(members, 'crit')) throw new JwsShapeError('critical header parameters (crit) are not supported');
  if (Object.hasOwn(members, 'b64')) throw new JwsShapeError('the b64 header parameter is not supported');
  if (hasDuplicateMembers(segmentText(p))) throw new JwsShapeError('a claim appears twice');
  return members;
}
