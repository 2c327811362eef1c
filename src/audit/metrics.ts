import { Counter, Histogram, type Registry } from 'prom-client';

export interface AuditMetrics {
  observeAppend(backend: string, seconds: number, attempts: number): void;
  countEntry(type: string, outcome: string): void;
}

/** Registers the ledger's metrics on the given registry (never the global one, so tests and servers stay apart). */
export function createAuditMetrics(registry: Registry, prefix = 'broker_'): AuditMetrics {
  const latency = new Histogram({
    name: `${prefix}audit_append_duration_seconds`,
    help: 'Time to append one audit entry, including sealing and retries',
    labelNames: ['backend'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const entries = new Counter({
    name: `${prefix}audit_entries_total`,
    help: 'Audit entries appended, by event type and outcome',
    labelNames: ['type', 'outcome'],
    registers: [registry],
  });
  const conflicts = new Counter({
    name: `${prefix}audit_append_conflicts_total`,
    help: 'Appends retried because another process moved the chain head first',
    labelNames: ['backend'],
    registers: [registry],
  });
  return {
    observeAppend(backend, seconds, attempts) {
      latency.observe({ backend }, seconds);
      if (attempts > 1) conflicts.inc({ backend }, attempts - 1);
    },
    countEntry(type, outcome) {
      entries.inc({ type, outcome });
    },
  };
}
