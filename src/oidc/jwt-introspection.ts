import type { Context, Next } from 'koa';
import { decodeProtectedHeader, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import type { AdapterPayload } from 'oidc-provider';
import type { ReplayCache } from '../store/contracts.ts';
import { cachedLocalJwks } from '../crypto/local-jwks.ts';

// oidc-provider refuses to introspect or revoke structured (JWT) access tokens. The broker issues JWT
// access tokens by default, and resource servers must be able to learn that one was revoked. So, on
// the introspection and revocation endpoints only, a JWT in the `token` parameter is rewritten to a
// handle ("jwt:<token>") that oidc-provider treats as an opaque value; the adapter resolves the handle
// by verifying the JWT against the broker's own keys and synthesising the stored-token payload.
// oidc-provider then does what it always does: client authentication, grant checks, allowedPolicy,
// JWT introspection responses, and `destroy()` on revocation (which records the jti as revoked).

export const JWT_HANDLE_PREFIX = 'jwt:';
/** Private claim carrying the grant id, so revoking a grant makes its JWT access tokens inactive. */
export const GRANT_ID_CLAIM = 'grant_id';
const BODY_LIMIT = 56 * 1024; // oidc-provider's own limit

export type JwtAccessTokenLookup = (model: string, jwt: string) => Promise<AdapterPayload | undefined>;

function looksLikeJwt(token: string): boolean {
  if (token.length > BODY_LIMIT || token.split('.').length !== 3) return false;
  try {
    return typeof decodeProtectedHeader(token).alg === 'string';
  } catch {
    return false;
  }
}

export function createJwtLookup(options: {
  issuer: string;
  publicJwks: () => JSONWebKeySet;
  replay: ReplayCache;
  revokedPrefix: string;
}): JwtAccessTokenLookup {
  const keys = cachedLocalJwks(options.publicJwks);
  return async (model, jwt) => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(jwt, keys, {
        issuer: options.issuer,
        typ: 'at+jwt',
        algorithms: ['ES256', 'PS256'],
      }));
    } catch {
      return undefined;
    }
    const { jti, sub, client_id: clientId, exp, iat, scope, aud, cnf, [GRANT_ID_CLAIM]: grantId, iss: _iss, ...extra } = payload;
    if (typeof jti !== 'string' || typeof clientId !== 'string' || typeof exp !== 'number') return undefined;
    const isClientCredentials = grantId === undefined && sub === clientId;
    if ((model === 'ClientCredentials') !== isClientCredentials) return undefined;
    if (await options.replay.has(options.revokedPrefix + jti)) return undefined;

    const confirmation = (cnf ?? {}) as { jkt?: string; 'x5t#S256'?: string };
    // A delegated token's sub is the patient; its grant belongs to the actor (act.sub), which is what
    // oidc-provider checks the grant against. The patient goes back into `sub` through `extra`.
    const actor = (extra.act as { sub?: unknown } | undefined)?.sub;
    const delegated = typeof grantId === 'string' && typeof actor === 'string';
    if (delegated) extra.sub = sub;
    return {
      jti,
      kind: model,
      clientId,
      accountId: isClientCredentials ? undefined : delegated ? actor : sub,
      grantId: typeof grantId === 'string' ? grantId : undefined,
      exp,
      iat,
      scope: typeof scope === 'string' ? scope : undefined,
      aud,
      extra,
      jkt: confirmation.jkt,
      'x5t#S256': confirmation['x5t#S256'],
    } as AdapterPayload;
  };
}

/** Reads a request body for oidc-provider (up to its own limit); undefined when larger. */
export async function readBody(ctx: Context): Promise<string | undefined> {
  const declared = ctx.request.length;
  if (declared !== undefined && declared > BODY_LIMIT) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > BODY_LIMIT) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Koa middleware in front of the provider for the introspection and revocation paths. */
export function rewriteJwtTokenParam(paths: string[]) {
  const targets = new Set(paths);
  return async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.method !== 'POST' || !targets.has(ctx.path) || !ctx.is('application/x-www-form-urlencoded')) return next();
    const raw = await readBody(ctx);
    if (raw === undefined) {
      ctx.status = 413;
      ctx.body = { error: 'invalid_request', error_description: 'request body too large' };
      return;
    }
    const params = new URLSearchParams(raw);
    const tokens = params.getAll('token');
    if (tokens.length === 1 && looksLikeJwt(tokens[0])) params.set('token', JWT_HANDLE_PREFIX + tokens[0]);
    // oidc-provider reads an already-consumed body from req.body.
    (ctx.req as typeof ctx.req & { body?: string }).body = params.toString();
    return next();
  };
}
