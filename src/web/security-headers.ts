import type { Context, Next } from 'koa';

// Headers for every response. The CSP is strict (no inline script or style); oidc-provider sets its
// own CSP on the few pages that need an inline script (form_post), and that one wins because it is
// set later on the same response. Headers are set before the route runs, because oidc-provider
// writes its responses straight to the socket and nothing set afterwards would reach the client.
const CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; form-action 'self' https: http://localhost:* http://127.0.0.1:*; frame-ancestors 'none'; base-uri 'none'";

export function securityHeaders(options: { hsts: boolean }) {
  const apply = (ctx: Context): void => {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('Cross-Origin-Opener-Policy', 'same-origin');
    ctx.set('X-Frame-Options', 'DENY');
    if (!ctx.response.get('Content-Security-Policy')) ctx.set('Content-Security-Policy', CSP);
    if (options.hsts) ctx.set('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
  };
  return async (ctx: Context, next: Next): Promise<void> => {
    apply(ctx);
    try {
      await next();
    } finally {
      if (!ctx.headerSent) {
        apply(ctx);
        if (String(ctx.response.get('Content-Type')).startsWith('text/html')) ctx.set('Cache-Control', 'no-store');
      }
    }
  };
}
