import type { SQLOutputValue } from 'node:sqlite';

export type Row = Record<string, SQLOutputValue>;

// The schema guarantees these column types; a mismatch means a corrupted or foreign database, which is a
// bug to surface loudly rather than a value to coerce.

export function text(row: Row, column: string): string {
  const v = row[column];
  if (typeof v !== 'string') throw new TypeError(`sqlite column ${column} is not text`);
  return v;
}

export function optionalText(row: Row, column: string): string | undefined {
  const v = row[column];
  return v === null || v === undefined ? undefined : text(row, column);
}

export function integer(row: Row, column: string): number {
  const v = row[column];
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  throw new TypeError(`sqlite column ${column} is not an integer`);
}

export function optionalInteger(row: Row, column: string): number | undefined {
  const v = row[column];
  return v === null || v === undefined ? undefined : integer(row, column);
}
