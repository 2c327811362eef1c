import { describe, expect, it } from 'vitest';
import { canonicalEntry, canonicalJson, entryHash, GENESIS_HASH } from '../../src/audit/chain.ts';
import type { StoredEntry } from '../../src/audit/entry.ts';
import type { JsonObject } from '../../src/audit/json.ts';
import { isSecretKey, looksLikeNhsNumber, looksLikeSecretValue, redactDetails } from '../../src/audit/redact.ts';
import { createHash } from 'node:crypto';

const sample: Omit<StoredEntry, 'hash'> = {
  seq: 7,
  time: '2025-03-01T10:00:00.000Z',
  type: 'token.exchanged',
  outcome: 'success',
  actor: 'v1.abc.def',
  actorIndex: 'idx-a',
  subject: null,
  subjectIndex: null,
  client: 'svc "quoted" \u2028',
  consent: 'c-1',
  requestId: null,
  details: { z: 1, a: { y: [3, { b: true, a: null }], x: 'é' } },
  personal: null,
  prev: GENESIS_HASH,
};

describe('canonical serialisation and chain hash', () => {
  it('sorts keys at every depth and adds no whitespace', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: 'x' }], c: null })).toBe('{"a":[{"c":"x","d":2}],"b":1,"c":null}');
  });

  it('writes entries exactly as the generic canonical form would', () => {
    expect(canonicalEntry(sample)).toBe(canonicalJson(sample as unknown as JsonObject));
  });

  it('hashes sha256(prev || canonical)', () => {
    const expected = createHash('sha256').update(GENESIS_HASH + canonicalJson(sample as unknown as JsonObject)).digest('hex');
    expect(entryHash(GENESIS_HASH, sample)).toBe(expected);
    expect(entryHash(GENESIS_HASH, { ...sample, details: { a: { x: 'é', y: [3, { a: null, b: true }] }, z: 1 } })).toBe(expected);
    expect(entryHash(GENESIS_HASH, { ...sample, seq: 8 })).not.toBe(expected);
  });
});

describe('details redaction', () => {
  it('recognises secret keys in any spelling', () => {
    for (const k of ['token', 'access_token', 'refreshToken', 'ID-Token', 'client_secret', 'password', 'private_key', 'assertion', 'code', 'code_verifier', 'subject_token', 'csrfToken'])
      expect(isSecretKey(k), k).toBe(true);
    for (const k of ['grant_type', 'token_type_hint', 'scope', 'client_id', 'audience', 'provider']) expect(isSecretKey(k), k).toBe(false);
  });

  it('recognises secret values', () => {
    expect(looksLikeSecretValue('eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig')).toBe(true);
    expect(looksLikeSecretValue('eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..iv.ct.tag')).toBe(true);
    expect(looksLikeSecretValue('-----BEGIN EC PRIVATE KEY-----\nMHcC')).toBe(true);
    expect(looksLikeSecretValue('DPoP abcdefghijkl')).toBe(true);
    expect(looksLikeSecretValue('authorization_code')).toBe(false);
  });

  it('validates NHS numbers with the modulus 11 check digit', () => {
    expect(looksLikeNhsNumber('9434765919')).toBe(true);
    expect(looksLikeNhsNumber('943 476 5919')).toBe(true);
    expect(looksLikeNhsNumber('943-476-5919')).toBe(true);
    expect(looksLikeNhsNumber('9434765918')).toBe(false);
    expect(looksLikeNhsNumber('1234567890')).toBe(false); // check digit would be 10: never issued
    expect(looksLikeNhsNumber('94347659190')).toBe(false);
  });

  it('drops secrets and moves personal values, reporting paths only', () => {
    const r = redactDetails({ a: { token: 't', given_name: 'Ann', n: 1 }, list: [{ password: 'p' }, '9434765919'], ok: 'yes' });
    expect(r.details).toEqual({ a: { n: 1 }, list: [{}], ok: 'yes' });
    expect(r.personal).toEqual({ 'a.given_name': 'Ann', 'list[1]': '9434765919' });
    expect(r.dropped).toEqual(['a.token', 'list[0].password']);
  });
});
