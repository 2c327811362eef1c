import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { DatabaseSync } from 'node:sqlite';
import * as oc from 'openid-client';
import pino from 'pino';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import { SignedXml } from 'xml-crypto';
import { parseConfig } from '../../../src/config/load.ts';
import { samlUpstreamSchema, type SamlUpstreamInput } from '../../../src/config/upstream-saml.ts';
import { createBroker, type Broker } from '../../../src/server.ts';
import { openStore } from '../../../src/store/open.ts';
import type { Store } from '../../../src/store/contracts.ts';
import { createSamlConnector, type SamlConnector } from '../../../providers/saml/index.ts';
import { UpstreamAuthError, type UpstreamIdentity } from '../../../src/identity/upstream.ts';
import { REDIRECT, clientKey, testConfig } from '../../helpers/broker.ts';
import { UserAgent } from '../../helpers/browser.ts';
import { freePort } from '../../peers/ports.ts';
import { certBody, generateKeyPair, startSimpleSaml, type KeyPair, type SimpleSamlPeer } from '../../peers/simplesamlphp.ts';

// A broker on a port chosen in advance, with SAML connectors to a real SimpleSAMLphp IdP that knows
// the broker's SPs (ACS URLs and signing certificates):
//   org            the normal upstream (metadata from a file);
//   org-url        the same IdP, metadata fetched from its URL;
//   org-enc        the broker publishes an encryption key: SimpleSAMLphp 1.19 then encrypts with
//                  RSA-OAEP + AES128-CBC, which the broker must refuse;
//   org-wrongcert  the SP is configured with a different IdP signing certificate;
//   org-unsol      allows unsolicited (IdP-initiated) responses: isolates the assertion replay cache.

export const SAML_IDS = ['org', 'org-url', 'org-enc', 'org-wrongcert', 'org-unsol'] as const;
export type SamlId = (typeof SAML_IDS)[number];

export interface LogoutEvent {
  provider: string;
  subject?: string;
  sid?: string;
}

export interface SamlEnv {
  base: string;
  broker: Broker;
  server: Server;
  store: Store;
  db: DatabaseSync;
  idp: SimpleSamlPeer;
  sp: KeyPair;
  enc: KeyPair;
  connectors: Record<SamlId, SamlConnector>;
  logouts: LogoutEvent[];
  /** Reasons of refused responses (what the audit log gets), newest last. */
  failures: string[];
  /** Identities the connectors returned, newest last. */
  identities: UpstreamIdentity[];
  web: oc.Configuration;
  close(): Promise<void>;
}

function otherCertMetadata(metadataXml: string, idpCertPem: string): string {
  const other = generateKeyPair('not-the-idp');
  return metadataXml.split(certBody(idpCertPem)).join(certBody(other.certPem));
}

export async function startSamlEnv(options: { idpHost?: string } = {}): Promise<SamlEnv> {
  const port = await freePort();
  const base = `http://localhost:${port}`;
  const sp = generateKeyPair('broker-sp');
  const enc = generateKeyPair('broker-sp-encryption');
  const spFor = (id: SamlId, encrypt = false) => ({
    entityId: `${base}/upstream/${id}/metadata`,
    acsUrl: `${base}/upstream/${id}/callback`,
    sloUrl: `${base}/upstream/${id}/slo`,
    signingCertPem: sp.certPem,
    encryptionCertPem: encrypt ? enc.certPem : undefined,
  });
  const idp = await startSimpleSaml({ host: options.idpHost, sps: SAML_IDS.map((id) => spFor(id, id === 'org-enc')) });

  const dir = mkdtempSync(join(tmpdir(), 'saml-env-'));
  const wrongMetadata = join(dir, 'wrong-idp-metadata.xml');
  writeFileSync(wrongMetadata, otherCertMetadata(idp.metadataXml, idp.idp.certPem));
  const common = (id: SamlId): SamlUpstreamInput => ({
    id,
    type: 'saml',
    displayName: `Trust IdP (${id})`,
    idpMetadataFile: idp.metadataFile,
    spPrivateKey: sp.keyPem,
    spCertificate: sp.certPem,
    authnContext: { aal: { '2': ['urn:oasis:names:tc:SAML:2.0:ac:classes:Password'] }, comparison: 'minimum' },
    linkable: [],
  });
  const inputs: SamlUpstreamInput[] = [
    common('org'),
    { ...common('org-url'), idpMetadataFile: undefined, idpMetadataUrl: idp.metadataUrl },
    { ...common('org-enc'), decryptionPrivateKey: enc.keyPem, decryptionCertificate: enc.certPem },
    { ...common('org-wrongcert'), idpMetadataFile: wrongMetadata },
    { ...common('org-unsol'), allowUnsolicited: true },
  ];

  const storePath = join(dir, 'broker.db');
  const store = openStore(`sqlite:${storePath}`);
  const logouts: LogoutEvent[] = [];
  const deps = {
    issuer: base,
    replay: store.replay,
    onUpstreamLogout: async (event: LogoutEvent) => {
      logouts.push(event);
    },
    allowInsecureUpstream: true,
  };
  const connectors = {} as Record<SamlId, SamlConnector>;
  for (const input of inputs) connectors[input.id as SamlId] = await createSamlConnector(samlUpstreamSchema.parse(input), deps);

  // The broker gets the connectors wrapped, so tests can see why a response was refused.
  const failures: string[] = [];
  const identities: UpstreamIdentity[] = [];
  const observed: SamlConnector[] = Object.values(connectors).map((c) => ({
    ...c,
    async complete(ctx, tx) {
      try {
        const identity = await c.complete(ctx, tx);
        identities.push(identity);
        return identity;
      } catch (err) {
        if (err instanceof UpstreamAuthError) failures.push(err.reason);
        throw err;
      }
    },
  }));
  const svcKey = await clientKey('ES256');
  const config = parseConfig(testConfig(port, `sqlite:${storePath}`, svcKey, { upstreams: inputs }), {});
  const broker = await createBroker(config, { log: pino({ level: process.env.SAML_TEST_LOG ?? 'silent' }), env: {}, store, connectors: observed, allowInsecureUpstreams: true });
  const server = await broker.listen(port, '127.0.0.1');
  const web = await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute: [oc.allowInsecureRequests] });
  if (store.kind !== 'sqlite' || !('db' in store)) throw new Error('expected the sqlite store');
  const db = (store as Store & { db: DatabaseSync }).db;
  return {
    base,
    broker,
    server,
    store,
    db,
    idp,
    sp,
    enc,
    connectors,
    logouts,
    failures,
    identities,
    web,
    async close() {
      server.closeAllConnections();
      await broker.close();
      await store.close();
      await idp.stop();
    },
  };
}

/** What a failed login must not have created. */
export function snapshot(db: DatabaseSync): Record<string, number> {
  const count = (sql: string): number => Number((db.prepare(sql).get() as { n: number }).n);
  return {
    accounts: count('SELECT COUNT(*) AS n FROM accounts'),
    links: count('SELECT COUNT(*) AS n FROM links'),
    identifiers: count('SELECT COUNT(*) AS n FROM identifiers'),
    sessions: count("SELECT COUNT(*) AS n FROM oidc_models WHERE model = 'Session'"),
    grants: count("SELECT COUNT(*) AS n FROM oidc_models WHERE model = 'Grant'"),
    codes: count("SELECT COUNT(*) AS n FROM oidc_models WHERE model = 'AuthorizationCode'"),
  };
}

/** A browser's cookie jars: one per host, like a real browser (UserAgent alone shares one jar). */
export class Browser {
  readonly #agents = new Map<string, UserAgent>();

  agent(url: string): UserAgent {
    const host = new URL(url).host;
    let ua = this.#agents.get(host);
    if (!ua) {
      ua = new UserAgent();
      this.#agents.set(host, ua);
    }
    return ua;
  }

  get(url: string): Promise<Response> {
    return this.agent(url).get(url);
  }

  postForm(url: string, form: Record<string, string>): Promise<Response> {
    return this.agent(url).postForm(url, form);
  }
}

function htmlDecode(s: string): string {
  return s.replace(/&quot;/g, '"').replace(/&#0?39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#x2F;/gi, '/').replace(/&#x3D;/gi, '=').replace(/&#x2B;/gi, '+').replace(/&amp;/g, '&');
}

/** Hidden (and other) inputs of the first form in a page, and its action. */
export function parseForm(html: string, pageUrl: string): { action: string; fields: Record<string, string> } {
  const form = /<form\b[^>]*>[\s\S]*?<\/form>/i.exec(html);
  if (!form) throw new Error(`no form in page: ${html.slice(0, 300)}`);
  const actionMatch = /<form\b[^>]*\baction="([^"]*)"/i.exec(form[0]);
  const fields: Record<string, string> = {};
  for (const m of form[0].matchAll(/<input\b[^>]*>/gi)) {
    const name = /\bname="([^"]*)"/i.exec(m[0])?.[1];
    const value = /\bvalue="([^"]*)"/i.exec(m[0])?.[1] ?? '';
    if (name) fields[htmlDecode(name)] = htmlDecode(value);
  }
  return { action: new URL(htmlDecode(actionMatch?.[1] ?? ''), pageUrl).href, fields };
}

function location(res: Response, from: string): string {
  const loc = res.headers.get('location');
  if (!loc) throw new Error(`expected a redirect from ${from}, got ${res.status}`);
  return new URL(loc, from).href;
}

export interface PendingLogin {
  browser: Browser;
  verifier: string;
  state: string;
  nonce: string;
  /** The redirect the broker sent the browser to (the IdP's SSO URL with a SAMLRequest). */
  ssoRedirect: string;
}

/** Client -> broker authorization -> chooser -> picks the SAML upstream; stops at the redirect to the IdP. */
export async function startLogin(env: SamlEnv, upstream: SamlId, browser = new Browser()): Promise<PendingLogin> {
  const verifier = oc.randomPKCECodeVerifier();
  const state = oc.randomState();
  const nonce = oc.randomNonce();
  const auth = oc.buildAuthorizationUrl(env.web, {
    redirect_uri: REDIRECT,
    scope: 'openid profile',
    code_challenge: await oc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  let res = await browser.get(auth.href);
  const interaction = location(res, auth.href);
  res = await browser.get(interaction);
  const chooser = await res.text();
  const uid = new URL(interaction).pathname.split('/').pop() ?? '';
  const csrf = parseForm(chooser, interaction).fields.csrf;
  res = await browser.postForm(`${env.base}/interaction/${uid}/login`, { csrf, upstream });
  if (res.status !== 303) throw new Error(`chooser POST answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
  return { browser, verifier, state, nonce, ssoRedirect: location(res, env.base) };
}

export interface IdpAnswer {
  acs: string;
  SAMLResponse: string;
  RelayState: string;
}

/** At the IdP: follows its redirects, fills the username/password form, and returns the auto-POST form it answers with. */
export async function loginAtIdp(browser: Browser, ssoRedirect: string, username: string, password: string): Promise<IdpAnswer> {
  let url = ssoRedirect;
  let res = await browser.get(url);
  for (let i = 0; i < 5 && res.status >= 300 && res.status < 400; i++) {
    url = location(res, url);
    res = await browser.get(url);
  }
  let html = await res.text();
  if (!/name="password"/.test(html)) throw new Error(`expected the IdP login form at ${url}: ${res.status} ${html.slice(0, 500)}`);
  const login = parseForm(html, url);
  res = await browser.postForm(login.action, { ...login.fields, username, password });
  url = login.action;
  for (let i = 0; i < 5 && res.status >= 300 && res.status < 400; i++) {
    url = location(res, url);
    res = await browser.get(url);
  }
  html = await res.text();
  const post = parseForm(html, url);
  if (!post.fields.SAMLResponse) throw new Error(`expected the IdP's POST form: ${res.status} ${html.slice(0, 500)}`);
  return { acs: post.action, SAMLResponse: post.fields.SAMLResponse, RelayState: post.fields.RelayState };
}

/** After the ACS: follows the broker's redirects to the client's redirect URI. */
export async function followToClient(env: SamlEnv, browser: Browser, res: Response, from: string): Promise<URL> {
  let url = from;
  for (let i = 0; i < 8; i++) {
    if (res.status < 300 || res.status >= 400) throw new Error(`expected a redirect at ${url}, got ${res.status}: ${(await res.text()).slice(0, 300)}`);
    url = location(res, url);
    if (!url.startsWith(env.base)) return new URL(url);
    res = await browser.get(url);
  }
  throw new Error('too many redirects');
}

export interface Crafted {
  /** Mutates the decoded Response before it is re-signed with the IdP key. */
  mutate?: (doc: Document) => void;
  /** Sign the assertion (default true) and the response (default true). */
  signAssertion?: boolean;
  signResponse?: boolean;
  signatureAlgorithm?: string;
  digestAlgorithm?: string;
}

const SAMLP = 'urn:oasis:names:tc:SAML:2.0:protocol';
const SAML = 'urn:oasis:names:tc:SAML:2.0:assertion';
const DSIG = 'http://www.w3.org/2000/09/xmldsig#';

export function encodeResponse(doc: Document): string {
  return Buffer.from(new XMLSerializer().serializeToString(doc), 'utf8').toString('base64');
}

export function decodeResponse(samlResponse: string): Document {
  return new DOMParser().parseFromString(Buffer.from(samlResponse, 'base64').toString('utf8'), 'text/xml');
}

export function first(doc: Document | Element, ns: string, name: string): Element {
  const el = doc.getElementsByTagNameNS(ns, name)[0];
  if (!el) throw new Error(`no ${name}`);
  return el;
}

/** Re-signs a (mutated) SimpleSAMLphp response with the IdP's own key: every check but the mutated one passes. */
export function craft(samlResponse: string, idpKey: KeyPair, options: Crafted = {}): string {
  const doc = decodeResponse(samlResponse);
  for (const sig of Array.from(doc.getElementsByTagNameNS(DSIG, 'Signature'))) sig.parentNode?.removeChild(sig);
  options.mutate?.(doc);
  let xml = new XMLSerializer().serializeToString(doc);
  const sign = (target: string, issuerPath: string) => {
    const sig = new SignedXml({
      privateKey: idpKey.keyPem,
      publicCert: idpKey.certPem,
      signatureAlgorithm: options.signatureAlgorithm ?? 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
      canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#',
    });
    sig.addReference({
      xpath: target,
      transforms: ['http://www.w3.org/2000/09/xmldsig#enveloped-signature', 'http://www.w3.org/2001/10/xml-exc-c14n#'],
      digestAlgorithm: options.digestAlgorithm ?? 'http://www.w3.org/2001/04/xmlenc#sha256',
    });
    sig.computeSignature(xml, { location: { reference: issuerPath, action: 'after' } });
    xml = sig.getSignedXml();
  };
  if (options.signAssertion !== false) sign("/*[local-name(.)='Response']/*[local-name(.)='Assertion']", "/*[local-name(.)='Response']/*[local-name(.)='Assertion']/*[local-name(.)='Issuer']");
  if (options.signResponse !== false) sign("/*[local-name(.)='Response']", "/*[local-name(.)='Response']/*[local-name(.)='Issuer']");
  return Buffer.from(xml, 'utf8').toString('base64');
}

export const XML_NS = { SAMLP, SAML, DSIG };
