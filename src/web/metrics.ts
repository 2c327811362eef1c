import { timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Context, Next } from 'koa';
import { createAuditMetrics, type AuditMetrics } from '../audit/index.ts';

// Prometheus metrics. Never open by default: served on a separate port (for a private network) or on
// the main port behind a bearer token, or not at all. Labels never carry user or token values.

export interface BrokerMetrics {
  registry: Registry;
  audit: AuditMetrics;
  logins: Counter<'provider' | 'outcome'>;
  tokens: Counter<'grant_type' | 'outcome'>;
  exchanges: Counter<'decision'>;
  consentChanges: Counter<'type' | 'outcome'>;
  storeLatency: Histogram<'backend'>;
  /** This instance's clock minus the shared store's (src/store/clock-skew.ts); stays 0 with SQLite (one process). */
  clockSkew: Gauge;
  /** Per upstream: 0 closed, 1 half-open, 2 open (src/identity/circuit-breaker.ts). */
  upstreamCircuit: Gauge<'upstream'>;
  upstreamCircuitRejections: Counter<'upstream'>;
}

export function createMetrics(): BrokerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'broker_' });
  return {
    registry,
    audit: createAuditMetrics(registry),
    logins: new Counter({ name: 'broker_upstream_logins_total', help: 'Upstream logins by provider and outcome', labelNames: ['provider', 'outcome'], registers: [registry] }),
    tokens: new Counter({ name: 'broker_tokens_total', help: 'Token endpoint results by grant type', labelNames: ['grant_type', 'outcome'], registers: [registry] }),
    exchanges: new Counter({ name: 'broker_token_exchange_decisions_total', help: 'Token exchange policy decisions', labelNames: ['decision'], registers: [registry] }),
    consentChanges: new Counter({ name: 'broker_consent_changes_total', help: 'Consent lifecycle events', labelNames: ['type', 'outcome'], registers: [registry] }),
    upstreamCircuit: new Gauge({ name: 'broker_upstream_circuit_state', help: 'Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open', labelNames: ['upstream'], registers: [registry] }),
    upstreamCircuitRejections: new Counter({ name: 'broker_upstream_circuit_rejections_total', help: 'Logins failed fast without trying the upstream (circuit open)', labelNames: ['upstream'], registers: [registry] }),
    clockSkew: new Gauge({ name: 'broker_clock_skew_seconds', help: "This instance's clock minus the shared store's (Redis TIME), in seconds; positive = ahead. 0 with SQLite (one process, nothing to compare)", registers: [registry] }),
    storeLatency: new Histogram({ name: 'broker_store_ping_seconds', help: 'Store round-trip time (health pings)', labelNames: ['backend'], buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.3], registers: [registry] }),
  };
}

/** /metrics on the main app, only with the configured bearer token. */
export function metricsRoute(metrics: BrokerMetrics, bearerToken: string) {
  const expected = Buffer.from(`Bearer ${bearerToken}`);
  return async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.path !== '/metrics') return next();
    const given = Buffer.from(ctx.get('Authorization'));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer realm="metrics"');
      ctx.body = { error: 'invalid_token' };
      return;
    }
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  };
}

/** A separate listener that serves only /metrics (bind it to a private interface). */
export async function serveMetrics(metrics: BrokerMetrics, port: number, host: string): Promise<Server> {
  const server = createServer(async (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    res.end(await metrics.registry.metrics());
  });
  await new Promise<void>((r) => server.listen(port, host, r));
  return server;
}
