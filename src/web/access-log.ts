import type { Context, Next } from 'koa';
import type { Logger } from 'pino';

/** One line per request: method, path (never the query string, which can hold codes), status, time. */
export function accessLog(log: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const start = performance.now();
    try {
      await next();
    } finally {
      log.info({ requestId: (ctx.state as { requestId?: string }).requestId, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(performance.now() - start) }, 'request');
    }
  };
}
