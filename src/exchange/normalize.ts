import { decodeJwt, decodeProtectedHeader, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import type { ExchangeIssuerConfig } from '../config/exchange.ts';
import { parseActClaim } from './act.ts';
import { TokenRejected } from './errors.ts';
import type { ActClaim, Assurance, PresentedToken, TokenTypeName } from './types.ts';

// Claims of a subject or actor token → what the policy reads. Runs after the signature, issuer,
// audience and expiry were verified (or, in decode-only explain, on decoded claims marked unverified).
// Nothing unverified ever reaches a token: this only reads.

export type TokenLabel = 'subject_token' | 'actor_token';

/** Claims copied from the subject token into the exchanged one, whatever the issuer. */
const ASSURANCE_CLAIMS = ['acr', 'amr', 'auth_time', 'authentication_assurance_level', 'identity_proofing_level', 'vot'] as const;
/**
 * Staff role claims: copied only from issuers entitled to assert them, the broker itself (its tokens carry
 * only what an entitled upstream asserted, identity/entitlements.ts) and CIS2 issuers. A patient issuer
 * (NHS login) or a generic one must not hand a role to an exchanged token (WS-25); a generic issuer that is
 * entitled can still be given them through carryClaims, which the administrator writes.
 */
const ROLE_CLAIMS = ['selected_roleid', 'selected_role_code', 'selected_org_code'] as const;
/** Broker tokens also carry these (set by the delegation layer). */
const SELF_CLAIMS = ['patient_nhs_number'] as const;

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export function looksLikeJwt(value: string): boolean {
  return value.length <= 16_384 && JWT_SHAPE.test(value);
}

export function assuranceOf(claims: JWTPayload): Assurance {
  const out: Assurance = {};
  const aal = Number(claims.authentication_assurance_level);
  if (Number.isInteger(aal) && aal >= 1 && aal <= 3) out.aal = aal;
  else if (typeof claims.acr === 'string') {
    const m = /^AAL([1-3])_/.exec(claims.acr);
    if (m) out.aal = Number(m[1]);
  }
  const proofing = claims.identity_proofing_level;
  if (proofing === 'P0' || proofing === 'P5' || proofing === 'P9') out.proofing = proofing;
  else {
    const vot = typeof claims.vot === 'string' ? claims.vot : typeof claims.acr === 'string' ? claims.acr : '';
    const m = /^(P0|P5|P9)(\.|$)/.exec(vot);
    if (m) out.proofing = m[1] as Assurance['proofing'];
  }
  return out;
}

function carriedClaims(claims: JWTPayload, rolesEntitled: boolean, extra: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of [...ASSURANCE_CLAIMS, ...(rolesEntitled ? ROLE_CLAIMS : []), ...extra]) if (claims[name] !== undefined) out[name] = claims[name];
  // Always a string in broker tokens (grant-context.ts), whatever the upstream sent (CIS2 mocks send numbers).
  if (out.authentication_assurance_level !== undefined) out.authentication_assurance_level = String(out.authentication_assurance_level);
  return out;
}

function audiences(claims: JWTPayload): string[] {
  if (typeof claims.aud === 'string') return [claims.aud];
  return Array.isArray(claims.aud) ? claims.aud.filter((a): a is string => typeof a === 'string') : [];
}

function mayActOf(raw: unknown, label: TokenLabel): PresentedToken['mayAct'] {
  if (raw === undefined) return undefined;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new TokenRejected('invalid_request', 'may_act', `${label} may_act claim must be an object`);
  const { sub, iss } = raw as Record<string, unknown>;
  if ((sub !== undefined && typeof sub !== 'string') || (iss !== undefined && typeof iss !== 'string')) throw new TokenRejected('invalid_request', 'may_act', `${label} may_act claim is malformed`);
  if (sub === undefined) throw new TokenRejected('invalid_request', 'may_act', `${label} may_act claim names no sub`);
  return { sub, iss };
}

/**
 * NHS login's composite token (nhs-interfaces.md 2.9): `act.sub` is the proxy's own ID token. Checked
 * as APIM checks it (kid, typ JWT, alg; exp, iss, aud, nhs_number) and, stricter, its issuer must be
 * the composite token's. Its signature is covered by the composite token's, which was verified.
 */
function compositeActor(jwt: string, outerIssuer: string, label: TokenLabel): ActClaim {
  const bad = (message: string): TokenRejected => new TokenRejected('invalid_request', 'nhs_login_act', `${message} (in ${label})`);
  let header: ProtectedHeaderParameters;
  let claims: JWTPayload;
  try {
    header = decodeProtectedHeader(jwt);
    claims = decodeJwt(jwt);
  } catch {
    throw bad('Malformed JWT in act.sub');
  }
  if (typeof header.kid !== 'string' || header.kid === '') throw bad("Missing 'kid' header in act.sub JWT");
  if (typeof header.typ !== 'string' || header.typ.toUpperCase() !== 'JWT') throw bad("Invalid 'typ' header in act.sub JWT - must be 'JWT'");
  if (typeof header.alg !== 'string' || header.alg === 'none') throw bad("Missing or invalid 'alg' header in act.sub JWT");
  if (claims.exp === undefined) throw bad("Missing 'exp' claim in act.sub JWT");
  if (typeof claims.exp !== 'number') throw bad("Invalid 'exp' claim in act.sub JWT - must be a number");
  if (typeof claims.iss !== 'string') throw bad("Missing 'iss' claim in act.sub JWT");
  if (claims.aud === undefined) throw bad("Missing 'aud' claim in act.sub JWT");
  if (typeof claims.nhs_number !== 'string' || claims.nhs_number === '') throw bad("Missing 'nhs_number' claim in act.sub JWT");
  if (claims.iss !== outerIssuer) throw bad("Invalid 'iss' claim in act.sub JWT - not the composite token's issuer");
  if (typeof claims.sub !== 'string' || claims.sub === '') throw bad("Missing 'sub' claim in act.sub JWT");
  return { sub: claims.sub, iss: claims.iss };
}

function actOf(claims: JWTPayload, kind: PresentedToken['kind'], issuerUrl: string, label: TokenLabel): ActClaim | undefined {
  const raw = claims.act;
  if (raw === undefined) return undefined;
  const sub = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>).sub : undefined;
  if (kind === 'nhs-login' && typeof sub === 'string' && looksLikeJwt(sub)) return compositeActor(sub, issuerUrl, label);
  const parsed = parseActClaim(raw);
  if (parsed === 'invalid') throw new TokenRejected('invalid_request', 'act', `${label} act claim is malformed`);
  return parsed;
}

export interface NormalizeInput {
  label: TokenLabel;
  tokenType: TokenTypeName;
  /** The configured issuer, or "self" for the broker. */
  issuer: ExchangeIssuerConfig | 'self';
  issuerUrl: string;
  header: ProtectedHeaderParameters;
  claims: JWTPayload;
  ref: string;
  verified: boolean;
}

export function normalizeToken(input: NormalizeInput): PresentedToken {
  const { claims, label } = input;
  const self = input.issuer === 'self';
  const kind = input.issuer === 'self' ? 'self' : input.issuer.kind;
  if (typeof claims.sub !== 'string' || claims.sub === '' || claims.sub.length > 512) throw new TokenRejected('invalid_request', 'claims', `${label} has no usable 'sub' claim`);
  if (typeof claims.exp !== 'number') throw new TokenRejected('invalid_request', 'claims', `Missing 'exp' claim in ${label}`);
  const aud = audiences(claims);
  const clientId = self ? (typeof claims.client_id === 'string' ? claims.client_id : undefined) : typeof claims.azp === 'string' ? claims.azp : aud.length === 1 ? aud[0] : undefined;
  const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : undefined;
  const act = actOf(claims, kind, input.issuerUrl, label);
  const grantId = typeof claims.grant_id === 'string' ? claims.grant_id : typeof claims.origin_grant_id === 'string' ? claims.origin_grant_id : undefined;
  return {
    issuer: input.issuer === 'self' ? 'self' : input.issuer.id,
    issuerUrl: input.issuerUrl,
    kind,
    tokenType: input.tokenType,
    sub: claims.sub,
    clientId,
    audiences: aud,
    scopes: input.tokenType === 'id_token' ? undefined : scopes,
    exp: claims.exp,
    iat: typeof claims.iat === 'number' ? claims.iat : undefined,
    ref: input.ref,
    act,
    mayAct: mayActOf(claims.may_act, label),
    // A consent id means something only in the broker's own tokens.
    consentId: self && typeof claims.consent_id === 'string' ? claims.consent_id : undefined,
    originGrantId: self ? grantId : undefined,
    assurance: assuranceOf(claims),
    carried: input.issuer === 'self' ? carriedClaims(claims, true, SELF_CLAIMS) : carriedClaims(claims, input.issuer.kind === 'cis2', input.issuer.carryClaims),
    verified: input.verified,
    hasAct: claims.act !== undefined,
  };
}
