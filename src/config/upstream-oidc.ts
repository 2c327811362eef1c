import { z } from 'zod';
import { checkEntitledUses, commonUpstreamFields } from './upstream-common.ts';
import { STAFF_CLAIMS, type StaffClaim } from '../identity/entitlements.ts';

// Settings of an upstream OpenID Provider (providers/oidc). Owned by the OIDC connector work.
// A preset (cis2, nhs-login) supplies the upstream's quirks as defaults: endpoint paths, scopes,
// signing algorithms, how assurance is requested and read. Anything given here wins over the preset.

function isUrl(v: string): boolean {
  try {
    return ['https:', 'http:'].includes(new URL(v).protocol);
  } catch {
    return false;
  }
}

// Kept as the exact string: CIS2's issuer carries an explicit ":443" that URL parsing would drop,
// and `iss` is compared byte for byte.
const url = z.string().max(2000).refine(isUrl, 'must be an absolute http(s) URL');

const privateJwk = z.looseObject({
  kty: z.enum(['RSA', 'EC']),
  d: z.string().min(1, 'must be a private key'),
  kid: z.string().optional(),
});

export const OIDC_PRESETS = ['cis2', 'nhs-login', 'generic'] as const;

/** The staff claims each kind of upstream asserts by default: CIS2 is the staff identity service; NHS login only knows patients. */
const PRESET_PRIVILEGED: Record<(typeof OIDC_PRESETS)[number], readonly StaffClaim[]> = { cis2: STAFF_CLAIMS, 'nhs-login': [], generic: [] };
export const CLIENT_ASSERTION_ALGS = ['RS256', 'RS512', 'ES256', 'PS256'] as const;
export const ID_TOKEN_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA'] as const;

export const oidcUpstreamSchema = z
  .strictObject({
    ...commonUpstreamFields,
    type: z.literal('oidc'),
    preset: z.enum(OIDC_PRESETS).default('generic').describe('upstream quirks: NHS CIS2, NHS login or a standard OP'),
    issuer: url.describe('exact issuer identifier as it appears in `iss` (CIS2: with ":443")'),
    discovery: z.boolean().optional().describe('fetch {issuer}/.well-known/openid-configuration (default: true unless endpoints are given)'),
    authorization_endpoint: url.optional(),
    token_endpoint: url.optional(),
    jwks_uri: url.optional(),
    userinfo_endpoint: url.optional(),
    end_session_endpoint: url.optional(),
    client_id: z.string().min(1).max(255),
    token_endpoint_auth_method: z.enum(['private_key_jwt', 'client_secret_basic', 'client_secret_post']).optional().describe('default: private_key_jwt when a key is given, else client_secret_basic'),
    client_secret: z.string().min(16, 'must be at least 16 characters').optional(),
    private_key_jwk: privateJwk.optional().describe('private key (JWK) for private_key_jwt'),
    private_key_file: z.string().min(1).optional().describe('path of a PEM (PKCS#8 or PKCS#1/SEC1) or JWK file for private_key_jwt'),
    private_key_kid: z.string().min(1).max(200).optional().describe('kid to put in client assertions (default: the JWK kid)'),
    signing_alg: z.enum(CLIENT_ASSERTION_ALGS).optional().describe('client assertion algorithm (default from the preset: CIS2 RS512, NHS login RS512, generic RS256 or ES256 by key type)'),
    id_token_signed_response_alg: z.enum(ID_TOKEN_ALGS).optional().describe('the only ID token alg accepted (default from the preset: CIS2 RS256, NHS login RS512)'),
    scope: z.string().min(1).max(1000).optional().describe('default from the preset; must include openid'),
    acr_values: z.array(z.string().min(1).max(100)).max(20).optional().describe('acr_values sent when the login asks for nothing more specific'),
    vtr: z.array(z.string().regex(/^P\d(\.C[a-z])*$|^C[a-z](\.C[a-z])*$/, 'a vector such as P9.Cp.Cd')).max(20).optional().describe('NHS login vectors of trust sent when the login asks for nothing more specific'),
    userinfo: z.boolean().default(true).describe('fetch userinfo after the code exchange (CIS2 roles come from there)'),
    clockSkew: z.number().int().min(0).max(300).default(30).describe('seconds of clock tolerance for exp/iat/auth_time'),
    timeoutMs: z.number().int().min(100).max(60_000).default(5000).describe('bound on every request to the upstream'),
    logout_token_types: z.array(z.string().min(1)).optional().describe('JWT typ values accepted on back-channel logout tokens (default from the preset)'),
  })
  .superRefine((c, ctx) => {
    if (c.scope !== undefined && !c.scope.split(' ').includes('openid')) ctx.addIssue({ code: 'custom', path: ['scope'], message: 'must include openid' });
    const method = c.token_endpoint_auth_method ?? (c.private_key_jwk || c.private_key_file ? 'private_key_jwt' : 'client_secret_basic');
    if (method === 'private_key_jwt') {
      if (!c.private_key_jwk === !c.private_key_file) ctx.addIssue({ code: 'custom', path: ['private_key_jwk'], message: 'give exactly one of private_key_jwk or private_key_file for private_key_jwt' });
    } else if (!c.client_secret) {
      ctx.addIssue({ code: 'custom', path: ['client_secret'], message: `is required for ${method}` });
    }
    if (c.preset === 'nhs-login' && method !== 'private_key_jwt') {
      ctx.addIssue({ code: 'custom', path: ['token_endpoint_auth_method'], message: 'NHS login accepts private_key_jwt only' });
    }
    const staticEndpoints = Boolean(c.authorization_endpoint || c.token_endpoint || c.jwks_uri);
    if (c.discovery === true && staticEndpoints) ctx.addIssue({ code: 'custom', path: ['discovery'], message: 'give endpoints or discovery, not both' });
    // Static metadata: a preset knows its upstream's paths; a generic OP must name its endpoints.
    if ((c.discovery === false || staticEndpoints) && c.preset === 'generic') {
      for (const k of ['authorization_endpoint', 'token_endpoint', 'jwks_uri'] as const) {
        if (!c[k]) ctx.addIssue({ code: 'custom', path: [k], message: 'is required without discovery' });
      }
    }
    if (c.preset === 'nhs-login' && c.mapping.privileged?.length) {
      ctx.addIssue({ code: 'custom', path: ['mapping', 'privileged'], message: 'NHS login is a patient identity provider: it is never trusted for staff claims' });
    }
    checkEntitledUses(c, c.mapping.privileged ?? PRESET_PRIVILEGED[c.preset], ctx);
  })
  .transform((c) => ({ ...c, mapping: { ...c.mapping, privileged: [...(c.mapping.privileged ?? PRESET_PRIVILEGED[c.preset])] } }));

export type OidcUpstreamConfig = z.infer<typeof oidcUpstreamSchema>;
export type OidcUpstreamInput = z.input<typeof oidcUpstreamSchema>;
