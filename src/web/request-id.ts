import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Context, Next } from 'koa';

const VALID = /^[\w.:-]{1,128}$/;
// oidc-provider builds its own Koa context from the same request; this map lets its event handlers
// find the request id too.
const byRequest = new WeakMap<IncomingMessage, string>();

export function requestIdOf(req: IncomingMessage): string | undefined {
  return byRequest.get(req);
}

/** Propagates a well-formed incoming X-Request-Id (or makes one) into ctx.state, logs, the ledger and the response. */
export function requestId() {
  return async (ctx: Context, next: Next): Promise<void> => {
    const incoming = ctx.get('X-Request-Id');
    const id = VALID.test(incoming) ? incoming : randomUUID();
    (ctx.state as { requestId?: string }).requestId = id;
    byRequest.set(ctx.req, id);
    ctx.set('X-Request-Id', id);
    await next();
  };
}
