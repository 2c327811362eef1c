import fc from 'fast-check';
import { signForwarded } from '../../providers/smartcard/index.ts';
import { CARD_UPSTREAM, PROXY_SECRET, type FuzzBed } from './bed.ts';
import { startUpstreamLogin } from './login-start.ts';
import { stateRows } from './state.ts';
import type { FuzzTarget } from './target.ts';

// The smartcard callback under fuzz: forwarded certificate and chain headers (RFC 9440 byte sequences
// of random bytes, of real certificates with one byte changed, of expired, revoked and foreign cards, or
// no syntax at all), signed by the proxy's HMAC key most of the time so the certificate checks are
// reached, otherwise carrying a forged, stale or malformed signature.

type Cert = { kind: 'random'; bytes: Uint8Array } | { kind: 'real'; which: number; flipAt: number | null } | { kind: 'text'; value: string } | { kind: 'none' };
const CERT: fc.Arbitrary<Cert> = fc.oneof(
  fc.uint8Array({ maxLength: 600 }).map((bytes) => ({ kind: 'random' as const, bytes })),
  fc.record({ kind: fc.constant('real' as const), which: fc.nat(6), flipAt: fc.option(fc.nat(), { freq: 2 }) }),
  fc.string({ maxLength: 200 }).map((value) => ({ kind: 'text' as const, value })),
  fc.constant({ kind: 'none' as const }),
);
const SIGNATURE = fc.constantFrom('valid', 'valid', 'valid', 'stale', 'wrong-key', 'garbage', 'absent');

export const smartcardHeadersTarget: FuzzTarget = {
  name: 'smartcard headers',
  async run(bed: FuzzBed, numRuns: number) {
    const u = bed.pki.users;
    const real = [u.alice, u.bob, u.expired, u.revoked, u.foreign, u.noClientAuth, u.twoUids].map((c) => Buffer.from(c.cert.rawData));
    const issuing = Buffer.from(bed.pki.issuing.cert.rawData);
    const encode = (c: Cert): string | undefined => {
      if (c.kind === 'none') return undefined;
      if (c.kind === 'text') return c.value;
      let der = c.kind === 'random' ? Buffer.from(c.bytes) : Buffer.from(real[c.which]);
      if (c.kind === 'real' && c.flipAt !== null) {
        der = Buffer.from(der);
        der[c.flipAt % der.length] ^= 0x5a;
      }
      return `:${der.toString('base64')}:`;
    };
    await fc.assert(
      fc.asyncProperty(CERT, fc.option(CERT, { freq: 3 }), SIGNATURE, fc.boolean(), async (leaf, chain, signature, withIssuing) => {
        const { ua, upstreamUrl } = await startUpstreamLogin(bed.base, CARD_UPSTREAM);
        const cert = encode(leaf);
        const chainValue = chain ? encode(chain) : withIssuing ? `:${issuing.toString('base64')}:` : undefined;
        const target = `${upstreamUrl.pathname}${upstreamUrl.search}`;
        const headers: Record<string, string> = {};
        if (cert !== undefined) headers['client-cert'] = cert;
        if (chainValue !== undefined) headers['client-cert-chain'] = chainValue;
        const now = Math.floor(Date.now() / 1000);
        if (signature === 'valid') headers['client-cert-signature'] = signForwarded(PROXY_SECRET, now, target, [cert ?? '', chainValue ?? '']);
        else if (signature === 'stale') headers['client-cert-signature'] = signForwarded(PROXY_SECRET, now - 3600, target, [cert ?? '', chainValue ?? '']);
        else if (signature === 'wrong-key') headers['client-cert-signature'] = signForwarded('not-the-proxy-secret-0123456789abcdef', now, target, [cert ?? '', chainValue ?? '']);
        else if (signature === 'garbage') headers['client-cert-signature'] = `t=${now};sig=${'A'.repeat(43)}`;
        const before = stateRows(bed.dbFile);
        let res: Response;
        try {
          res = await ua.request(upstreamUrl.href, { headers });
        } catch {
          // A header value fetch itself refuses to send (control characters): nothing reached the broker.
          return true;
        }
        const body = await res.text();
        if (res.status >= 500) throw new Error(`smartcard callback answered ${res.status}: ${body.slice(0, 200)}`);
        if (res.status >= 400 && stateRows(bed.dbFile) > before) throw new Error('smartcard callback changed state on a refusal');
        return true;
      }),
      { numRuns },
    );
  },
};
