import type { Connector, LoginRequest, UpstreamIdentity } from '../../src/identity/upstream.ts';

/**
 * A connector whose upstream answers are scripted by the test: `begin` goes straight to the broker's
 * callback, `complete` returns the next queued identity. It records every LoginRequest so tests can
 * check what the broker asked the upstream for (step-up).
 */
export function scriptedConnector(id: string) {
  const queue: Array<Omit<UpstreamIdentity, 'provider' | 'authTime'>> = [];
  const requests: LoginRequest[] = [];
  const connector: Connector = {
    id,
    displayName: `Scripted ${id}`,
    kind: 'oidc',
    async begin(ctx, request) {
      requests.push(request);
      ctx.redirect(`/upstream/${id}/callback?state=${encodeURIComponent(request.transactionId)}`);
      return {};
    },
    async complete() {
      const next = queue.shift();
      if (!next) throw new Error('no scripted identity left');
      return { ...structuredClone(next), provider: id, authTime: Math.floor(Date.now() / 1000) };
    },
  };
  return { connector, queue, requests };
}
