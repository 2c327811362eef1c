import { z } from 'zod';
import type { OidcPreset } from './types.ts';
import { CIS2_ACR_PATTERN, aalOfAcr, parseAal, upstreamPrompt } from './vocabulary.ts';

// NHS CIS2 (nhs-interfaces.md section 1): ForgeRock AM paths (/access_token, /connect/jwk_uri), an
// issuer written with ":443", acr_values AAL3_ANY / AAL2_OR_AAL3_ANY, assurance levels as strings or
// numbers, staff roles from userinfo (nationalrbacaccess) and the selected role in the ID token.

const role = z.looseObject({
  person_roleid: z.string().min(1).max(64),
  person_orgid: z.string().max(64).optional(),
  org_code: z.string().min(1).max(32),
  role_code: z.string().min(1).max(200),
  role_name: z.string().max(500).optional(),
  activity_codes: z.array(z.string().max(32)).max(500).optional(),
});

const level = z.union([z.string().max(8), z.number()]);

const cis2Claims = z.looseObject({
  acr: z.string().max(200).optional(),
  amr: z.array(z.string().max(100)).max(20).optional(),
  authentication_assurance_level: level.optional(),
  id_assurance_level: level.optional(),
  idassurancelevel: level.optional(),
  nhsid_useruid: z.string().min(1).max(64).optional(),
  selected_roleid: z.string().min(1).max(64).optional(),
  nhsid_nrbac_roles: z.array(role).max(200).optional(),
  nhsid_user_orgs: z.array(z.looseObject({ org_code: z.string().min(1).max(32), org_name: z.string().max(500).optional() })).max(200).optional(),
});

export type Cis2Role = z.infer<typeof role>;

/** The acr_values CIS2 understands for a minimum AAL (nhs-interfaces.md 1.5). */
export function cis2AcrFor(aal: number): string | undefined {
  if (aal >= 3) return 'AAL3_ANY';
  if (aal === 2) return 'AAL2_OR_AAL3_ANY';
  return undefined;
}

export const cis2Preset: OidcPreset = {
  name: 'cis2',
  // nhsperson carries nhsid_useruid, the linkable staff identifier.
  scope: 'openid profile nationalrbacaccess selectedrole associatedorgs nhsperson',
  idTokenAlg: 'RS256',
  assertionAlg: { RSA: 'RS512', EC: 'ES256' },
  assertionAudience: 'token_endpoint',
  paths: {
    authorization_endpoint: '/authorize',
    token_endpoint: '/access_token',
    jwks_uri: '/connect/jwk_uri',
    userinfo_endpoint: '/userinfo',
    end_session_endpoint: '/connect/endSession',
  },
  explicitIssuerPort: true,
  // ForgeRock AM is not known to type its logout tokens [U]; the other rules (events, no nonce) still apply.
  logoutTokenTypes: ['logout+jwt', 'JWT'],
  dropClaims: ['auditTrackingId', 'tokenName', 'tokenType', 'realm', 'org.forgerock.openidconnect.ops', 'subname'],
  plan(request, config) {
    const params: Record<string, string> = {};
    let acr: string[] = [];
    const required = request.minimumAssurance?.aal ? cis2AcrFor(request.minimumAssurance.aal) : undefined;
    if (required) acr = [required];
    else if (request.acrValues?.some((v) => CIS2_ACR_PATTERN.test(v))) acr = request.acrValues.filter((v) => CIS2_ACR_PATTERN.test(v));
    else if (config.acr_values?.length) acr = config.acr_values;
    if (acr.length) params.acr_values = acr.join(' ');
    if (request.maxAge !== undefined) params.max_age = String(request.maxAge);
    const prompt = upstreamPrompt(request);
    if (prompt) params.prompt = prompt;
    if (request.loginHint) params.login_hint = request.loginHint;
    // What was asked for is checked on the way back: the weakest requested value sets the floor.
    const floors = acr.map(aalOfAcr).filter((n): n is number => n !== undefined);
    return { params, expect: floors.length === acr.length && floors.length ? { minAal: Math.min(...floors) } : {} };
  },
  readClaims(subject, claims) {
    const parsed = cis2Claims.safeParse(claims);
    if (!parsed.success) return { refused: `malformed CIS2 claim ${parsed.error.issues[0]?.path.join('.')}` };
    const c = parsed.data;
    if (c.authentication_assurance_level !== undefined && parseAal(c.authentication_assurance_level) === undefined) return { refused: 'authentication_assurance_level is not 1, 2 or 3' };
    if (c.nhsid_useruid !== undefined && c.nhsid_useruid !== subject) return { refused: 'nhsid_useruid differs from sub' };
    if (c.selected_roleid !== undefined && c.nhsid_nrbac_roles !== undefined && !c.nhsid_nrbac_roles.some((r) => r.person_roleid === c.selected_roleid)) {
      return { refused: 'selected_roleid is not one of nhsid_nrbac_roles' };
    }
    return { claims };
  },
  assurance(claims) {
    const c = cis2Claims.parse(claims);
    // The explicit level wins; otherwise the acr's AALn prefix is the floor it guarantees.
    const aal = parseAal(c.authentication_assurance_level) ?? aalOfAcr(c.acr);
    return { acr: c.acr, amr: c.amr, ...(aal !== undefined && { aal }) };
  },
};
