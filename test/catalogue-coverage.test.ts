import { describe, it, expect } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// The security catalogue, row by row: every ID mapped once, every referenced test present (see
// docs/security-coverage/README.md for the format).

const DIR = 'docs/security-coverage';
const CATALOGUE = '../shared/reference/security-catalogue.md';

interface Row { id: string; status: string; tests: string; notes: string; file: string }

function rows(): Row[] {
  const out: Row[] = [];
  for (const file of readdirSync(DIR).filter((f) => f.endsWith('.md') && f !== 'README.md')) {
    for (const line of readFileSync(join(DIR, file), 'utf8').split('\n')) {
      const cells = line.split('|').map((c) => c.trim());
      if (cells.length < 5 || !/^[A-Z]+-\d+$/.test(cells[1])) continue;
      out.push({ id: cells[1], status: cells[2], tests: cells[3], notes: cells[4] ?? '', file });
    }
  }
  return out;
}

function references(tests: string): Array<{ path: string; needle: string }> {
  const refs: Array<{ path: string; needle: string }> = [];
  for (const m of tests.matchAll(/`([^`]+)`\s*"([^"]+)"/g)) refs.push({ path: m[1], needle: m[2] });
  return refs;
}

const expected = readFileSync(join(DIR, 'catalogue-ids.txt'), 'utf8').split('\n').filter(Boolean);

describe('security catalogue coverage', () => {
  it('the copied ID list matches the catalogue (when the shared reference is present)', () => {
    expect(new Set(expected).size).toBe(expected.length);
    if (existsSync(CATALOGUE)) {
      const ids = [...readFileSync(CATALOGUE, 'utf8').matchAll(/^\| ([A-Z]+-\d+)/gm)].map((m) => m[1]);
      expect(ids).toEqual(expected);
    }
  });

  it('every catalogue ID is mapped exactly once, with a known status', () => {
    const all = rows();
    const seen = new Map<string, string>();
    const problems: string[] = [];
    for (const r of all) {
      if (seen.has(r.id)) problems.push(`${r.id} mapped in ${seen.get(r.id)} and ${r.file}`);
      seen.set(r.id, r.file);
      if (!['tested', 'n/a', 'open'].includes(r.status)) problems.push(`${r.id}: unknown status "${r.status}"`);
      if (r.status !== 'tested' && !r.notes) problems.push(`${r.id}: ${r.status} without a note`);
      if (!expected.includes(r.id)) problems.push(`${r.id}: not a catalogue ID`);
    }
    for (const id of expected) if (!seen.has(id)) problems.push(`${id}: not mapped`);
    expect(problems).toEqual([]);
  });

  it('every referenced test exists and contains the quoted title', () => {
    const problems: string[] = [];
    for (const r of rows().filter((x) => x.status === 'tested')) {
      const refs = references(r.tests);
      if (refs.length === 0) problems.push(`${r.id}: tested but no reference`);
      for (const ref of refs) {
        if (!/^(test|bench)\/.+\.ts$/.test(ref.path) || !existsSync(ref.path)) problems.push(`${r.id}: no file ${ref.path}`);
        else if (!readFileSync(ref.path, 'utf8').includes(ref.needle)) problems.push(`${r.id}: "${ref.needle}" not in ${ref.path}`);
      }
    }
    expect(problems).toEqual([]);
    const open = rows().filter((x) => x.status === 'open');
    if (open.length) console.log(`open catalogue rows: ${open.map((o) => o.id).join(', ')}`);
  });
});
