import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { SmartcardProxyConfig } from '../../src/config/upstream-smartcard.ts';
import { CertificateFormatError, pemBlocks } from './cert.ts';

// The certificate as a TLS-terminating proxy forwards it, in the three forms in use:
//   rfc9440  Client-Cert: :<base64 DER>:            Client-Cert-Chain: :<b64>:, :<b64>:
//   nginx    X-SSL-Client-Cert: <$ssl_client_escaped_cert, URL-encoded PEM>   (+ $ssl_client_verify)
//   xfcc     x-forwarded-client-cert: By=…;Hash=<hex sha256>;Cert="<URL-encoded PEM>";Chain="…"
// Every header is bounded before it is parsed, must appear once, and must hold exactly one
// certificate in exactly the configured form. Anything else is refused, never guessed at.

export class ForwardedHeaderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForwardedHeaderError';
  }
}

export interface ForwardedCertificate {
  leaf: Buffer;
  /** Certificates the proxy forwarded besides the leaf (untrusted; only for path building). */
  chain: Buffer[];
}

const MAX_CHAIN = 8;

/** Values of header `name` (lower case) in the order received, from Node's rawHeaders. */
export function headerValues(rawHeaders: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (rawHeaders[i].toLowerCase() === name) out.push(rawHeaders[i + 1]);
  return out;
}

/**
 * A header that a proxy or framework could confuse with one of `names`: the same name with
 * underscores (x_ssl_client_cert), which some stacks fold into dashes. Its presence is ambiguous.
 */
export function lookalikeHeader(rawHeaders: readonly string[], names: readonly string[]): string | undefined {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const raw = rawHeaders[i].toLowerCase();
    if (raw.includes('_') && names.includes(raw.replace(/_/g, '-'))) return raw;
  }
  return undefined;
}

/** The single value of a header, bounded; undefined when absent. */
export function single(rawHeaders: readonly string[], name: string, maxBytes: number): string | undefined {
  const values = headerValues(rawHeaders, name);
  if (values.length === 0) return undefined;
  if (values.length > 1) throw new ForwardedHeaderError(`header ${name} appears ${values.length} times`);
  if (Buffer.byteLength(values[0], 'latin1') > maxBytes) throw new ForwardedHeaderError(`header ${name} is larger than ${maxBytes} bytes`);
  return values[0];
}

// RFC 8941 Byte Sequence: ":" base64 ":" (no parameters are defined for Client-Cert).
const sfBinary = z
  .string()
  .regex(/^:[A-Za-z0-9+/]+={0,2}:$/)
  .refine((v) => (v.length - 2) % 4 === 0)
  .transform((v) => Buffer.from(v.slice(1, -1), 'base64'));

// URL-encoded PEM: visible ASCII only (a raw PEM with spaces and newlines is not this form).
const urlEncodedPem = z
  .string()
  .regex(/^[\x21-\x7e]+$/)
  .transform((v, ctx) => {
    try {
      return decodeURIComponent(v);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'bad URL encoding' });
      return z.NEVER;
    }
  })
  .refine((v) => v.includes('-----BEGIN CERTIFICATE-----'), 'not a PEM certificate');

const nginxVerify = z.literal('SUCCESS');

function pemCerts(text: string, max: number, what: string): Buffer[] {
  try {
    return pemBlocks(text, max);
  } catch (err) {
    if (err instanceof CertificateFormatError) throw new ForwardedHeaderError(`${what}: ${max === 1 && /more than/.test(err.message) ? 'several certificates in one header' : err.message}`);
    throw err;
  }
}

function parseRfc9440(value: string, chainValue: string | undefined): ForwardedCertificate {
  if (value.includes(',')) throw new ForwardedHeaderError('several certificates in one Client-Cert header');
  const leaf = sfBinary.safeParse(value.trim());
  if (!leaf.success) throw new ForwardedHeaderError('Client-Cert is not an RFC 9440 byte sequence');
  const chain: Buffer[] = [];
  if (chainValue !== undefined && chainValue.trim() !== '') {
    const items = chainValue.split(',').map((s) => s.trim());
    if (items.length > MAX_CHAIN) throw new ForwardedHeaderError('Client-Cert-Chain is too long');
    for (const item of items) {
      const parsed = sfBinary.safeParse(item);
      if (!parsed.success) throw new ForwardedHeaderError('Client-Cert-Chain is not a list of byte sequences');
      chain.push(parsed.data);
    }
  }
  return { leaf: leaf.data, chain };
}

function parseNginx(value: string, verify: string | undefined, verifyHeader: string | undefined): ForwardedCertificate {
  if (verifyHeader !== undefined) {
    // CC-04: with ssl_verify_client optional(_no_ca) the proxy forwards failed certificates too.
    if (verify === undefined) throw new ForwardedHeaderError(`proxy sent no ${verifyHeader}`);
    if (!nginxVerify.safeParse(verify).success) throw new ForwardedHeaderError(`proxy reports client verification ${verify.slice(0, 80)}`);
  }
  const pem = urlEncodedPem.safeParse(value);
  if (!pem.success) throw new ForwardedHeaderError('certificate header is not a URL-encoded PEM certificate');
  return { leaf: pemCerts(pem.data, 1, 'certificate header')[0], chain: [] };
}

// ---- Envoy x-forwarded-client-cert -------------------------------------------------------------

/** Splits XFCC into elements of key/value pairs, honouring double quotes (values may hold , ; =). */
export function tokenizeXfcc(value: string): Array<Array<[string, string]>> {
  const elements: Array<Array<[string, string]>> = [];
  let pairs: Array<[string, string]> = [];
  let key = '';
  let val = '';
  let inValue = false;
  let quoted = false;
  let wasQuoted = false;
  const endPair = () => {
    if (!inValue) {
      if (key.trim() === '') throw new ForwardedHeaderError('XFCC: empty element or pair');
      throw new ForwardedHeaderError('XFCC: pair without =');
    }
    const k = key.trim();
    if (!/^[A-Za-z]{1,16}$/.test(k)) throw new ForwardedHeaderError('XFCC: bad key');
    pairs.push([k, wasQuoted ? val : val.trim()]);
    key = '';
    val = '';
    inValue = false;
    wasQuoted = false;
  };
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (quoted) {
      if (ch === '\\' && i + 1 < value.length) val += value[++i];
      else if (ch === '"') quoted = false;
      else val += ch;
      continue;
    }
    if (!inValue) {
      if (ch === '=') inValue = true;
      else if (ch === ';' || ch === ',') throw new ForwardedHeaderError('XFCC: pair without =');
      else key += ch;
      continue;
    }
    if (ch === '"') {
      if (val.trim() !== '' || wasQuoted) throw new ForwardedHeaderError('XFCC: misplaced quote');
      quoted = true;
      wasQuoted = true;
      val = '';
    } else if (ch === ';') {
      endPair();
    } else if (ch === ',') {
      endPair();
      elements.push(pairs);
      pairs = [];
    } else {
      if (wasQuoted && ch.trim() !== '') throw new ForwardedHeaderError('XFCC: text after a quoted value');
      val += ch;
    }
  }
  if (quoted) throw new ForwardedHeaderError('XFCC: unterminated quote');
  endPair();
  elements.push(pairs);
  return elements;
}

const once = <T extends z.ZodType>(t: T) => z.array(t).length(1);
const xfccElement = z.strictObject({
  by: once(z.string().min(1)).optional(),
  hash: once(z.string().regex(/^[0-9a-fA-F]{64}$/)).optional(),
  cert: once(urlEncodedPem),
  chain: once(urlEncodedPem).optional(),
  subject: once(z.string()).optional(),
  uri: z.array(z.string()).optional(),
  dns: z.array(z.string()).optional(),
});

function parseXfcc(value: string, acceptedBy: string[] | undefined): ForwardedCertificate {
  const elements = tokenizeXfcc(value);
  // CC-16: one element, from our own proxy. Several mean a chain of proxies or an injected element.
  if (elements.length !== 1) throw new ForwardedHeaderError(`XFCC has ${elements.length} elements`);
  const grouped: Record<string, string[]> = {};
  for (const [k, v] of elements[0]) (grouped[k.toLowerCase()] ??= []).push(v);
  const parsed = xfccElement.safeParse(grouped);
  if (!parsed.success) throw new ForwardedHeaderError(`XFCC element not understood (${parsed.error.issues.map((i) => i.path.join('.') || i.message).join(', ').slice(0, 120)})`);
  const e = parsed.data;
  if (acceptedBy && !(e.by && acceptedBy.includes(e.by[0]))) throw new ForwardedHeaderError('XFCC By= is not this broker');
  const leaf = pemCerts(e.cert[0], 1, 'XFCC Cert')[0];
  // CC-17: the hash the proxy computed must be of the certificate it forwarded.
  if (e.hash && createHash('sha256').update(leaf).digest('hex') !== e.hash[0].toLowerCase()) throw new ForwardedHeaderError('XFCC Hash does not match Cert');
  // Envoy's Chain= includes the leaf.
  const chain = e.chain ? pemCerts(e.chain[0], MAX_CHAIN, 'XFCC Chain').filter((c) => !c.equals(leaf)) : [];
  return { leaf, chain };
}

/** Names of the headers this proxy configuration reads (their presence means "a proxy forwarded a certificate"). */
export function certificateHeaders(proxy: SmartcardProxyConfig): string[] {
  return [proxy.header, proxy.chainHeader, proxy.verifyHeader].filter((h): h is string => h !== undefined);
}

/** The raw values the proxy signs (HMAC), in a fixed order: certificate, chain, verify status. */
export function signedHeaderValues(rawHeaders: readonly string[], proxy: SmartcardProxyConfig): string[] {
  return certificateHeaders(proxy).map((h) => single(rawHeaders, h, h === proxy.header ? proxy.maxHeaderBytes : proxy.maxChainHeaderBytes) ?? '');
}

/** The forwarded certificate, or undefined when the proxy forwarded none. */
export function readForwarded(rawHeaders: readonly string[], proxy: SmartcardProxyConfig): ForwardedCertificate | undefined {
  const limit = proxy.format === 'xfcc' ? Math.max(proxy.maxHeaderBytes, proxy.maxChainHeaderBytes) : proxy.maxHeaderBytes;
  const value = single(rawHeaders, proxy.header, limit);
  const chain = proxy.chainHeader ? single(rawHeaders, proxy.chainHeader, proxy.maxChainHeaderBytes) : undefined;
  const verify = proxy.verifyHeader ? single(rawHeaders, proxy.verifyHeader, 256) : undefined;
  if (value === undefined || value.trim() === '') {
    if (chain !== undefined) throw new ForwardedHeaderError('a chain without a certificate');
    return undefined;
  }
  switch (proxy.format) {
    case 'rfc9440':
      return parseRfc9440(value, chain);
    case 'nginx':
      return parseNginx(value, verify, proxy.verifyHeader);
    case 'xfcc':
      return parseXfcc(value, proxy.xfccBy);
  }
}
