// The audit ledger's public surface: what server.ts and main.ts wire together.
export { AUDIT_EVENT_TYPES, type AuditEvent, type AuditEventType, type AuditOutcome, type OpenedEntry, type StoredEntry } from './entry.ts';
export type { ChainHead, LedgerBackend, StoredCheckpoint } from './backend.ts';
export { sqliteLedgerBackend, type SqliteLedgerOptions } from './backends/sqlite.ts';
export { redisLedgerBackend, type RedisLedgerBackend, type RedisLedgerOptions } from './backends/redis.ts';
export { createLedger, type Ledger, type LedgerOptions, type LedgerQuery, type ReadRange } from './ledger.ts';
export { signCheckpoint, verifyCheckpoint, type CheckpointKeys, type CheckpointSigner } from './checkpoint.ts';
export { verifyLedger, type VerifyResult } from './verify.ts';
export { pruneLedger, type PruneResult } from './prune.ts';
export { toFhirAuditEvent, toFhirBundle, type FhirAuditEvent, type FhirBundle, type FhirExportOptions } from './fhir.ts';
export { toJsonLines, type ExportOptions } from './jsonl.ts';
export { whoActedForMe, type ActedForMe } from './whoActedForMe.ts';
export { createAuditMetrics, type AuditMetrics } from './metrics.ts';
export { AuditInputError, LedgerContentionError, LedgerCorruptError } from './errors.ts';
export { GENESIS_HASH, canonicalJson, entryHash } from './chain.ts';
