import { z } from 'zod';
import { TokenRejected } from './errors.ts';
import { TOKEN_TYPE_URN, tokenTypeName, type TokenTypeName } from './types.ts';

// The token-exchange request parameters (RFC 8693 2.1), parsed at the edge. `resource` and
// `audience` may repeat; everything else appears at most once (oidc-provider rejects duplicates).

export const EXCHANGE_PARAMETERS = ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'resource', 'audience', 'scope', 'requested_token_type'] as const;
export const REPEATABLE_PARAMETERS = ['resource', 'audience'] as const;

const MAX_TOKEN = 16_384;
const many = z.union([z.string(), z.array(z.string())]).optional().transform((v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]));

function typeOf(urn: string | undefined): TokenTypeName | undefined {
  return urn === undefined ? undefined : tokenTypeName(urn);
}

const schema = z
  .object({
    subject_token: z.string().optional(),
    subject_token_type: z.string().optional(),
    actor_token: z.string().optional(),
    actor_token_type: z.string().optional(),
    resource: many,
    audience: many,
    scope: z.string().optional(),
    requested_token_type: z.string().optional(),
  })
  .loose();

export interface ExchangeParams {
  subjectToken: string;
  subjectTokenType: TokenTypeName;
  actorToken?: string;
  actorTokenType?: TokenTypeName;
  resources: string[];
  audiences: string[];
  scopes?: string[];
  requestedTokenType?: string;
}

function isResourceIndicator(v: string): boolean {
  try {
    const u = new URL(v);
    return !u.hash;
  } catch {
    return false;
  }
}

export function parseExchangeParams(raw: unknown): ExchangeParams {
  const parsed = schema.safeParse(raw);
  const bad = (message: string) => new TokenRejected('invalid_request', 'params', message);
  if (!parsed.success) throw bad('malformed token exchange request');
  const p = parsed.data;
  if (!p.subject_token) throw bad('Missing subject_token');
  if (p.subject_token.length > MAX_TOKEN) throw bad('subject_token is too large');
  const subjectTokenType = typeOf(p.subject_token_type);
  if (!subjectTokenType) throw bad(`missing or invalid subject_token_type - must be one of ${Object.values(TOKEN_TYPE_URN).join(', ')}`);
  if ((p.actor_token === undefined || p.actor_token === '') !== (p.actor_token_type === undefined)) throw bad('actor_token and actor_token_type go together');
  const actorTokenType = typeOf(p.actor_token_type);
  if (p.actor_token_type !== undefined && !actorTokenType) throw bad(`invalid actor_token_type - must be one of ${Object.values(TOKEN_TYPE_URN).join(', ')}`);
  if (p.actor_token !== undefined && p.actor_token.length > MAX_TOKEN) throw bad('actor_token is too large');
  for (const r of p.resource) if (!isResourceIndicator(r)) throw new TokenRejected('invalid_target', 'params', 'resource must be an absolute URI without a fragment');
  if (p.audience.some((a) => a === '' || a.length > 2048)) throw new TokenRejected('invalid_target', 'params', 'audience values must be non-empty');
  const scopes = p.scope === undefined ? undefined : [...new Set(p.scope.split(' ').filter(Boolean))];
  return {
    subjectToken: p.subject_token,
    subjectTokenType,
    actorToken: p.actor_token || undefined,
    actorTokenType,
    resources: p.resource,
    audiences: p.audience,
    scopes: scopes && scopes.length ? scopes : undefined,
    requestedTokenType: p.requested_token_type,
  };
}
