import { z } from 'zod';
import type { OidcPreset } from './types.ts';
import { upstreamPrompt } from './vocabulary.ts';

// A standards-conforming OpenID Provider: acr_values and max_age as in OIDC Core, acr/amr read back.

const assuranceClaims = z.looseObject({
  acr: z.string().max(200).optional(),
  amr: z.array(z.string().max(100)).max(20).optional(),
});

export const genericPreset: OidcPreset = {
  name: 'generic',
  scope: 'openid profile email',
  idTokenAlg: 'RS256',
  assertionAlg: { RSA: 'RS256', EC: 'ES256' },
  assertionAudience: 'issuer',
  explicitIssuerPort: false,
  logoutTokenTypes: ['logout+jwt'],
  dropClaims: [],
  plan(request, config) {
    const params: Record<string, string> = {};
    // A generic OP's acr vocabulary is unknown: the client's values (or the configured ones) go as they are.
    const acr = request.acrValues?.length ? request.acrValues : config.acr_values;
    if (acr?.length) params.acr_values = acr.join(' ');
    if (request.maxAge !== undefined) params.max_age = String(request.maxAge);
    const prompt = upstreamPrompt(request);
    if (prompt) params.prompt = prompt;
    if (request.loginHint) params.login_hint = request.loginHint;
    return { params, expect: {} };
  },
  readClaims(_subject, claims) {
    const parsed = assuranceClaims.safeParse(claims);
    if (!parsed.success) return { refused: `malformed acr/amr: ${parsed.error.issues[0]?.path.join('.')}` };
    return { claims };
  },
  assurance(claims) {
    const { acr, amr } = assuranceClaims.parse(claims);
    return { acr, amr };
  },
};
