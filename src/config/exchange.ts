import { z } from 'zod';
import type { BrokerConfig } from './schema.ts';

// RFC 8693 token-exchange policy (issue 7): data, validated at start-up. What is checked here needs
// only this section; references to clients and resources (elsewhere in the configuration) are checked
// by exchangeConfigProblems() once the whole configuration has parsed.

/** The broker itself as a subject or actor issuer. */
export const SELF_ISSUER = 'self';

export const TOKEN_TYPE_NAMES = ['access_token', 'id_token', 'jwt'] as const;
export type TokenTypeName = (typeof TOKEN_TYPE_NAMES)[number];
const tokenTypeName = z.enum(TOKEN_TYPE_NAMES);

const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
const id = z.string().regex(/^[A-Za-z0-9][\w.:-]{0,79}$/, 'use letters, digits and . _ : - (at most 80)');

function parseUrl(v: string): URL | undefined {
  try {
    return new URL(v);
  } catch {
    return undefined;
  }
}

const jwkSchema = z.looseObject({ kty: z.string(), kid: z.string().optional() });

export const exchangeIssuerSchema = z
  .strictObject({
    id: id.describe('name used by rules (subjectIssuers, actorIssuers) and in audit entries'),
    kind: z.enum(['cis2', 'nhs-login', 'generic']).describe('cis2: AAL claims; nhs-login: proofing and the composite act.sub JWT; generic: neither'),
    issuer: z.string().refine((v) => parseUrl(v) !== undefined, 'must be an absolute URL').describe('exact `iss` value'),
    jwks_uri: z.string().refine((v) => parseUrl(v) !== undefined, 'must be an absolute URL').optional(),
    jwks: z.strictObject({ keys: z.array(jwkSchema).min(1) }).optional(),
    algorithms: z.array(z.enum(ASYMMETRIC_ALGS)).min(1).default(['RS256', 'RS512']),
    audiences: z.array(z.string().min(1)).min(1).describe('the token `aud` must contain one of these (stricter than APIM, which only checks it exists)'),
    clockSkew: z.number().int().min(0).max(300).default(30).describe('seconds of tolerance on exp, nbf and iat'),
    maxTokenAge: z.number().int().min(30).max(86_400).optional().describe('refuse tokens whose iat is older than this (seconds)'),
    tokenTypes: z.array(tokenTypeName).min(1).default(['id_token']).describe('subject_token_type values this issuer can stand behind'),
    carryClaims: z.array(z.string().regex(/^[a-z][a-z0-9_]{0,63}$/)).default([]).describe('further claims copied into exchanged tokens (e.g. nhs_number); assurance claims are always copied'),
  })
  .superRefine((i, ctx) => {
    if (Boolean(i.jwks) === Boolean(i.jwks_uri)) ctx.addIssue({ code: 'custom', path: ['jwks_uri'], message: 'give exactly one of jwks_uri and jwks' });
    if (i.id === SELF_ISSUER) ctx.addIssue({ code: 'custom', path: ['id'], message: `"${SELF_ISSUER}" is reserved for the broker itself` });
  });

export const exchangeRuleSchema = z
  .strictObject({
    id: id.describe('named in decisions, errors, audit entries and explain output'),
    clients: z.array(z.string().min(1)).min(1).describe('calling clients this rule applies to'),
    subjectIssuers: z.array(z.string().min(1)).min(1).describe(`"${SELF_ISSUER}" (the broker) or ids of exchange.issuers`),
    subjectTokenTypes: z.array(tokenTypeName).min(1),
    subjectClients: z.array(z.string().min(1)).optional().describe('broker subject tokens only: client_id values whose tokens may be exchanged'),
    subjectAudiences: z.array(z.string().min(1)).optional().describe('broker subject tokens only: the subject token must have been issued for one of these resources (typically the caller\'s own)'),
    resources: z.array(z.string().min(1)).min(1).describe('resources (and audiences) the exchanged token may be bound to'),
    scopes: z.array(z.string().min(1)).min(1).describe('the most the exchanged token may carry'),
    minimumAssurance: z
      .strictObject({ aal: z.number().int().min(1).max(3).optional(), proofing: z.enum(['P0', 'P5', 'P9']).optional() })
      .optional()
      .describe('of the subject (upstream) login, e.g. aal 3 for clinical writes, P9 for patient data'),
    delegated: z.enum(['forbid', 'allow', 'require']).default('forbid').describe('subject tokens that act for someone under a consent (consent_id)'),
    actor: z.enum(['forbidden', 'optional', 'required']).default('forbidden').describe('whether an actor_token may or must be sent'),
    actorIssuers: z.array(z.string().min(1)).min(1).default([SELF_ISSUER]),
    actorTokenTypes: z.array(tokenTypeName).min(1).default(['access_token']),
    actorWithoutMayAct: z.boolean().default(false).describe('accept an actor_token when the subject token has no may_act claim'),
    maxActDepth: z.number().int().min(1).max(10).default(3).describe('nesting of the act claim in the exchanged token'),
    tokenLifetime: z.number().int().min(10).max(3600).default(300).describe('seconds; also capped by the subject token, the resource and, for delegated tokens, delegation.accessTokenTTL'),
    downscopeOnly: z.boolean().default(true).describe('the exchanged scope must also be held by the subject token (when it carries scope)'),
  })
  .superRefine((r, ctx) => {
    if (r.actor === 'forbidden' && r.actorWithoutMayAct) ctx.addIssue({ code: 'custom', path: ['actorWithoutMayAct'], message: 'has no effect when actor is forbidden' });
  });

export const exchangeTenantSchema = z.strictObject({
  id,
  clients: z.array(z.string().min(1)).default([]),
  resources: z.array(z.string().min(1)).default([]),
  issuers: z.array(z.string().min(1)).default([]),
});

export const exchangeSchema = z
  .strictObject({
    adminToken: z.string().min(32, 'must be at least 32 characters').optional().describe('bearer token for POST /admin/exchange/explain (absent: endpoint off)'),
    allowInsecureJwksUris: z.boolean().default(false).describe('TEST ONLY: fetch issuer JWKS over http and from loopback; refused with NODE_ENV=production'),
    jwks: z
      .strictObject({
        timeoutMs: z.number().int().min(100).max(30_000).default(3000),
        cooldownMs: z.number().int().min(0).max(3_600_000).default(30_000).describe('after a fetch, how long before an unknown kid may trigger another'),
        cacheMaxAgeMs: z.number().int().min(1000).max(86_400_000).default(600_000),
      })
      .prefault({}),
    issuers: z.array(exchangeIssuerSchema).default([]),
    tenants: z.array(exchangeTenantSchema).default([]).describe('clients, resources and issuers of one tenant never mix with another tenant\'s'),
    rules: z.array(exchangeRuleSchema).default([]),
  })
  .superRefine((x, ctx) => {
    const issuerIds = new Set<string>();
    const issuerUrls = new Set<string>();
    x.issuers.forEach((i, n) => {
      if (issuerIds.has(i.id)) ctx.addIssue({ code: 'custom', path: ['issuers', n, 'id'], message: `duplicate issuer id ${i.id}` });
      if (issuerUrls.has(i.issuer)) ctx.addIssue({ code: 'custom', path: ['issuers', n, 'issuer'], message: `issuer ${i.issuer} is listed twice` });
      issuerIds.add(i.id);
      issuerUrls.add(i.issuer);
      const url = i.jwks_uri ? parseUrl(i.jwks_uri) : undefined;
      if (url && url.protocol !== 'https:' && !x.allowInsecureJwksUris) ctx.addIssue({ code: 'custom', path: ['issuers', n, 'jwks_uri'], message: 'must be https (allowInsecureJwksUris is for tests only)' });
    });
    const known = (v: string) => v === SELF_ISSUER || issuerIds.has(v);
    const ruleIds = new Set<string>();
    x.rules.forEach((r, n) => {
      if (ruleIds.has(r.id)) ctx.addIssue({ code: 'custom', path: ['rules', n, 'id'], message: `duplicate rule id ${r.id}` });
      ruleIds.add(r.id);
      r.subjectIssuers.forEach((v, k) => {
        if (!known(v)) ctx.addIssue({ code: 'custom', path: ['rules', n, 'subjectIssuers', k], message: `unknown issuer ${v}` });
      });
      r.actorIssuers.forEach((v, k) => {
        if (!known(v)) ctx.addIssue({ code: 'custom', path: ['rules', n, 'actorIssuers', k], message: `unknown issuer ${v}` });
      });
      r.subjectIssuers.forEach((v, k) => {
        const issuer = x.issuers.find((i) => i.id === v);
        const usable = v === SELF_ISSUER ? ['access_token'] : (issuer?.tokenTypes ?? []);
        if (issuer !== undefined || v === SELF_ISSUER) {
          if (!r.subjectTokenTypes.some((t) => usable.includes(t))) ctx.addIssue({ code: 'custom', path: ['rules', n, 'subjectIssuers', k], message: `${v} issues none of the rule's subjectTokenTypes (${usable.join(', ')})` });
        }
      });
    });
    const tenantIds = new Set<string>();
    x.tenants.forEach((t, n) => {
      if (tenantIds.has(t.id)) ctx.addIssue({ code: 'custom', path: ['tenants', n, 'id'], message: `duplicate tenant id ${t.id}` });
      tenantIds.add(t.id);
      t.issuers.forEach((v, k) => {
        if (!issuerIds.has(v)) ctx.addIssue({ code: 'custom', path: ['tenants', n, 'issuers', k], message: `unknown issuer ${v}` });
      });
    });
    for (const member of ['clients', 'resources', 'issuers'] as const) {
      const owner = new Map<string, string>();
      x.tenants.forEach((t, n) =>
        t[member].forEach((v, k) => {
          const previous = owner.get(v);
          if (previous !== undefined && previous !== t.id) ctx.addIssue({ code: 'custom', path: ['tenants', n, member, k], message: `${v} already belongs to tenant ${previous}` });
          owner.set(v, t.id);
        }),
      );
    }
  })
  .prefault({});

export type ExchangeConfig = z.infer<typeof exchangeSchema>;
export type ExchangeIssuerConfig = z.infer<typeof exchangeIssuerSchema>;
export type ExchangeRuleConfig = z.infer<typeof exchangeRuleSchema>;
export type ExchangeTenantConfig = z.infer<typeof exchangeTenantSchema>;

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

/**
 * Problems that need the rest of the configuration: clients and resources named by rules and tenants.
 * Each is `path: message`, the path in the form ConfigError uses (`exchange.rules[0].clients[1]`).
 */
export function exchangeConfigProblems(config: Pick<BrokerConfig, 'clients' | 'resources' | 'exchange'>, env: { NODE_ENV?: string } = {}): string[] {
  const problems: string[] = [];
  const x = config.exchange;
  const clients = new Map(config.clients.map((c) => [c.client_id, c]));
  const resources = new Map(config.resources.map((r) => [r.identifier, r]));
  if (x.allowInsecureJwksUris && env.NODE_ENV === 'production') problems.push('exchange.allowInsecureJwksUris: is for tests only and cannot be set with NODE_ENV=production');
  x.rules.forEach((r, n) => {
    const at = `exchange.rules[${n}]`;
    r.clients.forEach((c, k) => {
      const client = clients.get(c);
      if (!client) return problems.push(`${at}.clients[${k}]: unknown client ${c}`);
      if (!client.grant_types.includes(TOKEN_EXCHANGE_GRANT)) problems.push(`${at}.clients[${k}]: client ${c} does not list ${TOKEN_EXCHANGE_GRANT} in grant_types`);
      if (client.token_endpoint_auth_method === 'none') problems.push(`${at}.clients[${k}]: client ${c} is public; token exchange needs an authenticated client`);
      r.resources.forEach((res, j) => {
        if (resources.has(res) && !client.resources.includes(res)) problems.push(`${at}.resources[${j}]: ${res} is not among the resources of client ${c}`);
      });
      return undefined;
    });
    r.subjectClients?.forEach((c, k) => {
      if (!clients.has(c)) problems.push(`${at}.subjectClients[${k}]: unknown client ${c}`);
    });
    r.resources.forEach((res, j) => {
      if (!resources.has(res)) problems.push(`${at}.resources[${j}]: unknown resource ${res}`);
    });
    r.subjectAudiences?.forEach((res, j) => {
      if (!resources.has(res)) problems.push(`${at}.subjectAudiences[${j}]: unknown resource ${res}`);
    });
    const offered = new Set(r.resources.flatMap((res) => resources.get(res)?.scopes ?? []));
    r.scopes.forEach((s, j) => {
      if (!offered.has(s)) problems.push(`${at}.scopes[${j}]: ${s} is not a scope of any of the rule's resources`);
    });
  });
  x.tenants.forEach((t, n) => {
    t.clients.forEach((c, k) => {
      if (!clients.has(c)) problems.push(`exchange.tenants[${n}].clients[${k}]: unknown client ${c}`);
    });
    t.resources.forEach((res, k) => {
      if (!resources.has(res)) problems.push(`exchange.tenants[${n}].resources[${k}]: unknown resource ${res}`);
    });
  });
  return problems;
}
