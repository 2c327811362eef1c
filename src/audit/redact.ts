import type { JsonObject, JsonValue } from './json.ts';
import { isJsonObject } from './json.ts';

// The ledger is kept for years and copied into exports; a token or password written into it once is
// exposed for all of that time. So details are filtered here, whatever the caller meant to pass:
// secrets are dropped outright, personal data is moved to the sealed `personal` part.

const SECRET_KEYS = new Set([
  'token', 'accesstoken', 'refreshtoken', 'idtoken', 'logouttoken', 'subjecttoken', 'actortoken',
  'code', 'authorizationcode', 'codeverifier', 'devicecode', 'usercode',
  'clientsecret', 'secret', 'password', 'passwd', 'passphrase', 'pin',
  'privatekey', 'privatejwk', 'assertion', 'clientassertion', 'samlresponse', 'samlassertion',
  'authorization', 'cookie', 'setcookie', 'apikey', 'jwt', 'credential', 'credentials',
]);

const PERSONAL_KEYS = new Set([
  'nhsnumber', 'name', 'fullname', 'givenname', 'familyname', 'middlename', 'nickname', 'displayname',
  'birthdate', 'dateofbirth', 'dob', 'email', 'emailaddress', 'phone', 'phonenumber', 'address', 'postcode',
]);

function normaliseKey(key: string): string {
  return key.toLowerCase().replace(/[^a-z0-9]/g, '');
}

export function isSecretKey(key: string): boolean {
  const k = normaliseKey(key);
  return SECRET_KEYS.has(k) || k.endsWith('token') || k.endsWith('secret') || k.endsWith('password') || k.endsWith('privatekey');
}

export function isPersonalKey(key: string): boolean {
  return PERSONAL_KEYS.has(normaliseKey(key));
}

// Compact JWS/JWE (a JSON header always base64url-encodes to "eyJ"), PEM private keys, bearer credentials.
const SECRET_VALUE = [/^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*/, /-----BEGIN [A-Z ]*PRIVATE KEY-----/, /^(Bearer|Basic|DPoP)\s+\S{8,}/i];

export function looksLikeSecretValue(value: string): boolean {
  return SECRET_VALUE.some((re) => re.test(value));
}

/** NHS numbers: 10 digits (spaces or dashes allowed as 3-3-4) with a valid modulus 11 check digit. */
export function looksLikeNhsNumber(value: string): boolean {
  const m = /^\s*(\d{3})[\s-]?(\d{3})[\s-]?(\d{4})\s*$/.exec(value);
  if (!m) return false;
  const digits = (m[1] + m[2] + m[3]).split('').map(Number);
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += digits[i] * (10 - i);
  const check = 11 - (sum % 11);
  if (check === 10) return false;
  return (check === 11 ? 0 : check) === digits[9];
}

export interface RedactionResult {
  details: JsonObject;
  /** Values moved out of details because they looked personal, keyed by their dotted path. */
  personal: JsonObject;
  /** Dotted paths of values dropped as secrets (never their values). */
  dropped: string[];
}

export function redactDetails(details: JsonObject): RedactionResult {
  const personal: JsonObject = {};
  const dropped: string[] = [];

  function walk(value: JsonValue, path: string, key: string | undefined): JsonValue | undefined {
    if (key !== undefined && isSecretKey(key)) {
      dropped.push(path);
      return undefined;
    }
    if (typeof value === 'string') {
      if (looksLikeSecretValue(value)) {
        dropped.push(path);
        return undefined;
      }
      if ((key !== undefined && isPersonalKey(key)) || looksLikeNhsNumber(value)) {
        personal[path] = value;
        return undefined;
      }
      return value;
    }
    if (key !== undefined && isPersonalKey(key) && value !== null) {
      personal[path] = value;
      return undefined;
    }
    if (Array.isArray(value)) {
      const out: JsonValue[] = [];
      value.forEach((item, i) => {
        const v = walk(item, `${path}[${i}]`, undefined);
        if (v !== undefined) out.push(v);
      });
      return out;
    }
    if (isJsonObject(value)) {
      const out: JsonObject = {};
      for (const [k, v] of Object.entries(value)) {
        const r = walk(v, path ? `${path}.${k}` : k, k);
        if (r !== undefined) out[k] = r;
      }
      return out;
    }
    return value;
  }

  const out: JsonObject = {};
  for (const [k, v] of Object.entries(details)) {
    const r = walk(v, k, k);
    if (r !== undefined) out[k] = r;
  }
  return { details: out, personal, dropped };
}

/** Personal values are sealed anyway; only secrets are dropped from them. */
export function dropSecrets(values: JsonObject): { values: JsonObject; dropped: string[] } {
  const dropped: string[] = [];
  function walk(value: JsonValue, path: string, key: string | undefined): JsonValue | undefined {
    if ((key !== undefined && isSecretKey(key)) || (typeof value === 'string' && looksLikeSecretValue(value))) {
      dropped.push(path);
      return undefined;
    }
    if (Array.isArray(value)) return value.map((v, i) => walk(v, `${path}[${i}]`, undefined)).filter((v): v is JsonValue => v !== undefined);
    if (isJsonObject(value)) {
      const out: JsonObject = {};
      for (const [k, v] of Object.entries(value)) {
        const r = walk(v, `${path}.${k}`, k);
        if (r !== undefined) out[k] = r;
      }
      return out;
    }
    return value;
  }
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(values)) {
    const r = walk(v, k, k);
    if (r !== undefined) out[k] = r;
  }
  return { values: out, dropped };
}
