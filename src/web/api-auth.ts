import type { Context } from 'koa';
import { jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import type { ReplayCache } from '../store/contracts.ts';
import { REVOKED_JTI_PREFIX } from '../oidc/adapter.ts';
import { cachedLocalJwks } from '../crypto/local-jwks.ts';

// Bearer authentication for the broker's own JSON APIs: an RFC 9068 access token the broker issued for
// its API resource, checked for signature, audience, expiry and revocation, and for the scope the route
// needs. Failures are 401/403 with WWW-Authenticate, as RFC 6750 says.

export const API_SCOPES = ['delegation.read', 'delegation.write', 'delegation.staff', 'delegation.events', 'audit.read', 'account.links'] as const;
export type ApiScope = (typeof API_SCOPES)[number];

export interface ApiCaller {
  accountId: string;
  clientId: string;
  scopes: Set<string>;
  assurance: { aal?: number; proofing?: string };
  role?: { roleId: string; roleCode: string; orgCode: string };
  claims: JWTPayload;
}

export class ApiAuthError extends Error {
  readonly status: 401 | 403;
  readonly oauthError: 'invalid_token' | 'insufficient_scope';
  constructor(status: 401 | 403, oauthError: 'invalid_token' | 'insufficient_scope', message: string) {
    super(message);
    this.name = 'ApiAuthError';
    this.status = status;
    this.oauthError = oauthError;
  }
}

export function apiResource(issuer: string): string {
  return new URL('/api', issuer).href;
}

export function createApiAuthenticator(options: { issuer: string; publicJwks: () => JSONWebKeySet; replay: ReplayCache }) {
  const audience = apiResource(options.issuer);
  const keys = cachedLocalJwks(options.publicJwks);
  return async function authenticate(ctx: Context, needed: ApiScope): Promise<ApiCaller> {
    const header = ctx.get('Authorization');
    const m = /^Bearer ([A-Za-z0-9_.~+/=-]{20,8192})$/.exec(header);
    if (!m) throw new ApiAuthError(401, 'invalid_token', 'a bearer access token is required');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(m[1], keys, { issuer: options.issuer, audience, typ: 'at+jwt', algorithms: ['ES256', 'PS256'] }));
    } catch {
      throw new ApiAuthError(401, 'invalid_token', 'the access token is invalid or expired');
    }
    if (typeof payload.jti === 'string' && (await options.replay.has(REVOKED_JTI_PREFIX + payload.jti))) throw new ApiAuthError(401, 'invalid_token', 'the access token was revoked');
    const scopes = new Set(String(payload.scope ?? '').split(' ').filter(Boolean));
    if (!scopes.has(needed)) throw new ApiAuthError(403, 'insufficient_scope', `this needs the ${needed} scope`);
    // A delegated token acts for someone else; the delegation API only answers its own user.
    if (payload.act) throw new ApiAuthError(403, 'insufficient_scope', 'delegated tokens cannot manage delegations');
    if (typeof payload.sub !== 'string' || typeof payload.client_id !== 'string') throw new ApiAuthError(401, 'invalid_token', 'the access token has no subject');
    const aal = Number(payload.authentication_assurance_level);
    const role = typeof payload.selected_roleid === 'string' ? { roleId: payload.selected_roleid, roleCode: String(payload.selected_role_code ?? ''), orgCode: String(payload.selected_org_code ?? '') } : undefined;
    return {
      accountId: payload.sub,
      clientId: payload.client_id,
      scopes,
      assurance: { aal: Number.isFinite(aal) ? aal : undefined, proofing: typeof payload.identity_proofing_level === 'string' ? payload.identity_proofing_level : undefined },
      role,
      claims: payload,
    };
  };
}

export type ApiAuthenticator = ReturnType<typeof createApiAuthenticator>;
