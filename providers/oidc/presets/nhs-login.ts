import { z } from 'zod';
import type { OidcPreset } from './types.ts';
import { aalOfVector, parseVector, proofingRank, vectorsFor, VECTOR_PATTERN } from './vocabulary.ts';
import { PRIVILEGED_CLAIMS } from '../../../src/identity/entitlements.ts';

// NHS login (nhs-interfaces.md section 2): RS512 everywhere, private_key_jwt only, vectors of trust
// (`vtr` in, `vot` back, and the RP must check one against the other), no acr/amr, no max_age or
// login_hint, NHS number and identity proofing level with the profile scope.

const nhsLoginClaims = z.looseObject({
  vot: z.string().regex(VECTOR_PATTERN).optional(),
  vtm: z.string().max(500).optional(),
  // Ten digits; the modulus-11 check is not applied: NHS sandbox and APIM mock numbers (9000000019,
  // 9912003072) fail it.
  nhs_number: z.string().regex(/^\d{10}$/).optional(),
  identity_proofing_level: z.string().regex(/^P\d$/).optional(),
  birthdate: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).optional(),
});

export const nhsLoginPreset: OidcPreset = {
  name: 'nhs-login',
  scope: 'openid profile',
  idTokenAlg: 'RS512',
  assertionAlg: { RSA: 'RS512', EC: 'ES256' },
  assertionAudience: 'token_endpoint',
  paths: {
    authorization_endpoint: '/authorize',
    token_endpoint: '/token',
    jwks_uri: '/.well-known/jwks.json',
    userinfo_endpoint: '/userinfo',
  },
  explicitIssuerPort: false,
  logoutTokenTypes: ['logout+jwt'],
  // NHS login knows patients only: staff attributes in its tokens are never believed, whatever the
  // broker's settings (which refuse to entitle it to them anyway).
  dropClaims: ['token_use', ...PRIVILEGED_CLAIMS],
  plan(request, config) {
    const params: Record<string, string> = {};
    let vtr: string[];
    const min = request.minimumAssurance;
    if (min?.proofing) vtr = vectorsFor(min.proofing);
    else if (request.acrValues?.some((v) => VECTOR_PATTERN.test(v))) vtr = request.acrValues.filter((v) => VECTOR_PATTERN.test(v));
    else vtr = config.vtr?.length ? config.vtr : vectorsFor('P9');
    if (min?.aal) {
      const aal = min.aal;
      vtr = vtr.filter((v) => (aalOfVector(parseVector(v) ?? { credentials: [] }) ?? 0) >= aal);
    }
    // Always explicit, so the returned vot can be checked against exactly what was asked.
    params.vtr = JSON.stringify(vtr);
    // NHS login has no max_age: a fresh login is forced instead, and auth_time is still checked.
    const login = request.prompt?.split(' ').includes('login') || request.maxAge !== undefined;
    if (login) params.prompt = 'login';
    const floors = vtr.map((v) => proofingRank(parseVector(v)?.proofing)).filter((n): n is number => n !== undefined);
    const minProofing = floors.length === vtr.length && floors.length ? `P${Math.min(...floors)}` : undefined;
    return { params, expect: { vtr, ...(minProofing && { minProofing }) } };
  },
  readClaims(_subject, claims) {
    const parsed = nhsLoginClaims.safeParse(claims);
    if (!parsed.success) return { refused: `malformed NHS login claim ${parsed.error.issues[0]?.path.join('.')}` };
    if (!parsed.data.vot) return { refused: 'no vot in the ID token' };
    return { claims };
  },
  assurance(claims) {
    const c = nhsLoginClaims.parse(claims);
    const vector = c.vot ? parseVector(c.vot) : undefined;
    // vot is what NHS login vouches for in this login; identity_proofing_level is the best the person
    // ever reached. The broker keeps the lower of the two.
    const ranks = [proofingRank(vector?.proofing), proofingRank(c.identity_proofing_level)].filter((n): n is number => n !== undefined);
    const proofing = ranks.length ? `P${Math.min(...ranks)}` : undefined;
    const aal = vector ? aalOfVector(vector) : undefined;
    return {
      // NHS login sends no acr: the vector of trust is the broker's acr (the vectors are in its acr_values_supported).
      ...(c.vot && { acr: c.vot, vot: c.vot }),
      ...(proofing && { proofing }),
      ...(aal !== undefined && { aal }),
    };
  },
};
