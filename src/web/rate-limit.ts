import type { Context, Next } from 'koa';
import type { RateLimitStore } from '../store/contracts.ts';
import { errorPage } from './html.ts';

// Brute-force and abuse limits, shared by every broker instance through the store: per client IP and
// per client id on the OP's endpoints, per IP on the login pages, per account on the account app, per
// subject token on token exchange. If the store cannot count, a local per-process window applies
// instead: a limiter that silently fails open is no limiter (HA-17).
//
// Every limit answers the same way: 429 with Retry-After and an OAuth-style JSON body whose error is
// `slow_down` (RFC 6749 has no throttling code; `slow_down` is the registered OAuth error for "too
// fast", RFC 8628 §3.5), or an HTML page for browsers. A 400 would tell clients their request is
// malformed and not worth retrying; 429 tells them when to come back.

export interface RateLimitRule {
  /** Which requests: a path prefix set. */
  paths: string[];
  /** Only these methods (default: all). */
  methods?: string[];
  /** Key parts; each key gets its own counter. */
  keys: Array<(ctx: Context) => string | undefined>;
  limit: number;
  windowSeconds: number;
}

export interface Verdict {
  /** Over the limit: refuse. */
  limited: boolean;
  /** Exactly the first refused hit of its window (across instances): log or audit this one, not every one. */
  first: boolean;
  /** Seconds until the window ends. */
  retryAfter: number;
}

export type Limiter = (name: string, limit: number, windowSeconds: number) => Promise<Verdict>;

function localCounter() {
  const windows = new Map<string, { resetAt: number; count: number }>();
  return (key: string, windowSeconds: number): { count: number; resetAt: number } => {
    const now = Math.floor(Date.now() / 1000);
    let w = windows.get(`${key}|${windowSeconds}`);
    if (!w || w.resetAt <= now) {
      if (windows.size > 50_000) windows.clear();
      w = { resetAt: now + windowSeconds, count: 0 };
      windows.set(`${key}|${windowSeconds}`, w);
    }
    w.count++;
    return { count: w.count, resetAt: w.resetAt };
  };
}

/** Counts one hit of `name` in the store, or locally while the store cannot count. */
export function createLimiter(store: RateLimitStore): Limiter {
  const local = localCounter();
  return async (name, limit, windowSeconds) => {
    let result: { count: number; resetAt: number };
    try {
      result = await store.hit(name, windowSeconds);
    } catch {
      result = local(name, windowSeconds);
    }
    return { limited: result.count > limit, first: result.count === limit + 1, retryAfter: Math.max(1, result.resetAt - Math.floor(Date.now() / 1000)) };
  };
}

/** Thrown by a route (or an authenticator) that found its caller over a limit; answered by the error handler (error-handler.ts). */
export class RateLimitedError extends Error {
  readonly retryAfter: number;
  constructor(retryAfter: number) {
    super('too many requests; try again later');
    this.name = 'RateLimitedError';
    this.retryAfter = retryAfter;
  }
}

/** The broker's browser pages; everything else (OP endpoints, the JSON API) is answered in JSON. */
const PAGES = ['/account', '/interaction', '/upstream', '/link-upstream'];

function wantsJson(ctx: Context): boolean {
  return !PAGES.some((p) => ctx.path === p || ctx.path.startsWith(`${p}/`)) || ctx.accepts('html', 'json') !== 'html';
}

/** The one answer of every limit. */
export function sendRateLimited(ctx: Context, retryAfter: number): void {
  ctx.status = 429;
  ctx.set('Retry-After', String(retryAfter));
  ctx.set('Cache-Control', 'no-store');
  if (wantsJson(ctx)) {
    ctx.body = { error: 'slow_down', error_description: 'too many requests; try again later' };
  } else {
    ctx.type = 'html';
    ctx.body = errorPage('Too many attempts', `You have tried this too many times. Wait ${Math.ceil(retryAfter / 60)} minute(s), then try again.`);
  }
}

/** The client id in HTTP Basic credentials (oidc/token-client-id.ts also finds it in the body). */
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

/** Whether a rule applies to this request: its methods (default all) and path prefixes (default all). */
export function matches(rule: { paths?: readonly string[]; methods?: readonly string[] }, ctx: Context): boolean {
  if (rule.methods && !rule.methods.includes(ctx.method)) return false;
  return !rule.paths || rule.paths.some((p) => ctx.path === p || ctx.path.startsWith(`${p}/`));
}

export function rateLimit(store: RateLimitStore | Limiter, rules: RateLimitRule[], onLimited?: (ctx: Context, name: string) => void) {
  const hit = typeof store === 'function' ? store : createLimiter(store);
  return async (ctx: Context, next: Next): Promise<void> => {
    for (const rule of rules) {
      if (rule.limit <= 0 || !matches(rule, ctx)) continue;
      for (const keyOf of rule.keys) {
        const key = keyOf(ctx);
        if (!key) continue;
        const name = `${rule.paths[0]}|${key}`;
        const verdict = await hit(name, rule.limit, rule.windowSeconds);
        if (verdict.limited) {
          if (verdict.first) onLimited?.(ctx, name);
          sendRateLimited(ctx, verdict.retryAfter);
          return;
        }
      }
    }
    await next();
  };
}
