import { readFile } from 'node:fs/promises';
import type { SmartcardUpstreamConfig } from '../../src/config/upstream-smartcard.ts';
import type { Cert } from './cert.ts';
import type { RevocationTarget } from './revocation.ts';
import { AsnConvert, asn1X509, x509 } from './x509.ts';

// Certificate revocation lists from files or URLs, cached and refreshed. A CRL counts only when its
// signature verifies with the key of the certificate's issuer (the issuer found in the validated path),
// it is current (thisUpdate not in the future, nextUpdate not passed, with clock skew) and complete
// (not a delta CRL, not restricted to some reasons, not indirect). When no such CRL is at hand the
// status is "unknown", and the connector's fail-open/fail-closed switch decides.

type CrlConfig = NonNullable<SmartcardUpstreamConfig['revocation']['crl']>;
type Source = CrlConfig['sources'][number];

export type RevocationStatus = { status: 'good'; source: string } | { status: 'revoked'; reason: string } | { status: 'unknown'; reason: string };

interface LoadedCrl {
  crl: x509.X509Crl;
  issuerDer: Buffer;
  /** sha256 of issuer certificates whose key verified this CRL's signature (and those that did not). */
  verified: Map<string, boolean>;
}

interface SourceState {
  source: Source;
  crls: LoadedCrl[];
  loadedAt: number;
  lastAttempt: number;
  lastError?: string;
  inflight?: Promise<void>;
}

const DELTA_CRL_INDICATOR = '2.5.29.27';
const ISSUING_DISTRIBUTION_POINT = '2.5.29.28';
const CRL_NUMBER = '2.5.29.20';
const AUTHORITY_KEY_ID = '2.5.29.35';
const UNDERSTOOD_CRITICAL_CRL = new Set([ISSUING_DISTRIBUTION_POINT, CRL_NUMBER, AUTHORITY_KEY_ID]);

function label(source: Source): string {
  return 'file' in source ? `file ${source.file}` : `url ${source.url}`;
}

function parseCrls(data: Buffer): x509.X509Crl[] {
  const text = data.subarray(0, 64).toString('latin1');
  if (text.includes('-----BEGIN')) {
    const blocks = x509.PemConverter.decodeWithHeaders(data.toString('latin1')).filter((b) => b.type === 'X509 CRL' || b.type === 'CRL');
    if (blocks.length === 0) throw new Error('no X509 CRL block in PEM');
    return blocks.map((b) => new x509.X509Crl(b.rawData));
  }
  return [new x509.X509Crl(new Uint8Array(data))];
}

async function fetchBounded(url: string, timeoutMs: number, maxBytes: number): Promise<Buffer> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error', headers: { accept: 'application/pkix-crl, application/x-pkcs7-crl, */*' } });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > maxBytes) throw new Error('CRL too large');
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw new Error('CRL too large');
    }
    chunks.push(Buffer.from(value));
  }
  return Buffer.concat(chunks);
}

/** Whether this CRL is a complete CRL covering `cert` (a user certificate, or a CA certificate when `isCa`). */
function covers(crl: x509.X509Crl, isCa: boolean): boolean {
  for (const e of crl.extensions) {
    if (e.type === DELTA_CRL_INDICATOR) return false;
    if (e.type === ISSUING_DISTRIBUTION_POINT) {
      let idp: asn1X509.IssuingDistributionPoint;
      try {
        idp = AsnConvert.parse(e.value, asn1X509.IssuingDistributionPoint);
      } catch {
        return false;
      }
      if (idp.indirectCRL || idp.onlySomeReasons !== undefined || idp.onlyContainsAttributeCerts) return false;
      if (idp.onlyContainsUserCerts && isCa) return false;
      if (idp.onlyContainsCACerts && !isCa) return false;
      continue;
    }
    if (e.critical && !UNDERSTOOD_CRITICAL_CRL.has(e.type)) return false;
  }
  return true;
}

export class CrlCache {
  readonly #config: CrlConfig;
  readonly #states: SourceState[];
  readonly #now: () => number;

  constructor(config: CrlConfig, now: () => number = Date.now) {
    this.#config = config;
    this.#now = now;
    this.#states = config.sources.map((source) => ({ source, crls: [], loadedAt: 0, lastAttempt: 0 }));
  }

  /** First load. Files must be readable (a configuration error otherwise); URLs may be down (fail closed later). */
  async init(): Promise<void> {
    await Promise.all(this.#states.map((s) => this.#load(s)));
    for (const s of this.#states) {
      if ('file' in s.source && s.lastError) throw new Error(`revocation.crl: ${label(s.source)}: ${s.lastError}`);
    }
  }

  /** Errors of the last load attempt of each source (for diagnostics). */
  errors(): string[] {
    return this.#states.flatMap((s) => (s.lastError ? [`${label(s.source)}: ${s.lastError}`] : []));
  }

  async #load(s: SourceState): Promise<void> {
    s.inflight ??= (async () => {
      s.lastAttempt = this.#now();
      try {
        const data = 'file' in s.source ? await readFile(s.source.file) : await fetchBounded(s.source.url, this.#config.timeoutMs, this.#config.maxBytes);
        if (data.length > this.#config.maxBytes) throw new Error('CRL too large');
        const crls = parseCrls(data).map((crl) => ({ crl, issuerDer: Buffer.from(crl.issuerName.toArrayBuffer()), verified: new Map<string, boolean>() }));
        s.crls = crls;
        s.loadedAt = this.#now();
        s.lastError = undefined;
      } catch (err) {
        // The last good copy stays in use while it is current.
        s.lastError = err instanceof Error ? err.message.slice(0, 200) : 'load failed';
      }
    })().finally(() => {
      s.inflight = undefined;
    });
    return s.inflight;
  }

  #due(s: SourceState, now: number): boolean {
    const c = this.#config;
    const expired = s.crls.some((l) => (l.crl.nextUpdate?.getTime() ?? Infinity) <= now);
    const refresh = s.loadedAt === 0 || expired || now - s.loadedAt >= c.refreshSeconds * 1000;
    // After a failure, a source is tried again only every retrySeconds (logins do not each wait on a dead server).
    return refresh && (s.lastAttempt === 0 || now - s.lastAttempt >= c.retrySeconds * 1000);
  }

  async #refresh(): Promise<void> {
    const now = this.#now();
    await Promise.all(this.#states.filter((s) => s.inflight !== undefined || this.#due(s, now)).map((s) => s.inflight ?? this.#load(s)));
  }

  /** Revocation status of `target`, issued by `issuer` (the next certificate of its validated path). */
  async status(target: RevocationTarget, issuer: Cert, isCa: boolean, clockSkewSeconds: number): Promise<RevocationStatus> {
    await this.#refresh();
    const now = this.#now();
    const skew = clockSkewSeconds * 1000;
    let best: LoadedCrl | undefined;
    let sawIssuer = false;
    for (const s of this.#states) {
      for (const l of s.crls) {
        if (!l.issuerDer.equals(issuer.subjectDer)) continue;
        sawIssuer = true;
        let ok = l.verified.get(issuer.sha256);
        if (ok === undefined) {
          try {
            ok = await l.crl.verify({ publicKey: issuer.px });
          } catch {
            ok = false;
          }
          l.verified.set(issuer.sha256, ok);
        }
        if (!ok || !covers(l.crl, isCa)) continue;
        if (!best || l.crl.thisUpdate > best.crl.thisUpdate) best = l;
      }
    }
    const errors = this.errors();
    const why = errors.length ? ` (${errors.join('; ')})` : '';
    if (!best) return { status: 'unknown', reason: sawIssuer ? `no usable CRL signed by the issuer${why}` : `no CRL for the issuer${why}` };
    const { thisUpdate, nextUpdate } = best.crl;
    if (thisUpdate.getTime() - skew > now) return { status: 'unknown', reason: 'CRL not yet valid' };
    const staleAt = nextUpdate ? nextUpdate.getTime() + skew : thisUpdate.getTime() + this.#config.maxAgeSeconds * 1000;
    if (staleAt < now) return { status: 'unknown', reason: `CRL is stale${why}` };
    const entry = best.crl.findRevoked(target.serial.toString('hex'));
    if (entry) {
      const reason = entry.reason !== undefined ? x509.X509CrlReason[entry.reason] : 'unspecified';
      return { status: 'revoked', reason: `certificate revoked (${reason})` };
    }
    return { status: 'good', source: 'crl' };
  }
}
