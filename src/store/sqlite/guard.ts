import { StoreUnavailableError } from '../errors.ts';

// Primary result codes (errcode & 0xff) that mean "the database cannot serve us right now", as opposed to a
// bug in our SQL or a constraint we rely on: busy/locked beyond busy_timeout, I/O, disk full, corruption.
const UNAVAILABLE_CODES = new Set([
  5, // SQLITE_BUSY
  6, // SQLITE_LOCKED
  7, // SQLITE_NOMEM
  8, // SQLITE_READONLY
  10, // SQLITE_IOERR
  11, // SQLITE_CORRUPT
  13, // SQLITE_FULL
  14, // SQLITE_CANTOPEN
  15, // SQLITE_PROTOCOL
  26, // SQLITE_NOTADB
]);

function isUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { code, errcode } = err as { code?: unknown; errcode?: unknown };
  // node:sqlite reports a closed database or finalized statement as ERR_INVALID_STATE.
  if (code === 'ERR_INVALID_STATE') return true;
  return code === 'ERR_SQLITE_ERROR' && typeof errcode === 'number' && UNAVAILABLE_CODES.has(errcode & 0xff);
}

/** Runs a synchronous database operation, turning "cannot reach the database" errors into StoreUnavailableError. */
export function guard<T>(op: () => T): T {
  try {
    return op();
  } catch (err) {
    if (err instanceof StoreUnavailableError) throw err;
    if (isUnavailable(err)) {
      throw new StoreUnavailableError(`sqlite store unavailable: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    throw err;
  }
}
