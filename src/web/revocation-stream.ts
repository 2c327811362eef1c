import Router from '@koa/router';
import type { RevocationBus } from '../delegation/revocation-bus.ts';
import { ApiAuthError, type ApiAuthenticator } from './api-auth.ts';

// Server-sent events for resource servers that verify delegated JWTs themselves: each revoked, changed
// or expired consent id is pushed the moment any broker instance records it, so a resource server can
// drop cached decisions at once instead of waiting for the token to expire.

export function revocationStream(bus: RevocationBus, authenticate: ApiAuthenticator): Router {
  const router = new Router();
  router.get('/api/consent-events', async (ctx) => {
    try {
      await authenticate(ctx, 'delegation.events');
    } catch (err) {
      if (!(err instanceof ApiAuthError)) throw err;
      ctx.status = err.status;
      ctx.set('WWW-Authenticate', `Bearer error="${err.oauthError}"`);
      ctx.body = { error: err.oauthError, error_description: err.message };
      return;
    }
    ctx.respond = false;
    const res = ctx.res;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-content-type-options': 'nosniff' });
    res.write(': connected\n\n');
    const unsubscribe = bus.subscribe((consentId) => {
      res.write(`event: consent-revoked\ndata: ${JSON.stringify({ consent_id: consentId })}\n\n`);
    });
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    await new Promise<void>((resolve) => {
      const done = () => {
        clearInterval(heartbeat);
        unsubscribe();
        resolve();
      };
      ctx.req.on('close', done);
      res.on('error', done);
    });
  });
  return router;
}
