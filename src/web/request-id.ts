import { randomUUID } from 'node:crypto';
import type { Context, Next } from 'koa';

const VALID = /^[\w.:-]{1,128}$/;

/** Propagates a well-formed incoming X-Request-Id (or makes one) into ctx.state, logs and the response. */
export function requestId() {
  return async (ctx: Context, next: Next): Promise<void> => {
    const incoming = ctx.get('X-Request-Id');
    const id = VALID.test(incoming) ? incoming : randomUUID();
    (ctx.state as { requestId?: string }).requestId = id;
    ctx.set('X-Request-Id', id);
    await next();
  };
}
