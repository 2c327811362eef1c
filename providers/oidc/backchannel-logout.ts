import type { Context } from 'koa';
import { decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import type * as oc from 'openid-client';
import { z } from 'zod';
import { checkJwsShape, JwsShapeError } from '../../src/crypto/jws-header.ts';
import type { ConnectorDeps } from '../../src/identity/upstream.ts';
import { readForm } from '../../src/web/form.ts';
import { remoteKeys, type RemoteKeys } from './jwks.ts';

// OpenID Connect Back-Channel Logout 1.0 from the upstream: a signed logout token ends the broker's
// sessions for that upstream session (sid) or user (sub). Checked as the spec and CIS2's own
// consumers check it (nhs-interfaces.md 1.10; catalogue RP-13): signature by the upstream's key and
// the ID token algorithm, exact iss, aud = our client id, the backchannel-logout event, no nonce,
// sid or sub, a typ that is not another kind of JWT, bounded age, and a jti seen only once.

const EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const MAX_AGE_SECONDS = 600;
export const LOGOUT_JWKS_COOLDOWN_MS = 5000;

const logoutClaims = z.looseObject({
  iat: z.number(),
  jti: z.string().min(1).max(255),
  sub: z.string().min(1).max(255).optional(),
  sid: z.string().min(1).max(255).optional(),
  events: z.record(z.string(), z.unknown()),
});

export interface LogoutOptions {
  id: string;
  clientId: string;
  algorithms: string[];
  typs: readonly string[];
  clockTolerance: number;
  timeoutMs: number;
  deps: ConnectorDeps;
  metadata: () => Promise<Readonly<oc.ServerMetadata>>;
  fetch?: oc.CustomFetch;
}

export class LogoutTokenError extends Error {}

export function logoutVerifier(options: LogoutOptions) {
  let jwks: RemoteKeys | undefined;
  let jwksFor: string | undefined;

  return async function verify(token: string): Promise<{ sub?: string; sid?: string }> {
    const metadata = await options.metadata();
    if (!metadata.jwks_uri) throw new LogoutTokenError('no jwks_uri');
    if (!jwks || jwksFor !== metadata.jwks_uri) {
      // Anyone can post here: an unknown kid refetches the JWKS at most every few seconds.
      jwks = remoteKeys(metadata.jwks_uri, { timeoutMs: options.timeoutMs, cooldownMs: LOGOUT_JWKS_COOLDOWN_MS, fetch: options.fetch });
      jwksFor = metadata.jwks_uri;
    }
    let header;
    try {
      // The strict JWS shape every input applies (src/crypto/jws-header.ts), before any key.
      checkJwsShape(token);
      header = decodeProtectedHeader(token);
    } catch (err) {
      throw new LogoutTokenError(err instanceof JwsShapeError ? err.message : 'not a JWS');
    }
    // Absent typ counts as "JWT"; any other explicit type (at+jwt, dpop+jwt...) is another kind of token.
    const typ = (header.typ ?? 'JWT').toLowerCase();
    if (!options.typs.some((t) => t.toLowerCase() === typ)) throw new LogoutTokenError(`typ ${header.typ} not accepted`);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, jwks, {
        issuer: metadata.issuer,
        audience: options.clientId,
        algorithms: options.algorithms,
        clockTolerance: options.clockTolerance,
        maxTokenAge: MAX_AGE_SECONDS,
        requiredClaims: ['iat', 'jti'],
      }));
    } catch (err) {
      throw new LogoutTokenError(`verification failed: ${(err as Error).message}`);
    }
    // A nonce marks an ID token: one must never pass for a logout token.
    if (Object.hasOwn(payload, 'nonce')) throw new LogoutTokenError('a logout token must not carry a nonce');
    const parsed = logoutClaims.safeParse(payload);
    if (!parsed.success) throw new LogoutTokenError(`claim ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`);
    const c = parsed.data;
    if (!Object.hasOwn(c.events, EVENT) || typeof c.events[EVENT] !== 'object' || c.events[EVENT] === null) throw new LogoutTokenError('no backchannel-logout event');
    if (!c.sub && !c.sid) throw new LogoutTokenError('neither sub nor sid');
    const aud = payload.aud;
    if (Array.isArray(aud) && aud.length > 1 && payload.azp !== options.clientId) throw new LogoutTokenError('multiple audiences without our azp');
    const first = await options.deps.replay.rememberOnce(`oidc-logout:${options.id}:${c.jti}`, MAX_AGE_SECONDS + options.clockTolerance * 2);
    if (!first) throw new LogoutTokenError('replayed jti');
    return { sub: c.sub, sid: c.sid };
  };
}

export function logoutRoute(options: LogoutOptions) {
  const verify = logoutVerifier(options);
  return {
    method: 'POST' as const,
    path: `/upstream/${options.id}/backchannel-logout`,
    async handler(ctx: Context): Promise<void> {
      ctx.set('Cache-Control', 'no-store');
      const fail = (): void => {
        ctx.status = 400;
        ctx.body = { error: 'invalid_request', error_description: 'the logout token is not valid' };
      };
      let form: URLSearchParams;
      try {
        form = await readForm(ctx, 64 * 1024);
      } catch {
        return fail();
      }
      const tokens = form.getAll('logout_token');
      if (tokens.length !== 1 || tokens[0].length > 16 * 1024) return fail();
      let event: { sub?: string; sid?: string };
      try {
        event = await verify(tokens[0]);
      } catch (err) {
        if (err instanceof LogoutTokenError) return fail();
        // The upstream's metadata cannot be loaded (it is down): the upstream may retry later.
        ctx.status = 503;
        ctx.set('Retry-After', '5');
        ctx.body = { error: 'temporarily_unavailable', error_description: 'try again later' };
        return;
      }
      await options.deps.onUpstreamLogout({ provider: options.id, subject: event.sub, sid: event.sid });
      ctx.status = 200;
      ctx.body = '';
    },
  };
}
