/** The caller handed the ledger an event it cannot record (wrong type, oversized details...). A bug, not an outage. */
export class AuditInputError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditInputError';
  }
}

/** Other writers kept moving the chain head; the append gave up rather than spin. Retrying later is safe. */
export class LedgerContentionError extends Error {
  constructor(message = 'audit ledger head kept changing; append not recorded') {
    super(message);
    this.name = 'LedgerContentionError';
  }
}

/** A stored entry no longer parses: someone edited the storage by hand. `audit verify` says where. */
export class LedgerCorruptError extends Error {
  readonly seq: number;
  constructor(seq: number, message: string) {
    super(`audit entry ${seq}: ${message}`);
    this.name = 'LedgerCorruptError';
    this.seq = seq;
  }
}
