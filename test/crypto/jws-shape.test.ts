import { describe, it, expect } from 'vitest';
import { performance } from 'node:perf_hooks';
import { generateKeyPairSync } from 'node:crypto';
import { hasDuplicateMembers } from '../../src/crypto/duplicate-members.ts';
import { checkJwsShape, JwsShapeError } from '../../src/crypto/jws-header.ts';
import { flattened, general, jws, nowSeconds, signer } from '../catalogue/jose-forge.ts';

// The strict JWS shape check every verified JOSE input runs first (catalogue JW-08, JW-19, JW-23), on
// its own; the catalogue tests (test/catalogue/jose-*.test.ts) run it through each real input.

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const es256 = signer('ES256', privateKey);
const header = { alg: 'ES256', kid: 'k1', typ: 'JWT' };
const claims = () => ({ iss: 'https://issuer.example', sub: '555057896106', aud: 'https://broker.example', iat: nowSeconds(), exp: nowSeconds() + 300, jti: 'j1', amr: ['N3_SMARTCARD'], act: { sub: 'a', act: { sub: 'b' } } });

function refusal(token: string): string | undefined {
  try {
    checkJwsShape(token);
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(JwsShapeError);
    return (err as Error).message;
  }
}

describe('duplicate JSON members', () => {
  it('finds a name twice at the top, nested in objects and in objects inside arrays; escapes are decoded first', () => {
    for (const text of ['{"alg":"RS256","alg":"none"}', '{"a":{"b":1,"b":2}}', '{"a":[{"x":1},{"y":2,"y":3}]}', '{"alg":"RS256","\\u0061lg":"none"}', '{"a\\"b":1,"a\\u0022b":2}', '{"":1,"":2}', '{"__proto__":1,"__proto__":2}']) {
      expect(hasDuplicateMembers(text), text).toBe(true);
    }
  });

  it('[P] the same name in sibling objects, as a value, inside strings, or in arrays is not a duplicate', () => {
    for (const text of ['{"a":{"x":1},"b":{"x":1}}', '{"a":"a","b":"a"}', '{"a":"{\\"a\\":1,\\"a\\":2}"}', '{"a":["a","a"],"b":[["a"],["a"]]}', '[{"a":1},{"a":1}]', '{"a":{},"b":{}}', '{"a\\\\":1,"a":2}', '{}', '[]']) {
      expect(hasDuplicateMembers(text), text).toBe(false);
    }
  });
});

describe('strict JWS shape', () => {
  it('[P] an ordinary compact JWS passes and its protected header comes back', () => {
    expect(checkJwsShape(jws(header, claims(), es256))).toEqual(header);
  });

  it('refuses any crit (unknown, registered, empty, duplicated entries) and any b64, in or out of crit', () => {
    for (const extra of [{ crit: ['x-unknown'], 'x-unknown': 1 }, { crit: ['alg'] }, { crit: [] }, { b64: true, crit: ['b64', 'b64'] }, { b64: false, crit: ['b64'] }, { b64: false }, { b64: true }]) {
      expect(refusal(jws({ ...header, ...extra }, claims(), es256)), JSON.stringify(extra)).toMatch(/crit|b64/);
    }
  });

  it('refuses duplicate members in the header and in the payload', () => {
    expect(refusal(jws(JSON.stringify(header).replace('{', '{"alg":"none",'), claims(), es256))).toMatch(/header member appears twice/);
    expect(refusal(jws(header, JSON.stringify(claims()).replace('{', '{"sub":"admin",'), es256))).toMatch(/claim appears twice/);
    expect(refusal(jws(header, JSON.stringify(claims()).replace('"act":{', '"act":{"sub":"c",'), es256))).toMatch(/claim appears twice/);
  });

  it('refuses the JSON serialisations, JWEs, detached or empty segments and non-base64url characters', () => {
    const good = jws(header, claims(), es256);
    const [h, p, s] = good.split('.');
    for (const token of [flattened(good), general(good, good), `${h}.${p}.${s}.x.y`, `${h}..${s}`, `.${p}.${s}`, `${h}.${p}`, `${h} .${p}.${s}`, `${h}.${p}+.${s}`, `${h}.${p}.${s}=`, '']) {
      expect(refusal(token), token.slice(0, 40)).toMatch(/compact JWS/);
    }
    expect(refusal(`${Buffer.from('[1]').toString('base64url')}.${p}.${s}`)).toMatch(/not a JSON object/);
    expect(refusal(`${Buffer.from('{"alg":').toString('base64url')}.${p}.${s}`)).toMatch(/not JSON/);
  });

  it('is cheap on the token hot path (micro-benchmark: µs per call on a typical ID-token-sized JWS)', () => {
    const token = jws(header, { ...claims(), extra: 'x'.repeat(600), roles: Array.from({ length: 10 }, (_, i) => ({ code: `R${i}`, org: `O${i}` })) }, es256);
    for (let i = 0; i < 2000; i++) checkJwsShape(token);
    const runs = 20_000;
    const t0 = performance.now();
    for (let i = 0; i < runs; i++) checkJwsShape(token);
    const perCall = ((performance.now() - t0) * 1000) / runs;
    console.log(`checkJwsShape: ${perCall.toFixed(2)} µs per call on a ${token.length}-character JWS`);
    // A generous bound for a shared, busy machine: signature verification alone costs far more.
    expect(perCall).toBeLessThan(100);
  });

  it('a 16 KB payload of distinct members is checked in linear time', () => {
    const many = `{${Array.from({ length: 1500 }, (_, i) => `"m${i}":${i}`).join(',')}}`;
    const t0 = performance.now();
    expect(hasDuplicateMembers(many)).toBe(false);
    expect(performance.now() - t0).toBeLessThan(50);
  });
});
