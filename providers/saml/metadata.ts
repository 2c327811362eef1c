import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { UpstreamUnavailableError } from '../../src/identity/upstream.ts';
import { NS, SamlXmlError, attr, children, descendants, instant, is, parseXml, textOf } from './xml.ts';

// The IdP's SAML metadata: entity ID, SSO and SLO endpoints, and signing certificates (several =
// key rollover: a signature by any of them is accepted). Parsed strictly and zod-checked before use.

/** A metadata source that cannot be right whatever the IdP does (another IdP, plain http): configuration, not an outage. */
export class IdpMetadataConfigError extends SamlXmlError {}

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
    if (matching.length !== 1) throw new IdpMetadataConfigError(entityId ? `metadata: IdP ${entityId} not found exactly once` : 'metadata: several IdPs; set idpEntityId');
    entity = matching[0];
  } else throw new SamlXmlError('metadata: not SAML metadata');
  const own = instant(attr(entity, 'validUntil'), 'metadata validUntil');
  if (own !== undefined) validUntil = validUntil === undefined ? own : Math.min(validUntil, own);
  if (validUntil !== undefined && validUntil <= now) throw new SamlXmlError('metadata: expired (validUntil)');
  const id = attr(entity, 'entityID');
  if (!id) throw new SamlXmlError('metadata: missing entityID');
  if (entityId && id !== entityId) throw new IdpMetadataConfigError(`metadata: entityID is ${id}, expected ${entityId}`);
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

/** Waits between attempts to load metadata while there is no usable copy: 2 s, doubling, at most a minute. */
const FIRST_RETRY_MS = 2000;
const MAX_RETRY_MS = 60_000;

function describe(err: unknown): string {
  return err instanceof Error ? err.message.slice(0, 200) : 'unknown error';
}

function usable(md: IdpMetadata | undefined, now: number): md is IdpMetadata {
  return md !== undefined && (md.validUntil === undefined || md.validUntil > now);
}

/**
 * Holds the current IdP metadata. URL metadata is refreshed lazily (on use, at most every
 * refreshSeconds); a failed refresh keeps the last good copy until it expires, and a refresh that
 * changes the entity ID is refused (it would be a different IdP). A copy past its validUntil is never
 * used (SAML 2.0 metadata 2.3.1, 2.3.2): it is reloaded at once, whatever the refresh interval, and while no
 * unexpired copy can be had the IdP is unavailable (UpstreamUnavailableError: the circuit breaker and
 * the "not responding" page). Attempts then back off, so a dead metadata URL is not asked on every login.
 */
export class IdpMetadataHolder {
  readonly #source: MetadataSource;
  #current: IdpMetadata | undefined;
  #loadedAt = 0;
  #inflight: Promise<IdpMetadata> | undefined;
  #version = 0;
  /** Attempts failed in a row while there was no unexpired copy, and when the next may be made. */
  #failures = 0;
  #retryAt = 0;
  #lastError: unknown;

  constructor(source: MetadataSource) {
    this.#source = source;
  }

  get #where(): string {
    return this.#source.url ?? this.#source.file ?? '(none)';
  }

  async #fetch(): Promise<string> {
    if (this.#source.file) return readFile(this.#source.file, 'utf8');
    const url = new URL(this.#source.url ?? '');
    if (url.protocol !== 'https:' && !this.#source.allowInsecure) throw new IdpMetadataConfigError('IdP metadata URL must be https');
    const res = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(10_000), headers: { accept: 'application/samlmetadata+xml, application/xml, text/xml' } });
    if (!res.ok) throw new Error(`IdP metadata: HTTP ${res.status}`);
    const text = await res.text();
    if (text.length > 5 * 1024 * 1024) throw new Error('IdP metadata: too large');
    return text;
  }

  async #load(): Promise<IdpMetadata> {
    const next = parseIdpMetadata(await this.#fetch(), this.#source.entityId);
    if (this.#current && next.entityId !== this.#current.entityId) throw new IdpMetadataConfigError('IdP metadata: entityID changed; refusing the update');
    if (!this.#current || JSON.stringify(next) !== JSON.stringify(this.#current)) this.#version++;
    this.#current = next;
    this.#loadedAt = Date.now();
    this.#failures = 0;
    this.#retryAt = 0;
    return next;
  }

  /** The current metadata and its version (bumped whenever endpoints or certificates change), read together. */
  snapshot(): { md: IdpMetadata; version: number } {
    if (!usable(this.#current, Date.now())) throw new UpstreamUnavailableError(`IdP metadata ${this.#where}: no unexpired copy`);
    return { md: this.#current, version: this.#version };
  }

  /**
   * Loads the metadata for start-up. A wrong configuration (a local file that cannot be read or parsed,
   * metadata naming another IdP) throws; an IdP whose metadata URL is down or answers garbage does not:
   * the upstream starts unavailable (the reason is returned) and get() keeps trying, with back-off,
   * until the metadata arrives.
   */
  async start(): Promise<string | undefined> {
    try {
      await this.get();
      return undefined;
    } catch (err) {
      const cause = this.#lastError;
      if (this.#source.url === undefined || cause instanceof IdpMetadataConfigError || !(err instanceof UpstreamUnavailableError)) throw cause ?? err;
      return err.reason;
    }
  }

  async get(): Promise<IdpMetadata> {
    const now = Date.now();
    const current = this.#current;
    const valid = usable(current, now);
    const due = !valid || (this.#source.url !== undefined && now - this.#loadedAt > this.#source.refreshSeconds * 1000);
    if (!due) return current;
    if (!valid && now < this.#retryAt) {
      const wait = Math.ceil((this.#retryAt - now) / 1000);
      throw new UpstreamUnavailableError(`IdP metadata ${this.#where}: ${describe(this.#lastError)}; next attempt in ${wait} s`, wait);
    }
    this.#inflight ??= this.#load()
      .catch((err: unknown) => {
        // Counted once per attempt, however many logins were waiting on it.
        this.#lastError = err;
        if (!usable(this.#current, Date.now())) {
          this.#failures++;
          this.#retryAt = Date.now() + Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (this.#failures - 1));
        }
        throw err;
      })
      .finally(() => {
        this.#inflight = undefined;
      });
    try {
      return await this.#inflight;
    } catch (err) {
      const last = this.#current;
      if (usable(last, Date.now())) {
        this.#loadedAt = Date.now();
        return last;
      }
      // A local file that fails before any copy was loaded is a configuration problem and stays as it is.
      if (this.#source.url === undefined && last === undefined) throw err;
      // No unexpired copy: the IdP is not working (this feeds its circuit breaker) until one arrives.
      const wait = Math.max(1, Math.ceil((this.#retryAt - Date.now()) / 1000));
      throw new UpstreamUnavailableError(`IdP metadata ${this.#where}: ${last ? 'expired, and no fresh copy: ' : ''}${describe(err)}`, wait);
    }
  }
}
