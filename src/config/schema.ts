import { z } from 'zod';
import { redisStoreProblems } from './store-url.ts';
import { upstreamSchema } from './upstreams.ts';
import { exchangeSchema } from './exchange.ts';

// The broker's configuration, parsed at the edge. Client entries use OAuth/OIDC metadata names so an
// operator can copy them from a registration document; broker-only settings use camelCase.

function parseUrl(v: string): URL | undefined {
  try {
    return new URL(v);
  } catch {
    return undefined;
  }
}

const absoluteUrl = z.string().refine((v) => parseUrl(v) !== undefined, 'must be an absolute URL');

const FORBIDDEN_SCHEMES = new Set(['javascript:', 'data:', 'vbscript:', 'file:']);
const redirectUri = z.string().superRefine((v, ctx) => {
  const url = parseUrl(v);
  if (!url) ctx.addIssue({ code: 'custom', message: 'must be an absolute URL' });
  else if (url.hash) ctx.addIssue({ code: 'custom', message: 'must not contain a fragment' });
  else if (FORBIDDEN_SCHEMES.has(url.protocol)) ctx.addIssue({ code: 'custom', message: 'scheme not allowed' });
});

const jwk = z.looseObject({ kty: z.string() });

const signingAlg = z.enum(['ES256', 'PS256']);
const clientSigningAlg = z.enum(['ES256', 'ES384', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA']);
const encAlg = z.enum(['RSA-OAEP', 'RSA-OAEP-256', 'ECDH-ES', 'ECDH-ES+A128KW', 'ECDH-ES+A256KW']);
const encEnc = z.enum(['A128GCM', 'A256GCM', 'A128CBC-HS256', 'A256CBC-HS512']);

// oidc-provider's mTLS feature is off (CC-19, OA-59): a client registered for certificate authentication
// would start and then fail every request with invalid_client_metadata, so it is refused at load.
const MTLS_AUTH_METHODS = new Set(['tls_client_auth', 'self_signed_tls_client_auth']);

export const clientSchema = z
  .strictObject({
    client_id: z.string().min(1).max(200).regex(/^[\w.:@~-]+$/, 'use letters, digits and . _ : @ ~ - only'),
    client_name: z.string().max(200).optional(),
    client_secret: z.string().min(16, 'must be at least 16 characters').optional(),
    redirect_uris: z.array(redirectUri).default([]),
    post_logout_redirect_uris: z.array(redirectUri).default([]),
    grant_types: z.array(z.enum(['authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'])).default(['authorization_code']),
    response_types: z.array(z.literal('code')).optional(),
    token_endpoint_auth_method: z
      .enum(['private_key_jwt', 'client_secret_basic', 'client_secret_post', 'none'], {
        error: (issue) => (MTLS_AUTH_METHODS.has(String(issue.input)) ? `${String(issue.input)} is not supported: the broker has no mTLS client authentication (use private_key_jwt)` : undefined),
      })
      .default('private_key_jwt'),
    token_endpoint_auth_signing_alg: clientSigningAlg.optional(),
    jwks: z.strictObject({ keys: z.array(jwk).min(1) }).optional(),
    jwks_uri: absoluteUrl.optional(),
    scope: z.string().max(2000).optional(),
    dpop_bound_access_tokens: z.boolean().optional(),
    backchannel_logout_uri: absoluteUrl.optional(),
    // Signatures and encryption a client can register for.
    id_token_signed_response_alg: signingAlg.optional(),
    id_token_encrypted_response_alg: encAlg.optional(),
    id_token_encrypted_response_enc: encEnc.optional(),
    userinfo_signed_response_alg: signingAlg.optional(),
    userinfo_encrypted_response_alg: encAlg.optional(),
    userinfo_encrypted_response_enc: encEnc.optional(),
    authorization_signed_response_alg: signingAlg.optional(),
    authorization_encrypted_response_alg: encAlg.optional(),
    authorization_encrypted_response_enc: encEnc.optional(),
    introspection_signed_response_alg: signingAlg.optional(),
    introspection_encrypted_response_alg: encAlg.optional(),
    introspection_encrypted_response_enc: encEnc.optional(),
    // Broker settings for this client.
    firstParty: z.boolean().default(false).describe('first-party clients skip the consent page'),
    resources: z.array(absoluteUrl).default([]).describe('resource indicators this client may request tokens for'),
    upstreams: z.array(z.string()).optional().describe('upstream providers offered to this client (default: all)'),
    allowedOrigins: z.array(absoluteUrl).default([]).describe('browser origins allowed to call token/userinfo with CORS'),
    minimumAssurance: z
      .strictObject({ aal: z.number().int().min(1).max(3).optional(), proofing: z.enum(['P0', 'P5', 'P9']).optional() })
      .optional()
      .describe('a weaker login triggers step-up at the upstream instead of a token'),
  })
  .superRefine((c, ctx) => {
    const secretMethods = ['client_secret_basic', 'client_secret_post'];
    if (secretMethods.includes(c.token_endpoint_auth_method) && !c.client_secret) {
      ctx.addIssue({ code: 'custom', path: ['client_secret'], message: `is required for ${c.token_endpoint_auth_method}` });
    }
    if (c.token_endpoint_auth_method === 'private_key_jwt' && !c.jwks && !c.jwks_uri) {
      ctx.addIssue({ code: 'custom', path: ['jwks'], message: 'jwks or jwks_uri is required for private_key_jwt' });
    }
    if (c.jwks && c.jwks_uri) ctx.addIssue({ code: 'custom', path: ['jwks_uri'], message: 'give jwks or jwks_uri, not both' });
    if (c.grant_types.includes('authorization_code') && c.redirect_uris.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['redirect_uris'], message: 'at least one redirect URI is required for authorization_code' });
    }
    if (c.token_endpoint_auth_method === 'none' && c.grant_types.includes('client_credentials')) {
      ctx.addIssue({ code: 'custom', path: ['grant_types'], message: 'a public client cannot use client_credentials' });
    }
    c.redirect_uris.forEach((u, i) => {
      const url = parseUrl(u);
      if (url && url.protocol === 'http:' && !['localhost', '127.0.0.1', '[::1]'].includes(url.hostname)) {
        ctx.addIssue({ code: 'custom', path: ['redirect_uris', i], message: 'http is allowed only for loopback hosts' });
      }
    });
  });

export const resourceSchema = z.strictObject({
  identifier: absoluteUrl.describe('the resource indicator (RFC 8707), also the token audience'),
  scopes: z.array(z.string().min(1).max(200)).min(1),
  format: z.enum(['jwt', 'opaque']).default('jwt'),
  accessTokenTTL: z.number().int().min(30).max(86_400).default(300),
  signingAlg: signingAlg.default('ES256'),
  introspectionClients: z.array(z.string()).default([]).describe('clients (the resource server itself) allowed to introspect tokens for this resource'),
});

const secretsSchema = z.strictObject({
  keyEncryptionKey: z.string().min(1).optional().describe('32-byte key (base64url or hex) that seals private keys and personal data at rest'),
  previousKeyEncryptionKeys: z.array(z.string()).default([]),
});

export const configSchema = z
  .strictObject({
    port: z.number().int().min(0).max(65_535).default(8080),
    host: z.string().default('0.0.0.0'),
    issuer: absoluteUrl.optional().describe('default http://localhost:<port>'),
    store: z.string().default('sqlite:./data/broker.db').describe('sqlite:<path> | redis://… | rediss://… | redis+sentinel://… | redis+cluster://…'),
    storeOptions: z
      .strictObject({
        waitReplicas: z.number().int().min(0).max(16).default(0),
        waitTimeoutMs: z.number().int().min(1).max(10_000).default(1000),
        allowPlaintext: z.boolean().default(false).describe('accept a Redis store off loopback without TLS: only where the link runs on a private network you control (a compose network, a Kubernetes NetworkPolicy)'),
        clockSkewWarnSeconds: z.number().positive().max(3600).default(15).describe("warn (once, and once more on recovery) when this instance's clock and Redis's (TIME) differ by more than this; default 15 s, the OP's clock tolerance. The difference is the gauge broker_clock_skew_seconds"),
      })
      .default({ waitReplicas: 0, waitTimeoutMs: 1000, allowPlaintext: false, clockSkewWarnSeconds: 15 })
      .describe(
        'Redis only: after each security write (consumed codes and refresh tokens, replay markers such as client-assertion and DPoP jtis and SAML assertion IDs, revocations, account links, signing keys, consent changes), WAIT for waitReplicas replicas to acknowledge it within waitTimeoutMs; fewer means the write is reported as failed (503), so a failover or split brain cannot lose it and let a replay through. Set it with Sentinel (at most the number of replicas that stay up when the primary is lost). 0 = no WAIT. Not supported with redis+cluster.',
      ),
    profile: z.enum(['demo', 'none']).default('none'),
    trustProxy: z.boolean().default(false).describe('trust X-Forwarded-* from a TLS-terminating proxy'),
    tls: z
      .strictObject({
        certFile: z.string().min(1),
        keyFile: z.string().min(1),
        /**
         * CA bundle for client certificates: the smartcard proxy's CA and, for direct mTLS, the smartcard
         * issuing CAs (browsers only offer certificates from the CAs the server names).
         */
        clientCaFile: z.string().min(1).optional(),
        /** Ask every client for a certificate (verified against clientCaFile when given; never required at the TLS layer). */
        requestCert: z.boolean().default(false),
      })
      .optional()
      .describe('listen on HTTPS (otherwise plain HTTP behind a TLS-terminating proxy)'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    secrets: secretsSchema.default({ previousKeyEncryptionKeys: [] }),
    tokens: z
      .strictObject({
        signingAlg: signingAlg.default('ES256'),
        authorizationCodeTTL: z.number().int().min(10).max(600).default(60),
        idTokenTTL: z.number().int().min(60).max(86_400).default(3600),
        refreshTokenTTL: z.number().int().min(300).max(31_536_000).default(86_400),
        sessionTTL: z.number().int().min(300).max(604_800).default(28_800),
        userAccessTokenTTL: z.number().int().min(30).max(86_400).default(600),
        keyRotationOverlap: z.number().int().min(60).default(86_400).describe('seconds a new key is published before it signs'),
      })
      .default({ signingAlg: 'ES256', authorizationCodeTTL: 60, idTokenTTL: 3600, refreshTokenTTL: 86_400, sessionTTL: 28_800, userAccessTokenTTL: 600, keyRotationOverlap: 86_400 }),
    clients: z.array(clientSchema).default([]),
    resources: z.array(resourceSchema).default([]),
    upstreams: z.array(upstreamSchema).default([]),
    exchange: exchangeSchema,
    rateLimits: z
      .strictObject({
        tokenPerIp: z.number().int().min(0).default(3000).describe('requests per minute per client IP to the token, PAR, introspection and revocation endpoints (0 = off)'),
        tokenPerClient: z.number().int().min(0).default(6000).describe('requests per minute per client id (HTTP Basic, client_id or client assertion in the body) to the same endpoints: throttles guessing at client secrets, assertions and PKCE verifiers'),
        loginPerIp: z.number().int().min(0).default(1200).describe('requests per minute per client IP to the login pages and upstream callbacks'),
        exchangePerSubjectToken: z.number().int().min(0).default(300).describe('token exchanges per minute of one subject_token (counted by its hash), whoever presents it'),
        accountPerMinute: z.number().int().min(0).default(600).describe('requests per minute per signed-in account to the account pages and the delegation API'),
        accountChangesPerHour: z.number().int().min(0).default(600).describe('changes per hour per account through the account pages and the delegation API (invitations, consent changes, links)'),
        invitationAttemptsPerAccount: z.number().int().min(0).default(30).describe('invitation codes answered (accept or decline) per hour per account: throttles a carer guessing codes'),
        invitationAttemptsPerIp: z.number().int().min(0).default(300).describe('invitation codes answered per hour per client IP'),
      })
      .default({ tokenPerIp: 3000, tokenPerClient: 6000, loginPerIp: 1200, exchangePerSubjectToken: 300, accountPerMinute: 600, accountChangesPerHour: 600, invitationAttemptsPerAccount: 30, invitationAttemptsPerIp: 300 })
      .describe('rate limits, counted in the store so every instance shares them; over a limit: 429 slow_down with Retry-After'),
    delegation: z
      .strictObject({
        /** Legal bases that only staff may record (after verifying the relationship). */
        staffVerified: z.array(z.enum(['consent', 'parental-responsibility', 'lpa-health-welfare', 'court-deputy', 'best-interest'])).default(['parental-responsibility', 'lpa-health-welfare', 'court-deputy', 'best-interest']),
        minimumProofing: z.enum(['P0', 'P5', 'P9']).default('P9'),
        maximumPeriodDays: z.number().int().min(1).max(36_500).default(3 * 365),
        allowedLevels: z.array(z.union([z.literal(1), z.literal(2), z.literal(3)])).default([1, 2, 3]),
        invitationTTL: z.number().int().min(300).max(30 * 86_400).default(7 * 86_400),
        /** Staff who may record verified relationships: CIS2 AAL3 with one of these job role codes (R-codes). */
        staffRoleCodes: z.array(z.string()).default(['R8000', 'R8001', 'R8003', 'R0260', 'R0270']),
        staffMinimumAal: z.number().int().min(1).max(3).default(3),
        /** Put the patient's NHS number into delegated tokens. */
        includeNhsNumber: z.boolean().default(false),
        /** Access-token lifetime cap for delegated tokens (seconds). */
        accessTokenTTL: z.number().int().min(30).max(300).default(300),
      })
      .default({ staffVerified: ['parental-responsibility', 'lpa-health-welfare', 'court-deputy', 'best-interest'], minimumProofing: 'P9', maximumPeriodDays: 1095, allowedLevels: [1, 2, 3], invitationTTL: 604_800, staffRoleCodes: ['R8000', 'R8001', 'R8003', 'R0260', 'R0270'], staffMinimumAal: 3, includeNhsNumber: false, accessTokenTTL: 300 }),
    metrics: z
      .strictObject({
        port: z.number().int().min(1).max(65_535).optional().describe('serve /metrics on this separate port'),
        host: z.string().default('127.0.0.1').describe('interface of the separate metrics port'),
        bearerToken: z.string().min(16).optional().describe('or serve /metrics on the main port behind this bearer token'),
      })
      .default({ host: '127.0.0.1' }),
  })
  .superRefine((cfg, ctx) => {
    const ids = new Set<string>();
    cfg.clients.forEach((c, i) => {
      if (ids.has(c.client_id)) ctx.addIssue({ code: 'custom', path: ['clients', i, 'client_id'], message: `duplicate client_id ${c.client_id}` });
      ids.add(c.client_id);
      const known = new Set(cfg.resources.map((r) => r.identifier));
      c.resources.forEach((r, j) => {
        if (!known.has(r)) ctx.addIssue({ code: 'custom', path: ['clients', i, 'resources', j], message: `unknown resource ${r}` });
      });
    });
    const upstreamIds = new Set<string>();
    cfg.upstreams.forEach((u, i) => {
      if (upstreamIds.has(u.id) || u.id === 'demo') ctx.addIssue({ code: 'custom', path: ['upstreams', i, 'id'], message: `duplicate or reserved upstream id ${u.id}` });
      upstreamIds.add(u.id);
    });
    cfg.clients.forEach((c, i) => {
      c.upstreams?.forEach((u, j) => {
        if (!upstreamIds.has(u) && !(u === 'demo' && cfg.profile === 'demo')) ctx.addIssue({ code: 'custom', path: ['clients', i, 'upstreams', j], message: `unknown upstream ${u}` });
      });
    });
    for (const message of redisStoreProblems(cfg.store, cfg.storeOptions.allowPlaintext)) ctx.addIssue({ code: 'custom', path: ['store'], message });
    // Only the connection or a trusted proxy can say a request came over https; with neither, an https
    // issuer's Secure cookies cannot be set (every login would fail) and discovery would mix schemes.
    if (cfg.issuer?.startsWith('https:') && !cfg.tls && !cfg.trustProxy) {
      ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'an https issuer needs tls (the broker terminates TLS) or trustProxy (a TLS-terminating proxy in front)' });
    }
    const rids = new Set<string>();
    cfg.resources.forEach((r, i) => {
      if (rids.has(r.identifier)) ctx.addIssue({ code: 'custom', path: ['resources', i, 'identifier'], message: 'duplicate resource' });
      rids.add(r.identifier);
    });
  });

export type BrokerConfig = z.infer<typeof configSchema>;
export type ClientConfig = z.infer<typeof clientSchema>;
export type ResourceConfig = z.infer<typeof resourceSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type DelegationPolicy = BrokerConfig['delegation'];
