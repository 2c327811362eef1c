import { describe, it, expect } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkEncryptionAlgorithms } from '../../providers/saml/checks/algorithms.ts';
import { parseXml } from '../../providers/saml/xml.ts';

// Security catalogue section 0: the versions below carry the fixes the SAML and JOSE rows rely on.
// Every installed copy counts, nested ones included (a dependency may bring its own older xml-crypto),
// and so does the lockfile, which is what a fresh `npm install` reproduces.

type Version = [number, number, number];

function parse(version: string): Version {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m) throw new Error(`not a version: ${version}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

function atLeast(version: string, minimum: string): boolean {
  const a = parse(version);
  const b = parse(minimum);
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return true;
}

interface Floor {
  accept(version: string): boolean;
  why: string;
}

const FLOORS: Record<string, Floor> = {
  'xml-crypto': {
    accept: (v) => atLeast(v, '6.1.2'),
    why: 'KeyInfo certificates not trusted (6.0.0), multiple SignedInfo and DigestValue comments (6.0.1), getSignedReferences (6.1.0), corrupted references wiped (6.1.2)',
  },
  '@node-saml/node-saml': { accept: (v) => atLeast(v, '5.1.0'), why: 'CVE-2025-54369 / CVE-2025-54419 (assertion read from unsigned data)' },
  '@node-saml/passport-saml': { accept: (v) => atLeast(v, '5.1.0'), why: 'depends on @node-saml/node-saml ^5.1.0' },
  '@xmldom/xmldom': {
    // Two maintained lines: 0.8.15+ or 0.9.12+.
    accept: (v) => (parse(v)[0] === 0 && parse(v)[1] === 8 ? atLeast(v, '0.8.15') : atLeast(v, '0.9.12')),
    why: 'parser denial-of-service fixes (quadratic namespaces, duplicate attributes, deep nesting)',
  },
  jose: { accept: (v) => atLeast(v, '4.15.5'), why: 'CVE-2024-28176 (JWE decompression bomb)' },
  'oidc-provider': { accept: (v) => parse(v)[0] === 9 && atLeast(v, '9.11.0'), why: 'the 9.x line at or after the catalogue snapshot' },
  'openid-client': { accept: (v) => parse(v)[0] === 6 && atLeast(v, '6.8.0'), why: 'the 6.x line at or after the catalogue snapshot' },
};

// Abandoned packages with no fixed version at all.
const FORBIDDEN = ['node-saml', 'passport-saml', 'xmldom'];

interface Installed {
  name: string;
  version: string;
  path: string;
}

/** Every installed copy of the named packages, walking nested node_modules directories. */
function installedCopies(root: string, names: string[]): Installed[] {
  const out: Installed[] = [];
  const stack = [join(root, 'node_modules')];
  while (stack.length) {
    const dir = stack.pop()!;
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      const packages = entry.name.startsWith('@')
        ? readdirSync(join(dir, entry.name), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => `${entry.name}/${e.name}`)
        : [entry.name];
      for (const name of packages) {
        const pkgDir = join(dir, name);
        const manifest = join(pkgDir, 'package.json');
        if (names.includes(name) && existsSync(manifest)) {
          out.push({ name, version: (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version, path: pkgDir });
        }
        stack.push(join(pkgDir, 'node_modules'));
      }
    }
  }
  return out;
}

function lockedCopies(names: string[]): Installed[] {
  const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, { version?: string }> };
  const out: Installed[] = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    const name = path.replace(/^.*node_modules\//, '');
    if (path.includes('node_modules/') && names.includes(name) && entry.version) out.push({ name, version: entry.version, path });
  }
  return out;
}

describe('dependency floor (security catalogue section 0)', () => {
  const names = [...Object.keys(FLOORS), ...FORBIDDEN, 'xml-encryption'];
  const installed = installedCopies('.', names);
  const locked = lockedCopies(names);

  it('finds the installed packages (the walk itself works, so an empty result cannot pass)', () => {
    for (const name of ['xml-crypto', '@node-saml/node-saml', '@node-saml/passport-saml', '@xmldom/xmldom', 'jose', 'oidc-provider', 'openid-client']) {
      expect(installed.some((c) => c.name === name), name).toBe(true);
      expect(locked.some((c) => c.name === name), `${name} in package-lock.json`).toBe(true);
    }
  });

  it('every installed copy, nested ones included, meets the catalogue minimum', () => {
    const below = installed.filter((c) => FLOORS[c.name] && !FLOORS[c.name].accept(c.version)).map((c) => `${c.path} ${c.version}: ${FLOORS[c.name].why}`);
    expect(below).toEqual([]);
  });

  it('every copy in package-lock.json meets the catalogue minimum (what a fresh install gets)', () => {
    const below = locked.filter((c) => FLOORS[c.name] && !FLOORS[c.name].accept(c.version)).map((c) => `${c.path} ${c.version}: ${FLOORS[c.name].why}`);
    expect(below).toEqual([]);
  });

  it('no abandoned SAML or XML package (node-saml, passport-saml, xmldom) is installed or locked', () => {
    expect([...installed, ...locked].filter((c) => FORBIDDEN.includes(c.name)).map((c) => c.path)).toEqual([]);
  });

  it('the floor comparison refuses a version just below each minimum (so the checks above can fail)', () => {
    expect(FLOORS['xml-crypto'].accept('6.1.1')).toBe(false);
    expect(FLOORS['xml-crypto'].accept('5.9.9')).toBe(false);
    expect(FLOORS['xml-crypto'].accept('6.1.2')).toBe(true);
    expect(FLOORS['@node-saml/node-saml'].accept('5.0.1')).toBe(false);
    expect(FLOORS['@xmldom/xmldom'].accept('0.8.14')).toBe(false);
    expect(FLOORS['@xmldom/xmldom'].accept('0.9.11')).toBe(false);
    expect(FLOORS['@xmldom/xmldom'].accept('0.9.12')).toBe(true);
    expect(FLOORS.jose.accept('4.15.4')).toBe(false);
    expect(FLOORS['oidc-provider'].accept('8.99.0')).toBe(false);
    expect(FLOORS['openid-client'].accept('5.7.0')).toBe(false);
  });

  it('passport-saml asks for a node-saml range whose floor is 5.1.0', () => {
    for (const copy of installed.filter((c) => c.name === '@node-saml/passport-saml')) {
      const range = (JSON.parse(readFileSync(join(copy.path, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies['@node-saml/node-saml'];
      expect(range).toMatch(/^[\^~>=]*\d/);
      expect(atLeast(range.replace(/^[\^~>=]+/, ''), '5.1.0'), range).toBe(true);
    }
  });

  it('xml-encryption 3.x accepts RSA-1_5, 3DES and AES-CBC: the broker refuses them before decrypting', () => {
    const copies = installed.filter((c) => c.name === 'xml-encryption');
    expect(copies.length).toBeGreaterThan(0);
    if (copies.every((c) => atLeast(c.version, '4.0.0'))) return;
    // The allow-list the SAML connector applies to every EncryptedAssertion (end to end in SAML-38).
    const encrypted = (data: string, key: string) =>
      parseXml(
        `<saml:EncryptedAssertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"><xenc:EncryptedData><xenc:EncryptionMethod Algorithm="${data}"/><xenc:CipherData/></xenc:EncryptedData><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="${key}"/></xenc:EncryptedKey></saml:EncryptedAssertion>`,
        'test',
      ).documentElement;
    const OAEP = 'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p';
    const GCM = 'http://www.w3.org/2009/xmlenc11#aes256-gcm';
    expect(() => checkEncryptionAlgorithms(encrypted(GCM, OAEP))).not.toThrow();
    expect(() => checkEncryptionAlgorithms(encrypted(GCM, 'http://www.w3.org/2001/04/xmlenc#rsa-1_5'))).toThrow(/not allowed/);
    expect(() => checkEncryptionAlgorithms(encrypted('http://www.w3.org/2001/04/xmlenc#tripledes-cbc', OAEP))).toThrow(/not allowed/);
    expect(() => checkEncryptionAlgorithms(encrypted('http://www.w3.org/2001/04/xmlenc#aes128-cbc', OAEP))).toThrow(/not allowed/);
  });
});
