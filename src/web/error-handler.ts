import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { isStoreUnavailable } from '../store/errors.ts';
import { BadRequestError, BrokerHttpError, LoginFailedError, UnavailableError, UpstreamNotRespondingError } from './errors.ts';
import { errorPage } from './html.ts';
import { RateLimitedError, sendRateLimited } from './rate-limit.ts';

// The one place where errors from the broker's own routes become HTTP answers: an HTML page for
// browsers, OAuth-style JSON for API callers. An unreachable store is 503 with Retry-After; anything
// unexpected is a 500 with a reference, and its detail goes to the log, never to the user.

function wantsJson(ctx: Context): boolean {
  return ctx.path.startsWith('/api/') || ctx.accepts('html', 'json') === 'json';
}

export function errorHandler(log: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
    } catch (caught) {
      // A limit's refusal has one answer wherever it comes from (429 slow_down or the page: rate-limit.ts).
      if (caught instanceof RateLimitedError) return sendRateLimited(ctx, caught.retryAfter);
      const requestId = (ctx.state as { requestId?: string }).requestId;
      let err: BrokerHttpError;
      const status = (caught as { statusCode?: unknown }).statusCode;
      if (caught instanceof BrokerHttpError) err = caught;
      // oidc-provider helpers used by our routes throw its own errors: the store-outage one is 503.
      else if (isStoreUnavailable(caught) || status === 503) err = new UnavailableError();
      else if (typeof status === 'number' && status >= 400 && status < 500) err = new BadRequestError('This request cannot be completed. Go back to the service and start again.', status);
      else {
        log.error({ err: caught, requestId, path: ctx.path }, 'unhandled error');
        err = new BrokerHttpError(500, 'Sorry, there is a problem with the service', 'Please try again later.');
      }
      if (err instanceof LoginFailedError) log.warn({ requestId, reason: err.reason }, 'login failed');
      if (err instanceof UpstreamNotRespondingError) log.warn({ requestId, reason: err.reason }, 'upstream not responding');
      if (err.status === 503) ctx.set('Retry-After', String(err instanceof UpstreamNotRespondingError ? err.retryAfterSeconds : 1));
      ctx.status = err.status;
      if (wantsJson(ctx)) {
        ctx.body = { error: err.status === 503 ? 'temporarily_unavailable' : err.status >= 500 ? 'server_error' : 'invalid_request', error_description: err.publicMessage };
      } else {
        ctx.type = 'html';
        const chooser = err instanceof UpstreamNotRespondingError && err.chooser ? { href: err.chooser, text: 'Choose another way to sign in' } : undefined;
        ctx.body = errorPage(err.title, err.publicMessage, requestId, chooser);
      }
    }
  };
}
