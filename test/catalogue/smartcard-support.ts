// Shared pieces of the section-4 catalogue tests (not a test file): certificates the generated test
// PKI does not hold (odd extensions, self-signed leaves, expired intermediates), and a login through
// the broker's own HTTPS listener with the test playing an HMAC-signing proxy, so every refusal is
// seen end to end: the generic 401 page, the logged reason, and no account, link or code created.
import 'reflect-metadata';
import { connect as tlsConnect } from 'node:tls';
import { expect } from 'vitest';
import * as x509 from '@peculiar/x509';
import { EKU_CLIENT_AUTH, TEST_POLICY, type Issued } from '../peers/pki.ts';
import { signForwarded } from '../../providers/smartcard/index.ts';
import { GENERIC, HMAC_SECRET, TlsBrowser, type Bed, type Outcome } from '../providers/smartcard/harness.ts';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
const crypto = globalThis.crypto;

export const UID = '0.9.2342.19200300.100.1.1';
export const EKU_SMARTCARD_LOGON = '1.3.6.1.4.1.311.20.2.2';

let serial = 0x5000;

export interface CustomLeaf {
  subject: x509.JsonName | string;
  /** Extensions as given (no defaults): the point is to send what the PKI helper would not. */
  extensions: (keys: CryptoKeyPair) => Promise<x509.Extension[]> | x509.Extension[];
  notBefore?: Date;
  notAfter?: Date;
}

async function pem(cert: x509.X509Certificate, keys: CryptoKeyPair): Promise<Issued> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  return { cert, keys, certPem: cert.toString('pem') + '\n', keyPem };
}

/** A certificate signed by `issuer` (or self-signed when `issuer` is 'self') with exactly the extensions given. */
export async function customCert(issuer: Issued | 'self', o: CustomLeaf): Promise<Issued> {
  const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
  const notBefore = o.notBefore ?? new Date(Date.now() - DAY);
  const notAfter = o.notAfter ?? new Date(Date.now() + 365 * DAY);
  const extensions = await o.extensions(keys);
  const cert =
    issuer === 'self'
      ? await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: `5c${(++serial).toString(16)}`, name: o.subject as x509.JsonName, notBefore, notAfter, keys, signingAlgorithm: ALG, extensions })
      : await x509.X509CertificateGenerator.create({
          serialNumber: `5c${(++serial).toString(16)}`,
          subject: o.subject,
          issuer: issuer.cert.subjectName,
          notBefore,
          notAfter,
          publicKey: keys.publicKey,
          signingKey: issuer.keys.privateKey,
          signingAlgorithm: ALG,
          extensions,
        });
  return pem(cert, keys);
}

/** A smartcard-like subject: CN, O, C and a UID, as the test PKI's cards have. */
export function person(cn: string, uid: string): x509.JsonName {
  return [{ C: ['GB'] }, { O: ['Test Health'] }, { CN: [cn] }, { [UID]: [uid] }];
}

/** The usual extensions of a test card, each replaceable. */
export async function cardExtensions(keys: CryptoKeyPair, issuer: Issued, o: { keyUsage?: x509.Extension | null; eku?: x509.Extension | null; sans?: x509.JsonGeneralNames } = {}): Promise<x509.Extension[]> {
  const out: x509.Extension[] = [new x509.BasicConstraintsExtension(false, undefined, true)];
  if (o.keyUsage !== null) out.push(o.keyUsage ?? new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true));
  if (o.eku !== null) out.push(o.eku ?? new x509.ExtendedKeyUsageExtension([EKU_CLIENT_AUTH], false));
  if (o.sans) out.push(new x509.SubjectAlternativeNameExtension(o.sans, false));
  out.push(new x509.CertificatePolicyExtension([TEST_POLICY], false));
  out.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey));
  out.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey));
  return out;
}

export const der = (u: Issued): Buffer => Buffer.from(u.cert.rawData);
/** RFC 9440 byte sequence of a certificate. */
export const sf = (u: Issued): string => `:${der(u).toString('base64')}:`;
export const escapedPem = (u: Issued): string => encodeURIComponent(u.certPem);

/** RFC 9440 headers as the signing proxy sends them for the request to `url`. */
export function signed9440(url: URL, cert: string, chain: string): Array<[string, string]> {
  const t = Math.floor(Date.now() / 1000);
  return [['Client-Cert', cert], ...(chain ? [['Client-Cert-Chain', chain] as [string, string]] : []), ['Client-Cert-Signature', signForwarded(HMAC_SECRET, t, `${url.pathname}${url.search}`, [cert, chain])]];
}

/** An XFCC header as a signing Envoy-like proxy sends it. */
export function signedXfcc(url: URL, value: string): Array<[string, string]> {
  return [['x-forwarded-client-cert', value], ['client-cert-signature', signForwarded(HMAC_SECRET, Math.floor(Date.now() / 1000), `${url.pathname}${url.search}`, [value])]];
}

export function refused(outcome: Outcome): void {
  expect(outcome.kind).toBe('page');
  if (outcome.kind !== 'page') return;
  expect(outcome.status).toBe(401);
  expect(outcome.html).toContain(GENERIC);
}

export interface Attempt {
  outcome: Outcome;
  login: { outcome: Outcome; verifier: string; state: string; nonce: string };
  reasons: string;
  /** Whether accounts, links and codes are what they were before the attempt. */
  unchanged: () => Promise<void>;
}

/**
 * A login through the broker where the callback request carries `headers` (built for its URL), sent
 * by `browser` (a TLS client with or without a certificate of its own).
 */
export async function attempt(bed: Bed, browser: TlsBrowser, upstream: string, headers: (url: URL) => Array<[string, string]>): Promise<Attempt> {
  const before = await bed.counts();
  const since = bed.logs.length;
  const login = await bed.login(browser, upstream, (url) => browser.get(`${bed.brokerUrl}${url.pathname}${url.search}`, headers(url)));
  return {
    outcome: login.outcome,
    login,
    reasons: bed.reasons(since).join(' | '),
    unchanged: async () => expect(await bed.counts()).toEqual(before),
  };
}

/** Asserts a refusal end to end: generic page, the logged reason, nothing created. */
export async function expectRefused(a: Attempt, reason: RegExp): Promise<void> {
  refused(a.outcome);
  expect(a.reasons).toMatch(reason);
  await a.unchanged();
}

export interface RawAnswer {
  status: number;
  headers: Array<[string, string]>;
  body: string;
}

/**
 * One request written byte for byte on its own TLS connection (header lines exactly as given, even
 * ones HTTP clients refuse to send: duplicates, a leading space, a space before the colon).
 */
export function rawTls(url: string, tlsOptions: { ca: string; cert?: Buffer; key?: Buffer }, lines: string[], jar?: Map<string, string>): Promise<RawAnswer> {
  const u = new URL(url);
  const head = [`GET ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`, ...(jar?.size ? [`Cookie: ${[...jar].map(([k, v]) => `${k}=${v}`).join('; ')}`] : []), ...lines, 'Connection: close', '', ''].join('\r\n');
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: u.hostname === 'localhost' ? '127.0.0.1' : u.hostname, port: Number(u.port), servername: u.hostname, ...tlsOptions }, () => socket.write(head));
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const [top, ...rest] = text.split('\r\n\r\n');
      const [statusLine, ...headerLines] = top.split('\r\n');
      const headers = headerLines.map((l): [string, string] => {
        const i = l.indexOf(':');
        return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
      });
      for (const [k, v] of headers) {
        if (k !== 'set-cookie' || !jar) continue;
        const [pair] = v.split(';');
        const i = pair.indexOf('=');
        jar.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
      }
      resolve({ status: Number(statusLine.split(' ')[1] ?? 0), headers, body: rest.join('\r\n\r\n') });
    });
  });
}

/** A raw answer as a fetch Response (for the bed's redirect following). */
export function asResponse(a: RawAnswer): Response {
  const headers = new Headers();
  for (const [k, v] of a.headers) if (k === 'location') headers.set(k, v);
  return new Response([204, 304].includes(a.status) ? null : a.body, { status: a.status, headers });
}
