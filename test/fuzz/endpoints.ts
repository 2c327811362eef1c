import fc from 'fast-check';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { consentApiTarget } from './consent-api.ts';
import { samlAcsTarget } from './saml-acs.ts';
import { smartcardHeadersTarget } from './smartcard-headers.ts';
import { stateRows } from './state.ts';
import type { FuzzTarget } from './target.ts';

// Property-based fuzzing of every endpoint that takes input. Each property: never a 5xx, the process
// survives, and a rejected request changes no state (see state.ts). Shared by the test
// suite (a small sample) and bench/fuzz.ts (100,000 inputs per endpoint).

const PARAMS = ['grant_type', 'code', 'redirect_uri', 'code_verifier', 'refresh_token', 'scope', 'resource', 'client_id', 'client_secret', 'client_assertion', 'client_assertion_type', 'token', 'token_type_hint', 'response_type', 'code_challenge', 'code_challenge_method', 'state', 'nonce', 'request_uri', 'request', 'prompt', 'subject_token', 'subject_token_type', 'audience', 'actor_token'];
const VALUES = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.constantFrom('authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange', 'code', 'S256', 'plain', 'openid', 'https://api.test', 'https://client.test/cb', 'web', 'svc', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', '%zz', '\u0000', 'a'.repeat(5000)),
  fc.base64String({ maxLength: 200 }),
);
const FORM = fc.array(fc.tuple(fc.oneof(fc.constantFrom(...PARAMS), fc.string({ maxLength: 20 })), VALUES), { maxLength: 12 });
const CONTENT_TYPE = fc.constantFrom('application/x-www-form-urlencoded', 'application/json', 'text/plain', 'multipart/form-data', '', 'application/x-www-form-urlencoded; charset=latin1');
const AUTH = fc.oneof(fc.constant(''), fc.constant(`Basic ${Buffer.from('web:web-secret-0123456789').toString('base64')}`), fc.constant(`Basic ${Buffer.from('rs:rs-secret-0123456789ab').toString('base64')}`), fc.string({ maxLength: 80 }).map((s) => `Basic ${s}`), fc.string({ maxLength: 80 }).map((s) => `Bearer ${s}`));

function encode(pairs: Array<[string, string]>): string {
  return pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
}

function postTarget(name: string, path: string): FuzzTarget {
  return {
    name,
    async run(bed, numRuns) {
      await fc.assert(
        fc.asyncProperty(FORM, CONTENT_TYPE, AUTH, async (pairs, contentType, auth) => {
          const before = stateRows(bed.dbFile);
          const headers: Record<string, string> = {};
          if (contentType) headers['content-type'] = contentType;
          if (auth) headers.authorization = auth;
          let res: Response;
          try {
            res = await fetch(`${bed.base}${path}`, { method: 'POST', headers, body: encode(pairs) });
          } catch {
            // A header value fetch itself refuses (control characters): nothing was sent.
            return true;
          }
          await res.arrayBuffer();
          if (res.status >= 500) throw new Error(`${path} answered ${res.status} for ${encode(pairs).slice(0, 300)}`);
          // Rows only ever grow from a request; the store's expiry purge may shrink them at any time (for
          // example PAR records an earlier accepted input created), which is not the request's doing.
          if (res.status >= 400 && stateRows(bed.dbFile) > before) throw new Error(`${path} changed state on a rejected request`);
          return true;
        }),
        { numRuns },
      );
    },
  };
}

export const TARGETS: FuzzTarget[] = [
  postTarget('token', '/token'),
  postTarget('introspection', '/token/introspection'),
  postTarget('revocation', '/token/revocation'),
  postTarget('PAR', '/request'),
  postTarget('upstream callback', '/upstream/demo/callback'),
  {
    name: 'authorization',
    async run(bed, numRuns) {
      await fc.assert(
        fc.asyncProperty(FORM, async (pairs) => {
          const before = stateRows(bed.dbFile);
          const res = await fetch(`${bed.base}/auth?${encode(pairs)}`, { redirect: 'manual' });
          await res.arrayBuffer();
          if (res.status >= 500) throw new Error(`/auth answered ${res.status} for ${encode(pairs).slice(0, 300)}`);
          const startedLogin = res.status === 303 && (res.headers.get('location') ?? '').includes('/interaction/');
          if (!startedLogin && stateRows(bed.dbFile) > before) throw new Error('/auth changed state without starting a login');
          return true;
        }),
        { numRuns },
      );
    },
  },
  {
    name: 'config loader',
    async run(_bed, numRuns) {
      fc.assert(
        fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
          try {
            parseConfig(value, {});
          } catch (err) {
            if (!(err instanceof ConfigError)) throw err;
          }
          return true;
        }),
        { numRuns: numRuns * 5 },
      );
    },
  },
  samlAcsTarget,
  smartcardHeadersTarget,
  consentApiTarget,
];
