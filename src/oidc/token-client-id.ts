import { createHash } from 'node:crypto';
import * as querystring from 'node:querystring';
import type { Context, Next } from 'koa';
import { decodeJwt } from 'jose';
import { basicClientId } from '../web/rate-limit.ts';
import { readBody } from './jwt-introspection.ts';

// Which client a request to the token, PAR, introspection or revocation endpoint claims to be, so the
// per-client limit counts guesses at a client's secret or assertion wherever the client id travels:
// HTTP Basic, or the body (client_secret_post, client_assertion, a public client's PKCE verifier).
// The body belongs to oidc-provider, so it is read here the way jwt-introspection.ts reads it, and
// handed on through req.body, where oidc-provider looks for an already-consumed body; it is parsed
// with node:querystring, as oidc-provider parses it, so both see the same client id.

const STATE_KEY = 'formClientId';
const MAX_KEY = 256;

type PreRead = Context['req'] & { body?: unknown };

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** As oidc-provider picks it: `client_id`, else the `sub` of `client_assertion` (unverified: it only names). */
export function formClientId(raw: string): string | undefined {
  const form = querystring.parse(raw);
  const id = first(form.client_id);
  if (id) return id;
  const assertion = first(form.client_assertion);
  if (!assertion) return undefined;
  try {
    const { sub } = decodeJwt(assertion);
    return typeof sub === 'string' && sub ? sub : undefined;
  } catch {
    return undefined;
  }
}

/** Koa middleware, in front of the provider: finds a client id in the form when there is no Authorization header. */
export function readFormClientId(paths: string[]) {
  const targets = new Set(paths);
  return async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.method !== 'POST' || !targets.has(ctx.path) || ctx.get('Authorization') || !ctx.is('application/x-www-form-urlencoded')) return next();
    const req = ctx.req as PreRead;
    const raw = typeof req.body === 'string' ? req.body : await readBody(ctx);
    if (raw === undefined) {
      ctx.status = 413;
      ctx.body = { error: 'invalid_request', error_description: 'request body too large' };
      return;
    }
    req.body = raw;
    (ctx.state as Record<string, unknown>)[STATE_KEY] = formClientId(raw);
    return next();
  };
}

/** The client id to count a request under (Basic, else the form), bounded in size: it becomes a store key. */
export function requestClientId(ctx: Context): string | undefined {
  const id = basicClientId(ctx) ?? ((ctx.state as Record<string, unknown>)[STATE_KEY] as string | undefined);
  if (!id) return undefined;
  return id.length > MAX_KEY ? `sha256:${createHash('sha256').update(id).digest('base64url')}` : id;
}
