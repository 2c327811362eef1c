import type { Context, Next } from 'koa';
import type { RateLimitStore } from '../store/contracts.ts';

// Brute-force and abuse limits, shared by every broker instance through the store: per client IP and
// per client id on the OP's endpoints, per IP on the login pages. If the store cannot count, a local
// per-process window applies instead: a limiter that silently fails open is no limiter (HA-17).

export interface RateLimitRule {
  /** Which requests: a path prefix set. */
  paths: string[];
  /** Key parts; each key gets its own counter. */
  keys: Array<(ctx: Context) => string | undefined>;
  limit: number;
  windowSeconds: number;
}

function localCounter() {
  const windows = new Map<string, { resetAt: number; count: number }>();
  return (key: string, windowSeconds: number): { count: number; resetAt: number } => {
    const now = Math.floor(Date.now() / 1000);
    let w = windows.get(key);
    if (!w || w.resetAt <= now) {
      if (windows.size > 50_000) windows.clear();
      w = { resetAt: now + windowSeconds, count: 0 };
      windows.set(key, w);
    }
    w.count++;
    return { count: w.count, resetAt: w.resetAt };
  };
}

/** The client id a request authenticates as, from HTTP Basic only (the body belongs to oidc-provider). */
export function basicClientId(ctx: Context): string | undefined {
  const m = /^Basic ([A-Za-z0-9+/=]{1,1024})$/.exec(ctx.get('Authorization'));
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i <= 0) return undefined;
  try {
    return decodeURIComponent(decoded.slice(0, i).replace(/\+/g, '%20'));
  } catch {
    // Malformed: oidc-provider answers it with invalid_client; count it under its raw form.
    return decoded.slice(0, i);
  }
}

export function rateLimit(store: RateLimitStore, rules: RateLimitRule[]) {
  const local = localCounter();
  return async (ctx: Context, next: Next): Promise<void> => {
    for (const rule of rules) {
      if (rule.limit <= 0 || !rule.paths.some((p) => ctx.path === p || ctx.path.startsWith(`${p}/`))) continue;
      for (const keyOf of rule.keys) {
        const key = keyOf(ctx);
        if (!key) continue;
        const name = `${rule.paths[0]}|${key}`;
        let result: { count: number; resetAt: number };
        try {
          result = await store.hit(name, rule.windowSeconds);
        } catch {
          result = local(name, rule.windowSeconds);
        }
        if (result.count > rule.limit) {
          const retry = Math.max(1, result.resetAt - Math.floor(Date.now() / 1000));
          ctx.status = 429;
          ctx.set('Retry-After', String(retry));
          ctx.body = { error: 'slow_down', error_description: 'too many requests; try again later' };
          return;
        }
      }
    }
    await next();
  };
}
