import { TLSSocket, type DetailedPeerCertificate } from 'node:tls';
import type { Context } from 'koa';
import { UpstreamAuthError, type Connector, type ConnectorDeps, type LoginRequest, type SessionRechecker, type UpstreamIdentity } from '../../src/identity/upstream.ts';
import type { SmartcardUpstreamConfig } from '../../src/config/upstream-smartcard.ts';
import { CertificateFormatError, parseDer, readBundle, type Cert } from './cert.ts';
import { CrlCache } from './crl.ts';
import { OcspClient } from './ocsp.ts';
import { certificateHeaders, ForwardedHeaderError, headerValues, lookalikeHeader, readForwarded, signedHeaderValues } from './headers.ts';
import { PathError, validatePath, type CertPath } from './path.ts';
import { createProxyAuthenticator, ProxyAuthError, type HopInfo, type ProxyAuthenticator } from './proxy-auth.ts';
import { claimsOf, SubjectError, subjectOf } from './identity.ts';
import { pathStatus, targetOf } from './revocation.ts';
import { recheckOf, sessionRechecker } from './session-recheck.ts';

export { signForwarded, signatureBase, SIGNATURE_VERSION } from './proxy-auth.ts';

// The smartcard / client-certificate connector. `begin` sends the browser straight to the broker's
// callback; on that request the certificate is either on the TLS connection itself (direct mutual
// TLS) or in a header set by a TLS-terminating proxy. The header is believed only from a proxy that
// authenticated itself on this hop; found anywhere else it is refused as spoofing (and audited by the
// broker through UpstreamAuthError). Whoever forwarded it, the certificate is then validated here:
// path to a configured CA, times with skew, key usage, EKU, policies, revocation (CRL, OCSP).

/** Certificate headers in common use: found on a request that is not from our proxy, they are a spoofing attempt. */
const WELL_KNOWN_HEADERS = [
  'client-cert',
  'client-cert-chain',
  'x-ssl-client-cert',
  'x-ssl-client-escaped-cert',
  'x-ssl-client-verify',
  'ssl-client-cert',
  'ssl-client-verify',
  'x-client-cert',
  'x-client-certificate',
  'x-forwarded-client-cert',
  'x-amzn-mtls-clientcert',
  'x-amzn-mtls-clientcert-leaf',
  'x-arr-clientcert',
];

export interface SmartcardConnectorOptions {
  /** Clock (ms since the epoch); tests move it. */
  now?: () => number;
  /** Told when revocation could not be established and fail-open let the login through. */
  onRevocationUnknown?: (reason: string) => void;
}

export interface SmartcardConnector extends Connector {
  readonly kind: 'smartcard';
  readonly sessionRecheck: SessionRechecker;
}

function refuse(reason: string): never {
  throw new UpstreamAuthError(reason);
}

/** The TLS peer's chain (leaf first) as Node reports it; undefined without TLS or without a certificate. */
function peerChainOf(ctx: Context): Buffer[] | undefined {
  const socket = ctx.req.socket;
  if (!(socket instanceof TLSSocket)) return undefined;
  const peer: Partial<DetailedPeerCertificate> = socket.getPeerCertificate(true);
  if (!peer.raw || !Buffer.isBuffer(peer.raw)) return undefined;
  const chain = [peer.raw];
  let current = peer;
  while (current.issuerCertificate && current.issuerCertificate !== current && chain.length < 10) {
    current = current.issuerCertificate;
    if (!current.raw || chain.some((c) => c.equals(current.raw as Buffer))) break;
    chain.push(current.raw);
  }
  return chain;
}

export function hopOf(ctx: Context): HopInfo {
  return { remoteAddress: ctx.req.socket.remoteAddress, peerChain: peerChainOf(ctx), rawHeaders: ctx.req.rawHeaders, url: ctx.originalUrl };
}

export async function createSmartcardConnector(config: SmartcardUpstreamConfig, deps: ConnectorDeps, options: SmartcardConnectorOptions = {}): Promise<SmartcardConnector> {
  const now = options.now ?? Date.now;
  const anchors = await readBundle(config.trust.caFile);
  const intermediates = config.trust.intermediatesFile ? await readBundle(config.trust.intermediatesFile) : [];
  const crls = config.revocation.crl ? new CrlCache(config.revocation.crl, now) : undefined;
  await crls?.init();
  const ocsp = config.revocation.ocsp ? new OcspClient(config.revocation.ocsp, now) : undefined;
  const proxy = config.proxy;
  const authenticator: ProxyAuthenticator | undefined = proxy ? await createProxyAuthenticator(proxy, deps.replay, readBundle, now) : undefined;
  const proxyHeaders = proxy ? [...certificateHeaders(proxy), ...(proxy.authentication.hmac ? [proxy.authentication.hmac.header] : [])] : [];
  const watched = [...new Set([...WELL_KNOWN_HEADERS, ...proxyHeaders])];

  /** The user's certificate and any chain sent with it, from the proxy's header or from the TLS connection. */
  async function presented(hop: HopInfo): Promise<{ leaf: Buffer; chain: Buffer[]; via: string }> {
    const present = watched.filter((h) => headerValues(hop.rawHeaders, h).length > 0);
    const lookalike = lookalikeHeader(hop.rawHeaders, watched);
    // Two copies of a certificate header: which one is the proxy's? Refused whoever sent them (CC-02).
    const doubled = present.find((h) => headerValues(hop.rawHeaders, h).length > 1);
    if (doubled) refuse(`ambiguous: header ${doubled} appears ${headerValues(hop.rawHeaders, doubled).length} times`);
    if (proxy && authenticator && (present.length > 0 || lookalike)) {
      let method: string;
      try {
        ({ method } = await authenticator.authenticate(hop, () => signedHeaderValues(hop.rawHeaders, proxy)));
      } catch (err) {
        if (err instanceof ProxyAuthError || err instanceof ForwardedHeaderError) refuse(`spoofing suspected: certificate header from an unauthenticated source (${err.message})`);
        throw err;
      }
      // x_ssl_client_cert beside x-ssl-client-cert: some stacks fold one into the other.
      if (lookalike) refuse(`ambiguous certificate header ${lookalike}`);
      // Other well-known certificate headers from the authenticated proxy are never read (only the
      // configured ones are), so they cannot change whom the login is for.
      let forwarded;
      try {
        forwarded = readForwarded(hop.rawHeaders, proxy);
      } catch (err) {
        if (err instanceof ForwardedHeaderError) refuse(`forwarded certificate refused: ${err.message}`);
        throw err;
      }
      if (!forwarded) refuse('the proxy forwarded no client certificate (none presented, or verification status only)');
      return { ...forwarded, via: `proxy-${method}` };
    }
    if (present.length > 0 || lookalike) {
      refuse(`spoofing suspected: certificate header(s) ${[...present, ...(lookalike ? [lookalike] : [])].join(', ')} not set by an authenticated proxy`);
    }
    if (authenticator?.isProxyCertificate(hop.peerChain)) refuse('the proxy forwarded no client certificate');
    if (!config.direct) refuse('no client certificate: this sign-in needs the smartcard proxy');
    if (!hop.peerChain) refuse('no client certificate presented');
    return { leaf: hop.peerChain[0], chain: hop.peerChain.slice(1), via: 'direct' };
  }

  const sources = { config, crls, ocsp };
  /** Fail-open is an explicit choice; it must still be visible. */
  const revocationUnknown = (reason: string): void => {
    if (options.onRevocationUnknown) options.onRevocationUnknown(reason);
    else process.emitWarning(`${config.id}: ${reason} (failOpen: login allowed)`, 'SmartcardRevocationWarning');
  };

  async function checkRevocation(path: CertPath): Promise<void> {
    const status = await pathStatus(targetOf(path[0]), path.slice(1), sources);
    if (status.status === 'revoked') refuse(status.reason);
    if (status.status === 'unknown') {
      if (!config.revocation.failOpen) refuse(status.reason);
      revocationUnknown(status.reason);
    }
  }

  function parseAll(leaf: Buffer, chain: Buffer[]): { leaf: Cert; chain: Cert[] } {
    try {
      return { leaf: parseDer(leaf), chain: chain.map(parseDer) };
    } catch (err) {
      if (err instanceof CertificateFormatError) refuse(`malformed certificate: ${err.message}`);
      throw err;
    }
  }

  async function verify(leafDer: Buffer, chainDer: Buffer[], via: string): Promise<UpstreamIdentity> {
    const { leaf, chain } = parseAll(leafDer, chainDer);
    let path: CertPath;
    try {
      path = validatePath(leaf, {
        anchors,
        intermediates: [...intermediates, ...chain],
        now: new Date(now()),
        clockSkewSeconds: config.trust.clockSkewSeconds,
        maxPathLength: config.trust.maxPathLength,
        extendedKeyUsages: config.trust.extendedKeyUsages,
        policies: config.trust.policies,
      });
    } catch (err) {
      if (err instanceof PathError) refuse(err.message);
      throw err;
    }
    await checkRevocation(path);
    let subject: string;
    try {
      subject = subjectOf(leaf, path[1], config.subject);
    } catch (err) {
      if (err instanceof SubjectError) refuse(err.message);
      throw err;
    }
    return {
      provider: config.id,
      subject,
      claims: { ...claimsOf(leaf), cert_presented_via: via },
      assurance: { acr: config.assurance.acr, amr: [...config.assurance.amr], aal: config.assurance.aal },
      // The certificate was presented (its key used in a TLS handshake) for this request.
      authTime: Math.floor(now() / 1000),
      recheck: recheckOf(path),
    };
  }

  return {
    id: config.id,
    displayName: config.displayName,
    kind: 'smartcard',
    sessionRecheck: sessionRechecker(config, sources, now, revocationUnknown),

    async begin(ctx: Context, request: LoginRequest): Promise<Record<string, string>> {
      // The certificate travels with the browser's next request (TLS or proxy header): go straight back.
      const url = new URL(request.callbackUrl);
      url.searchParams.set('state', request.transactionId);
      ctx.status = 303;
      ctx.redirect(url.href);
      return { startedAt: String(now()) };
    },

    async complete(ctx: Context): Promise<UpstreamIdentity> {
      const hop = hopOf(ctx);
      const { leaf: leafDer, chain: chainDer, via } = await presented(hop);
      try {
        return await verify(leafDer, chainDer, via);
      } catch (err) {
        if (err instanceof UpstreamAuthError) throw err;
        // A certificate the libraries cannot digest (an odd extension in a forwarded chain) is a
        // refusal, never a 500.
        refuse(`certificate could not be processed (${err instanceof Error ? err.message.slice(0, 120) : 'error'})`);
      }
    },
  };
}
