import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { UpstreamUnavailableError } from '../../src/identity/upstream.ts';
import { NS, SamlXmlError, attr, children, descendants, instant, is, parseXml, textOf } from './xml.ts';

// The IdP's SAML metadata: entity ID, SSO and SLO endpoints, and signing certificates (several =
// key rollover: a signature by any of them is accepted). Parsed strictly and zod-checked before use.

export const BINDING = {
  redirect: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
  post: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
} as const;

const endpoint = z.strictObject({ binding: z.enum([BINDING.redirect, BINDING.post]), location: z.url() });

export const idpMetadataSchema = z.strictObject({
  entityId: z.string().min(1).max(1024),
  sso: endpoint,
  slo: endpoint.optional(),
  /** PEM certificates whose keys may sign responses and assertions. */
  signingCerts: z.array(z.string().min(1)).min(1),
  nameIdFormats: z.array(z.string()),
  wantAuthnRequestsSigned: z.boolean(),
  /** Epoch ms after which the metadata must not be used. */
  validUntil: z.number().optional(),
});
export type IdpMetadata = z.infer<typeof idpMetadataSchema>;

function toPem(base64: string): string {
  const body = base64.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw new SamlXmlError('metadata: certificate is not base64');
  const pem = `-----BEGIN CERTIFICATE-----\n${body.match(/.{1,64}/g)?.join('\n') ?? ''}\n-----END CERTIFICATE-----\n`;
  // Throws on anything that is not a certificate.
  new X509Certificate(pem);
  return pem;
}

function pickEndpoint(descriptor: Element, localName: string, allowed: string[]): z.infer<typeof endpoint> | undefined {
  const all = children(descriptor, NS.metadata, localName).map((el) => ({ binding: attr(el, 'Binding') ?? '', location: attr(el, 'Location') ?? '' }));
  // Prefer HTTP-Redirect for requests (signed query string, no page needed), then HTTP-POST.
  for (const binding of allowed) {
    const hit = all.find((e) => e.binding === binding && e.location !== '');
    if (hit) return endpoint.parse(hit);
  }
  return undefined;
}

/** Parses IdP metadata (an EntityDescriptor, or an EntitiesDescriptor with `entityId` choosing one). */
export function parseIdpMetadata(xml: string, entityId?: string, now = Date.now()): IdpMetadata {
  const doc = parseXml(xml, 'metadata');
  const root = doc.documentElement;
  let entity: Element | undefined;
  let validUntil = instant(attr(root, 'validUntil'), 'metadata validUntil');
  if (is(root, NS.metadata, 'EntityDescriptor')) entity = root;
  else if (is(root, NS.metadata, 'EntitiesDescriptor')) {
    const all = descendants(root, NS.metadata, 'EntityDescriptor').filter((e) => children(e, NS.metadata, 'IDPSSODescriptor').length > 0);
    const matching = entityId ? all.filter((e) => attr(e, 'entityID') === entityId) : all;
    if (matching.length !== 1) throw new SamlXmlError(entityId ? `metadata: IdP ${entityId} not found exactly once` : 'metadata: several IdPs; set idpEntityId');
    entity = matching[0];
  } else throw new SamlXmlError('metadata: not SAML metadata');
  const own = instant(attr(entity, 'validUntil'), 'metadata validUntil');
  if (own !== undefined) validUntil = validUntil === undefined ? own : Math.min(validUntil, own);
  if (validUntil !== undefined && validUntil <= now) throw new SamlXmlError('metadata: expired (validUntil)');
  const id = attr(entity, 'entityID');
  if (!id) throw new SamlXmlError('metadata: missing entityID');
  if (entityId && id !== entityId) throw new SamlXmlError(`metadata: entityID is ${id}, expected ${entityId}`);
  const idps = children(entity, NS.metadata, 'IDPSSODescriptor').filter((d) => (attr(d, 'protocolSupportEnumeration') ?? '').split(/\s+/).includes(NS.protocol));
  if (idps.length !== 1) throw new SamlXmlError('metadata: expected one SAML 2.0 IDPSSODescriptor');
  const idp = idps[0];
  const signingCerts: string[] = [];
  for (const kd of children(idp, NS.metadata, 'KeyDescriptor')) {
    const use = attr(kd, 'use');
    if (use !== undefined && use !== 'signing') continue;
    for (const certEl of descendants(kd, NS.dsig, 'X509Certificate')) {
      const pem = toPem(textOf(certEl, 'metadata certificate'));
      if (!signingCerts.includes(pem)) signingCerts.push(pem);
    }
  }
  const sso = pickEndpoint(idp, 'SingleSignOnService', [BINDING.redirect, BINDING.post]);
  if (!sso) throw new SamlXmlError('metadata: no SingleSignOnService with HTTP-Redirect or HTTP-POST binding');
  return idpMetadataSchema.parse({
    entityId: id,
    sso,
    slo: pickEndpoint(idp, 'SingleLogoutService', [BINDING.redirect]),
    signingCerts,
    nameIdFormats: children(idp, NS.metadata, 'NameIDFormat').map((el) => textOf(el, 'NameIDFormat').trim()),
    wantAuthnRequestsSigned: attr(idp, 'WantAuthnRequestsSigned') === 'true',
    validUntil,
  });
}

export interface MetadataSource {
  file?: string;
  url?: string;
  entityId?: string;
  refreshSeconds: number;
  allowInsecure: boolean;
}

/**
 * Holds the current IdP metadata. URL metadata is refreshed lazily (on use, at most every
 * refreshSeconds); a failed refresh keeps the last good copy until it expires, and a refresh that
 * changes the entity ID is refused (it would be a different IdP).
 */
export class IdpMetadataHolder {
  readonly #source: MetadataSource;
  #current: IdpMetadata | undefined;
  #loadedAt = 0;
  #inflight: Promise<IdpMetadata> | undefined;
  #version = 0;

  constructor(source: MetadataSource) {
    this.#source = source;
  }

  async #fetch(): Promise<string> {
    if (this.#source.file) return readFile(this.#source.file, 'utf8');
    const url = new URL(this.#source.url ?? '');
    if (url.protocol !== 'https:' && !this.#source.allowInsecure) throw new Error('IdP metadata URL must be https');
    const res = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(10_000), headers: { accept: 'application/samlmetadata+xml, application/xml, text/xml' } });
    if (!res.ok) throw new Error(`IdP metadata: HTTP ${res.status}`);
    const text = await res.text();
    if (text.length > 5 * 1024 * 1024) throw new Error('IdP metadata: too large');
    return text;
  }

  async #load(): Promise<IdpMetadata> {
    const next = parseIdpMetadata(await this.#fetch(), this.#source.entityId);
    if (this.#current && next.entityId !== this.#current.entityId) throw new Error('IdP metadata: entityID changed; refusing the update');
    if (!this.#current || JSON.stringify(next) !== JSON.stringify(this.#current)) this.#version++;
    this.#current = next;
    this.#loadedAt = Date.now();
    return next;
  }

  /** The current metadata and its version (bumped whenever endpoints or certificates change), read together. */
  snapshot(): { md: IdpMetadata; version: number } {
    if (!this.#current) throw new Error('IdP metadata not loaded');
    return { md: this.#current, version: this.#version };
  }

  async get(): Promise<IdpMetadata> {
    const stale = !this.#current || (this.#source.url !== undefined && Date.now() - this.#loadedAt > this.#source.refreshSeconds * 1000);
    if (!stale && this.#current) return this.#current;
    this.#inflight ??= this.#load().finally(() => {
      this.#inflight = undefined;
    });
    try {
      return await this.#inflight;
    } catch (err) {
      const last = this.#current;
      if (last && (last.validUntil === undefined || last.validUntil > Date.now())) {
        this.#loadedAt = Date.now();
        return last;
      }
      // No usable copy and the IdP's metadata URL failed or answered garbage: the IdP is not working (this
      // feeds its circuit breaker). A local file that fails is a configuration problem and stays as it is.
      if (this.#source.url !== undefined) throw new UpstreamUnavailableError(`IdP metadata ${this.#source.url}: ${err instanceof Error ? err.message.slice(0, 200) : 'unknown error'}`);
      throw err;
    }
  }
}
