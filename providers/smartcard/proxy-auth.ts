import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import type { ReplayCache } from '../../src/store/contracts.ts';
import type { SmartcardProxyConfig } from '../../src/config/upstream-smartcard.ts';
import { parseDer, type Cert } from './cert.ts';
import { validatePath, PathError } from './path.ts';
import { EKU_CLIENT_AUTH } from '../../src/config/upstream-smartcard.ts';
import { x509 } from './x509.ts';
import { single } from './headers.ts';

// Is this request from our proxy? A forwarded-certificate header is believed only when the hop that
// carried it authenticated itself: (a) the TCP peer is the proxy's TLS connection with a client
// certificate chaining to the configured proxy CA, and/or (b) the proxy signed the forwarded header
// values, a timestamp and the request path with a shared HMAC key (each signature accepted once);
// and, when configured, (c) the TCP peer's address is on the allow-list.

export class ProxyAuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProxyAuthError';
  }
}

export interface HopInfo {
  /** The TCP peer address (never X-Forwarded-For). */
  remoteAddress: string | undefined;
  /** The TLS peer's certificate chain, leaf first (DER); undefined on plain HTTP or without a certificate. */
  peerChain: Buffer[] | undefined;
  rawHeaders: readonly string[];
  /** Request target as received: path and query. */
  url: string;
}

export const SIGNATURE_VERSION = 'smartcard-hmac-v1';
const signatureHeader = z
  .string()
  .max(200)
  .regex(/^t=(\d{1,12});sig=([A-Za-z0-9_-]{43})$/)
  .transform((v) => {
    const [, t, sig] = /^t=(\d+);sig=(.+)$/.exec(v) ?? [];
    return { t: Number(t), sig };
  });

/**
 * The string a proxy signs: version, timestamp, request target (path and query as sent to the broker),
 * then each forwarded header value ('' when not sent), without surrounding whitespace (HTTP drops it).
 */
export function signatureBase(timestamp: number, url: string, values: readonly string[]): string {
  return [SIGNATURE_VERSION, String(timestamp), url, ...values.map((v) => v.trim())].join('\n');
}

/** What a signing proxy puts in the signature header (exported for proxies written in Node, and tests). */
export function signForwarded(secret: string, timestamp: number, url: string, values: readonly string[]): string {
  const sig = createHmac('sha256', secret).update(signatureBase(timestamp, url, values)).digest('base64url');
  return `t=${timestamp};sig=${sig}`;
}

function normaliseAddress(addr: string | undefined): string | undefined {
  if (!addr) return undefined;
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  return v4 ? v4[1] : addr;
}

function blockList(ranges: string[]): BlockList {
  const list = new BlockList();
  for (const r of ranges) {
    const [addr, bits] = r.split('/');
    const type = isIPv4(addr) ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return list;
}

export interface ProxyAuthenticator {
  /** Resolves when the hop is our authenticated proxy; throws ProxyAuthError otherwise. */
  authenticate(hop: HopInfo, signedValues: () => string[]): Promise<{ method: string }>;
  /** Whether the TLS peer certificate is the proxy's (so it is never mistaken for a user's). */
  isProxyCertificate(peerChain: Buffer[] | undefined): boolean;
}

export async function createProxyAuthenticator(proxy: SmartcardProxyConfig, replay: ReplayCache, readBundle: (f: string) => Promise<Cert[]>, now: () => number = Date.now): Promise<ProxyAuthenticator> {
  const auth = proxy.authentication;
  const anchors = auth.mtls ? await readBundle(auth.mtls.caFile) : [];
  const sources = auth.allowedSources ? blockList(auth.allowedSources) : undefined;
  // Validation result per proxy certificate, re-checked every minute (expiry), bounded.
  const verdicts = new Map<string, { ok: boolean; at: number; reason?: string }>();

  function checkProxyCertificate(peerChain: Buffer[] | undefined): { ok: boolean; reason?: string } {
    if (!auth.mtls) return { ok: false, reason: 'proxy mTLS not configured' };
    if (!peerChain || peerChain.length === 0) return { ok: false, reason: 'no TLS client certificate on this connection' };
    const key = createHash('sha256').update(peerChain[0]).digest('hex');
    const cached = verdicts.get(key);
    if (cached && now() - cached.at < 60_000) return cached;
    let verdict: { ok: boolean; reason?: string };
    try {
      const certs = peerChain.map(parseDer);
      const leaf = certs[0];
      validatePath(leaf, { anchors, intermediates: certs.slice(1), now: new Date(now()), clockSkewSeconds: 60, maxPathLength: 4, extendedKeyUsages: [EKU_CLIENT_AUTH], policies: [] });
      if (auth.mtls.allowedNames) {
        const names = [...leaf.px.subjectName.getField('CN')];
        const san = leaf.px.getExtension(x509.SubjectAlternativeNameExtension);
        for (const n of san?.names.items ?? []) if (n.type === 'dns') names.push(n.value);
        if (!names.some((n) => auth.mtls?.allowedNames?.includes(n))) throw new PathError('proxy certificate name is not allowed');
      }
      verdict = { ok: true };
    } catch (err) {
      verdict = { ok: false, reason: err instanceof Error ? err.message : 'invalid' };
    }
    if (verdicts.size > 1000) verdicts.clear();
    verdicts.set(key, { ...verdict, at: now() });
    return verdict;
  }

  async function checkHmac(hop: HopInfo, values: string[]): Promise<void> {
    const hmac = auth.hmac;
    if (!hmac) throw new ProxyAuthError('HMAC not configured');
    const header = single(hop.rawHeaders, hmac.header, 200);
    if (header === undefined) throw new ProxyAuthError('no proxy signature');
    const parsed = signatureHeader.safeParse(header);
    if (!parsed.success) throw new ProxyAuthError('malformed proxy signature');
    const { t, sig } = parsed.data;
    if (Math.abs(now() / 1000 - t) > hmac.windowSeconds) throw new ProxyAuthError('proxy signature outside its time window');
    const given = Buffer.from(sig, 'base64url');
    const base = signatureBase(t, hop.url, values);
    const ok = hmac.secrets.some((s) => {
      const expected = createHmac('sha256', s).update(base).digest();
      return expected.length === given.length && timingSafeEqual(expected, given);
    });
    if (!ok) throw new ProxyAuthError('forged proxy signature');
    // Once only, across broker instances, for as long as the timestamp could still pass.
    if (!(await replay.rememberOnce(`smartcard-hmac:${createHash('sha256').update(given).digest('base64url')}`, hmac.windowSeconds * 2 + 5))) {
      throw new ProxyAuthError('replayed proxy signature');
    }
  }

  return {
    isProxyCertificate: (peerChain) => checkProxyCertificate(peerChain).ok,
    async authenticate(hop, signedValues) {
      if (sources) {
        const addr = normaliseAddress(hop.remoteAddress);
        const type = addr && isIPv6(addr) ? 'ipv6' : 'ipv4';
        if (!addr || !sources.check(addr, type)) throw new ProxyAuthError(`source address ${addr ?? 'unknown'} is not an allowed proxy`);
      }
      const failures: string[] = [];
      if (auth.mtls) {
        const v = checkProxyCertificate(hop.peerChain);
        if (v.ok) return { method: 'mtls' };
        failures.push(`mTLS: ${v.reason ?? 'invalid'}`);
      }
      if (auth.hmac) {
        try {
          await checkHmac(hop, signedValues());
          return { method: 'hmac' };
        } catch (err) {
          failures.push(`HMAC: ${err instanceof Error ? err.message : 'invalid'}`);
        }
      }
      throw new ProxyAuthError(failures.join('; '));
    },
  };
}
