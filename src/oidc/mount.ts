import type { Context, Next } from 'koa';
import type Provider from 'oidc-provider';
import type { StoreHealth } from '../store/health.ts';
import { refusedDpopShape } from './dpop-precheck.ts';

// oidc-provider is itself a Koa app: it is mounted with provider.callback() (not koa-mount, whose
// cookie keys would clash) under the issuer's path. Requests for a prefix-mounted issuer get
// req.url relative to the prefix and req.originalUrl in full, so discovery advertises full URLs.

/** Endpoints that issue or consume state: refused at once with 503 while the store is down. */
const STATEFUL = ['/auth', '/token', '/request', '/token/introspection', '/token/revocation', '/me', '/session/end'];

/** oidc-provider's own endpoints: sent straight to it, ahead of the broker's routers (hot paths). */
export const PROVIDER_PATHS = new Set(['/token', '/token/introspection', '/token/revocation', '/jwks', '/me', '/auth', '/request', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']);

export function mountProvider(getProvider: () => Provider, health: StoreHealth, options: { only?: Set<string> } = {}) {
  // callback() composes the middleware stack; do it once per provider instance (keys rotate it).
  const handlers = new WeakMap<Provider, { handler: ReturnType<Provider['callback']>; prefix: string }>();
  return async (ctx: Context, next: Next): Promise<void> => {
    const provider = getProvider();
    let mounted = handlers.get(provider);
    if (!mounted) {
      mounted = { handler: provider.callback(), prefix: new URL(provider.issuer).pathname.replace(/\/$/, '') };
      handlers.set(provider, mounted);
    }
    const { handler, prefix } = mounted;
    if (options.only && !options.only.has(ctx.path.slice(prefix.length))) return next();
    if (routedWithOtherMethod(ctx)) return next();
    if (prefix && ctx.path !== prefix && !ctx.path.startsWith(`${prefix}/`)) return next();
    const sub = ctx.path.slice(prefix.length) || '/';
    if (!health.up && STATEFUL.some((p) => sub === p || sub.startsWith(`${p}/`))) {
      ctx.status = 503;
      ctx.set('Retry-After', '1');
      ctx.body = { error: 'temporarily_unavailable', error_description: 'the authorization server cannot reach its store; try again shortly' };
      return;
    }
    if (refusedDpopShape(ctx, sub)) return;
    if (prefix) {
      (ctx.req as typeof ctx.req & { originalUrl?: string }).originalUrl = ctx.originalUrl;
      ctx.req.url = ctx.url.slice(prefix.length) || '/';
    }
    ctx.respond = false;
    await handler(ctx.req, ctx.res);
  };
}

/**
 * The issuer is the broker's only truth about its own URL (WS-11). oidc-provider builds the URLs it
 * advertises (discovery's endpoints, form actions, the DPoP htu it expects) from the request's Host,
 * and behind a trusted proxy from X-Forwarded-Host and X-Forwarded-Proto, so a client choosing those
 * headers would choose the broker's published endpoints. They are overwritten with the issuer's before
 * oidc-provider or any router reads them. The scheme follows too: a trusted-proxy broker with an https
 * issuer, reached without X-Forwarded-Proto, is still https (its Secure cookies can be set). Client IPs
 * (X-Forwarded-For) are left as they are.
 */
export function pinIssuerOrigin(issuer: string, trustProxy: boolean) {
  const { host, protocol } = new URL(issuer);
  const scheme = protocol.slice(0, -1);
  return async (ctx: Context, next: Next): Promise<void> => {
    const headers = ctx.req.headers;
    headers.host = host;
    // Without trustProxy neither Koa nor oidc-provider reads the X-Forwarded-* headers.
    if (trustProxy) {
      headers['x-forwarded-host'] = host;
      headers['x-forwarded-proto'] = scheme;
    }
    return next();
  };
}

/**
 * A path one of the broker's routers serves, asked with a method it does not (GET or HEAD on a POST-only
 * step, WS-02): left to the routers' allowedMethods, which answer 405 with Allow on the way back. Handed
 * to oidc-provider it would be a 404 written straight to the socket, past allowedMethods.
 */
function routedWithOtherMethod(ctx: Context): boolean {
  const routes = ((ctx as Context & { matched?: Array<{ methods: string[] }> }).matched ?? []).filter((layer) => layer.methods.length > 0);
  return routes.length > 0 && !routes.some((layer) => layer.methods.includes(ctx.method));
}

/** Inside the provider's own Koa app: a 503 (store unreachable) tells the client when to retry. */
export function retryAfterOn503() {
  return async (ctx: Context, next: Next): Promise<void> => {
    await next();
    if (ctx.status === 503) ctx.set('Retry-After', '1');
  };
}
