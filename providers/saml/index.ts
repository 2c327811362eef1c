import { AsyncLocalStorage } from 'node:async_hooks';
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Context } from 'koa';
import { z } from 'zod';
import { ValidateInResponseTo, type CacheProvider, type PassportSamlConfig, type Profile } from '@node-saml/passport-saml';
import { decryptXml, getVerifiedXml } from '@node-saml/node-saml/lib/xml.js';
import { UpstreamAuthError, UpstreamUnavailableError, type Connector, type ConnectorDeps, type LoginRequest, type LoginTransaction, type UpstreamIdentity } from '../../src/identity/upstream.ts';
import { nameIdFormatUrn, type SamlUpstreamConfig } from '../../src/config/upstream-saml.ts';
import { readForm } from '../../src/web/form.ts';
import { h, layout } from '../../src/web/html.ts';
import { BINDING, IdpMetadataHolder, type IdpMetadata } from './metadata.ts';
import { PassportSaml } from './strategy.ts';
import { buildSpMetadata } from './sp-metadata.ts';
import { parseXml } from './xml.ts';
import { checkDecryptedAssertion, checkEnvelope } from './checks/envelope.ts';
import { checkEncryptionAlgorithms, checkSignatureAlgorithms } from './checks/algorithms.ts';
import { checkResponse } from './checks/response.ts';
import { checkAssertion, type CheckedAssertion } from './checks/assertion.ts';
import type { Clock } from './checks/times.ts';
import { handleSingleLogout } from './logout.ts';

// The upstream SAML 2.0 connector. node-saml (through the passport-saml Strategy) verifies signatures,
// decrypts, and checks times and audience; this connector adds what node-saml leaves out and binds
// the answer to the browser's login transaction:
//   before node-saml: strict XML (no DOCTYPE), one assertion as a direct child, unique IDs, signatures
//     only on Response/Assertion with one reference to their parent, SHA-2 only, RSA-OAEP + AES-GCM only;
//   node-saml: signatures against the IdP metadata certificates, decryption, audience, times,
//     InResponseTo through a cache provider that knows only this transaction's request id;
//   after node-saml, on the signed XML: Destination, Issuer (response and assertion), bearer
//     confirmation with Recipient = ACS and InResponseTo = the request id stored with the transaction,
//     every AudienceRestriction, NameID format, then the assertion-ID replay cache.
// Every failure is an UpstreamAuthError: the user sees one generic page, the reason goes to the log.

export const SAML_RESPONSE_LIMIT = 512 * 1024;
const TX_LIFETIME_MS = 600_000;

export interface SamlLogoutSession {
  /** The NameID the IdP asserted (UpstreamIdentity.subject). */
  subject: string;
  sessionIndex?: string;
  relayState?: string;
}

export interface SamlConnector extends Connector {
  readonly kind: 'saml';
  /** The SP entity ID the IdP knows the broker by. */
  readonly entityId: string;
  readonly acsUrl: string;
  readonly sloUrl: string;
  /** The broker's signed SP metadata for this IdP. */
  spMetadata(): string;
  /**
   * SP-initiated single logout: the URL to send the browser to (a signed LogoutRequest), or undefined
   * when the IdP has no HTTP-Redirect SLO endpoint or single logout is switched off.
   */
  logoutUrl(session: SamlLogoutSession): Promise<string | undefined>;
}

interface CallContext {
  /** The AuthnRequest / LogoutRequest ID to generate. */
  requestId?: string;
  /** The request this response must answer (from the login transaction). */
  expected?: { requestId: string; issuedAt: string };
}

interface Variant {
  classRefs?: string[];
  force: boolean;
  /** Builds logout messages (always HTTP-Redirect, so always DEFLATEd). */
  logout?: boolean;
}

// RFC 8176 method references for the standard SAML authentication context classes.
const AMR: Record<string, string[]> = {
  'urn:oasis:names:tc:SAML:2.0:ac:classes:Password': ['pwd'],
  'urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport': ['pwd'],
  'urn:oasis:names:tc:SAML:2.0:ac:classes:Smartcard': ['sc'],
  'urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI': ['sc', 'hwk'],
  'urn:oasis:names:tc:SAML:2.0:ac:classes:SoftwarePKI': ['swk'],
  'urn:oasis:names:tc:SAML:2.0:ac:classes:X509': ['swk'],
  'urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient': ['swk'],
  'urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken': ['otp'],
  'urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract': ['mfa'],
  'urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorUnregistered': ['mfa'],
};

const identitySchema = z.strictObject({
  provider: z.string().min(1),
  subject: z.string().min(1).max(1024),
  claims: z.record(z.string(), z.union([z.string(), z.array(z.string())])),
  assurance: z.strictObject({ acr: z.string().optional(), amr: z.array(z.string()).optional(), aal: z.number().int().min(1).max(3).optional() }),
  authTime: z.number().int().positive(),
  sessionIndex: z.string().min(1).max(1024).optional(),
});

const txStateSchema = z.object({
  requestId: z.string().regex(/^_[0-9a-f]{40}$/),
  issuedAt: z.string().min(1),
  maxAge: z.string().regex(/^\d+$/).optional(),
});

async function pemFrom(file: string | undefined, inline: string | undefined): Promise<string | undefined> {
  if (inline !== undefined) return inline;
  if (file !== undefined) return readFile(file, 'utf8');
  return undefined;
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function newRequestId(): string {
  return `_${randomBytes(20).toString('hex')}`;
}

export async function createSamlConnector(config: SamlUpstreamConfig, deps: ConnectorDeps): Promise<SamlConnector> {
  const id = config.id;
  const base = `/upstream/${id}`;
  // The broker serves connector routes from the root of its origin (src/oidc/interactions.ts).
  const acsUrl = new URL(`${base}/callback`, deps.issuer).href;
  const sloUrl = new URL(`${base}/slo`, deps.issuer).href;
  const spEntityId = config.entityId ?? new URL(`${base}/metadata`, deps.issuer).href;
  const nameIdFormat = nameIdFormatUrn(config.nameIdFormat);
  const skewMs = config.clockSkew * 1000;

  const spKeyPem = await pemFrom(config.spPrivateKeyFile, config.spPrivateKey);
  const spCertPem = await pemFrom(config.spCertificateFile, config.spCertificate);
  if (!spKeyPem || !spCertPem) throw new Error(`upstream ${id}: SP key and certificate are required`);
  const spKey: string = spKeyPem;
  const spCert: string = spCertPem;
  const spKeyObject = createPrivateKey(spKey);
  if (spKeyObject.asymmetricKeyType !== 'rsa') throw new Error(`upstream ${id}: the SP signing key must be RSA`);
  if (!new X509Certificate(spCert).checkPrivateKey(spKeyObject)) throw new Error(`upstream ${id}: SP key and certificate do not match`);
  const decryptionKey = await pemFrom(config.decryptionPrivateKeyFile, config.decryptionPrivateKey);
  const decryptionCert = await pemFrom(config.decryptionCertificateFile, config.decryptionCertificate);
  if (decryptionKey && decryptionCert && !new X509Certificate(decryptionCert).checkPrivateKey(createPrivateKey(decryptionKey))) {
    throw new Error(`upstream ${id}: decryption key and certificate do not match`);
  }

  const holder = new IdpMetadataHolder({
    file: config.idpMetadataFile,
    url: config.idpMetadataUrl,
    entityId: config.idpEntityId,
    refreshSeconds: config.metadataRefreshSeconds,
    allowInsecure: deps.allowInsecureUpstream === true,
  });
  // A wrong configuration (unreadable or invalid local metadata, metadata naming another IdP) stops
  // start-up. An IdP whose metadata URL is down does not, as with an OIDC upstream whose discovery is
  // down: its logins answer 503 "not responding" until the metadata arrives (metadata.ts retries).
  const unavailable = await holder.start();
  if (unavailable) deps.log?.warn({ upstream: id, reason: unavailable }, 'SAML IdP metadata unavailable at start-up; logins answer 503 until it arrives');

  const calls = new AsyncLocalStorage<CallContext>();
  // node-saml's request-id cache, bound to one call: it knows exactly the request id stored with this
  // login transaction (in the broker's store, so it holds across instances) and nothing else.
  const cacheProvider: CacheProvider = {
    async saveAsync(_key: string, value: string) {
      return { value, createdAt: Date.now() };
    },
    async getAsync(key: string) {
      const expected = calls.getStore()?.expected;
      return expected && expected.requestId === key ? expected.issuedAt : null;
    },
    async removeAsync(key: string | null) {
      return key;
    },
  };
  const generateUniqueId = (): string => calls.getStore()?.requestId ?? newRequestId();

  const saml = new PassportSaml();
  // Strategy names per metadata version; the previous version's stay registered so a login that began
  // just before a metadata refresh still finds its strategy.
  const byVersion = new Map<number, Map<string, string>>();
  function options(md: IdpMetadata, variant: Variant): PassportSamlConfig {
    return {
      entryPoint: md.sso.location,
      authnRequestBinding: md.sso.binding === BINDING.post ? 'HTTP-POST' : 'HTTP-Redirect',
      // SAML bindings 3.5.4: the POST binding carries plain base64 (DEFLATE is for the redirect binding).
      skipRequestCompression: !variant.logout && md.sso.binding === BINDING.post,
      issuer: spEntityId,
      callbackUrl: acsUrl,
      audience: spEntityId,
      idpCert: md.signingCerts,
      idpIssuer: md.entityId,
      privateKey: spKey,
      publicCert: spCert,
      signatureAlgorithm: config.signatureAlgorithm,
      digestAlgorithm: config.signatureAlgorithm,
      decryptionPvk: decryptionKey,
      wantAssertionsSigned: config.wantAssertionsSigned,
      wantAuthnResponseSigned: config.wantResponseSigned,
      acceptedClockSkewMs: skewMs,
      maxAssertionAgeMs: config.maxAssertionAge * 1000,
      validateInResponseTo: config.allowUnsolicited ? ValidateInResponseTo.ifPresent : ValidateInResponseTo.always,
      requestIdExpirationPeriodMs: TX_LIFETIME_MS,
      cacheProvider,
      generateUniqueId,
      identifierFormat: nameIdFormat,
      allowCreate: true,
      disableRequestedAuthnContext: variant.classRefs === undefined,
      authnContext: variant.classRefs ?? [],
      racComparison: config.authnContext?.comparison ?? 'minimum',
      forceAuthn: variant.force,
      // Never fall back to the SSO endpoint for logout (node-saml's default).
      logoutUrl: md.slo?.location ?? 'about:blank',
      logoutCallbackUrl: sloUrl,
      signMetadata: false,
    };
  }

  /** The passport strategy for this variant of AuthnRequest, rebuilt when the IdP metadata changes. */
  async function strategyFor(variant: Variant): Promise<{ name: string; md: IdpMetadata }> {
    await holder.get();
    const { md, version } = holder.snapshot();
    let variants = byVersion.get(version);
    if (!variants) {
      variants = new Map();
      byVersion.set(version, variants);
      for (const [old, names] of byVersion) {
        if (old >= version - 1) continue;
        for (const name of names.values()) saml.unuse(name);
        byVersion.delete(old);
      }
    }
    const key = JSON.stringify(variant);
    let name = variants.get(key);
    if (!name) {
      name = `saml:${id}:${version}:${variants.size}`;
      saml.use(name, options(md, variant));
      variants.set(key, name);
    }
    return { name, md };
  }

  function requestedContext(minimum: LoginRequest['minimumAssurance']): string[] | undefined {
    const ac = config.authnContext;
    if (!ac) return undefined;
    if (minimum?.aal !== undefined) {
      const refs: string[] = [];
      for (let level = minimum.aal; level <= 3; level++) for (const r of ac.aal[String(level) as '1' | '2' | '3'] ?? []) if (!refs.includes(r)) refs.push(r);
      if (refs.length > 0) return refs;
    }
    return ac.default;
  }

  function aalFor(classRef: string | undefined): number | undefined {
    if (!classRef || !config.authnContext) return undefined;
    for (const level of [3, 2, 1] as const) if (config.authnContext.aal[String(level) as '1' | '2' | '3']?.includes(classRef)) return level;
    return undefined;
  }

  const clock = (): Clock => ({ now: Date.now(), skew: skewMs, maxAge: config.maxAssertionAge * 1000 });

  async function begin(ctx: Context, request: LoginRequest): Promise<Record<string, string>> {
    if (request.callbackUrl !== acsUrl) throw new Error(`upstream ${id}: callback URL ${request.callbackUrl} is not the ACS URL ${acsUrl}`);
    const variant: Variant = {
      classRefs: requestedContext(request.minimumAssurance),
      force: (request.prompt ?? '').split(' ').includes('login') || request.maxAge !== undefined,
    };
    const { name, md } = await strategyFor(variant);
    const requestId = newRequestId();
    const issuedAt = new Date().toISOString();
    const state: Record<string, string> = { requestId, issuedAt };
    if (request.maxAge !== undefined) state.maxAge = String(request.maxAge);
    if (md.sso.binding === BINDING.post) {
      // HTTP-POST binding: our own page (strict CSP, no inline script) instead of node-saml's.
      const strategy = saml.get(name)?._saml;
      if (!strategy) throw new Error(`upstream ${id}: strategy missing`);
      const message = await calls.run({ requestId }, () => strategy.getAuthorizeMessageAsync(request.transactionId));
      ctx.type = 'html';
      ctx.body = layout(
        'Continue to sign in',
        h`<h1 class="nhsuk-heading-l">Continue to ${config.displayName}</h1>
<form method="post" action="${md.sso.location}">
${Object.entries(message).map(([k, v]) => h`<input type="hidden" name="${k}" value="${String(v)}">`)}
<button class="nhsuk-button" type="submit">Continue</button>
</form>`,
      );
      return state;
    }
    const outcome = await calls.run({ requestId }, () => saml.run(name, { method: 'GET', url: `${base}/login`, query: { RelayState: request.transactionId } }));
    if (outcome.kind !== 'redirect') throw new Error(`upstream ${id}: could not build the AuthnRequest (${outcome.kind === 'error' ? reasonOf(outcome.error) : outcome.kind})`);
    ctx.redirect(outcome.url);
    // 303: the browser leaves the broker's POSTed form for a GET at the IdP.
    ctx.status = 303;
    return state;
  }

  interface Verified {
    assertion: CheckedAssertion;
    profile: Profile;
  }

  async function verify(ctx: Context, tx: LoginTransaction): Promise<Verified> {
    if (ctx.method !== 'POST') throw new UpstreamAuthError(`saml ${id}: response did not arrive by HTTP-POST`);
    const form = (ctx.state as { form?: URLSearchParams }).form ?? (await readForm(ctx, SAML_RESPONSE_LIMIT));
    const responses = form.getAll('SAMLResponse');
    const relayStates = form.getAll('RelayState');
    if (responses.length !== 1 || form.has('SAMLRequest')) throw new UpstreamAuthError(`saml ${id}: expected exactly one SAMLResponse`);
    if (relayStates.length !== 1 || relayStates[0] !== tx.id) throw new UpstreamAuthError(`saml ${id}: RelayState does not name this transaction`);
    const encoded = responses[0].replace(/[\r\n]/g, '');
    if (encoded.length > SAML_RESPONSE_LIMIT || !/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) throw new UpstreamAuthError(`saml ${id}: SAMLResponse is not base64`);
    const state = txStateSchema.safeParse(tx.state);
    if (!state.success) throw new UpstreamAuthError(`saml ${id}: transaction carries no request id`);
    const xml = Buffer.from(encoded, 'base64').toString('utf8');

    // 1. Shape and algorithms, before any key touches the XML.
    const doc = parseXml(xml, 'response');
    const envelope = checkEnvelope(doc);
    checkSignatureAlgorithms(envelope.response, 'response');
    let envelopeAssertionId: string | null;
    if (envelope.encrypted) {
      if (!decryptionKey) throw new UpstreamAuthError(`saml ${id}: encrypted assertion but no decryption key configured`);
      checkEncryptionAlgorithms(envelope.assertion);
      const decrypted = parseXml(await decryptXml(envelope.assertion.toString(), decryptionKey), 'decrypted assertion');
      const inner = checkDecryptedAssertion(decrypted);
      checkSignatureAlgorithms(inner, 'assertion');
      envelopeAssertionId = inner.getAttribute('ID');
    } else {
      if (config.wantAssertionsEncrypted) throw new UpstreamAuthError(`saml ${id}: assertion is not encrypted`);
      envelopeAssertionId = envelope.assertion.getAttribute('ID');
    }

    // 2. node-saml, through the passport strategy: signatures, decryption, audience, times, InResponseTo.
    const { name, md } = await strategyFor({ force: false });
    const expected = { requestId: state.data.requestId, issuedAt: state.data.issuedAt };
    const outcome = await calls.run({ expected }, () => saml.run(name, { method: 'POST', url: `${base}/callback`, body: { SAMLResponse: encoded } }));
    if (outcome.kind === 'error') throw new UpstreamAuthError(`saml ${id}: ${reasonOf(outcome.error)}`);
    if (outcome.kind !== 'success') throw new UpstreamAuthError(`saml ${id}: not signed in (${outcome.kind})`);
    const profile = outcome.profile;

    // 3. The checks node-saml leaves out, on signed XML only.
    const c = clock();
    const verifiedResponse = getVerifiedXml(xml, doc.documentElement, md.signingCerts);
    if (config.wantResponseSigned && !verifiedResponse) throw new UpstreamAuthError(`saml ${id}: response is not signed`);
    const responseEl = verifiedResponse ? parseXml(verifiedResponse, 'signed response').documentElement : envelope.response;
    const response = checkResponse(responseEl, { idpEntityId: md.entityId, acsUrl, clock: c, signed: verifiedResponse !== null });
    const assertionXml = profile.getAssertionXml?.();
    if (!assertionXml) throw new UpstreamAuthError(`saml ${id}: no verified assertion`);
    const assertion = checkAssertion(parseXml(assertionXml, 'signed assertion').documentElement, { idpEntityId: md.entityId, spEntityId, acsUrl, nameIdFormat, clock: c });
    // node-saml read the same assertion this connector pre-checked, and agrees on who it names.
    if (assertion.id !== envelopeAssertionId) throw new UpstreamAuthError(`saml ${id}: verified assertion is not the one in the response`);
    if (profile.nameID !== assertion.nameId) throw new UpstreamAuthError(`saml ${id}: NameID parsed differently`);

    // 4. Bound to this login: the response answers the request stored with the transaction.
    if (response.inResponseTo === undefined && assertion.inResponseTo === undefined) {
      if (!config.allowUnsolicited) throw new UpstreamAuthError(`saml ${id}: unsolicited response`);
    } else {
      if (response.inResponseTo !== assertion.inResponseTo) throw new UpstreamAuthError(`saml ${id}: response and assertion disagree on InResponseTo`);
      if (response.inResponseTo !== state.data.requestId) throw new UpstreamAuthError(`saml ${id}: InResponseTo is not this transaction's request`);
    }
    if (state.data.maxAge !== undefined && assertion.authnInstant < c.now - Number(state.data.maxAge) * 1000 - c.skew) {
      throw new UpstreamAuthError(`saml ${id}: authentication older than max_age`);
    }
    return { assertion, profile };
  }

  async function complete(ctx: Context, tx: LoginTransaction): Promise<UpstreamIdentity> {
    let verified: Verified;
    try {
      verified = await verify(ctx, tx);
    } catch (err) {
      // No unexpired IdP metadata to check the response with: an outage, not a refused login.
      if (err instanceof UpstreamUnavailableError) throw err;
      // Reasons go to the log and the audit ledger; parts of them come from unverified input.
      const reason = err instanceof UpstreamAuthError ? err.reason : `saml ${id}: ${reasonOf(err)}`;
      throw new UpstreamAuthError(reason.length > 300 ? `${reason.slice(0, 300)}…` : reason);
    }
    const { assertion } = verified;
    // 5. Replay: each assertion once, across instances, until it expires. Store errors are not auth
    // failures: they propagate (503), never skipping the check.
    const ttl = Math.max(1, Math.ceil((assertion.expiresAt + skewMs - Date.now()) / 1000));
    if (!(await deps.replay.rememberOnce(`saml-assertion:${assertion.issuer}:${assertion.id}`, ttl))) {
      throw new UpstreamAuthError(`saml ${id}: replayed assertion ${assertion.id}`);
    }
    const claims = new Map<string, string | string[]>();
    for (const [k, values] of assertion.attributes) claims.set(k, values.length === 1 ? values[0] : values);
    claims.set('nameID', assertion.nameId);
    const identity = identitySchema.safeParse({
      provider: id,
      subject: assertion.nameId,
      claims: Object.fromEntries(claims),
      assurance: {
        acr: assertion.authnContextClassRef,
        amr: assertion.authnContextClassRef ? AMR[assertion.authnContextClassRef] : undefined,
        aal: aalFor(assertion.authnContextClassRef),
      },
      authTime: Math.floor(assertion.authnInstant / 1000),
      sessionIndex: assertion.sessionIndex,
    });
    if (!identity.success) throw new UpstreamAuthError(`saml ${id}: identity does not fit the schema`);
    return identity.data;
  }

  let spMetadataCache: { xml: string; at: number } | undefined;
  function spMetadata(): string {
    if (!spMetadataCache || Date.now() - spMetadataCache.at > 86_400_000) {
      spMetadataCache = {
        at: Date.now(),
        xml: buildSpMetadata({
          entityId: spEntityId,
          acsUrl,
          sloUrl: config.singleLogout ? sloUrl : undefined,
          signingCertPem: spCert,
          encryptionCertPem: decryptionKey ? decryptionCert : undefined,
          nameIdFormat,
          wantAssertionsSigned: config.wantAssertionsSigned,
          privateKeyPem: spKey,
          signatureAlgorithm: config.signatureAlgorithm,
        }),
      };
    }
    return spMetadataCache.xml;
  }

  async function logoutUrl(session: SamlLogoutSession): Promise<string | undefined> {
    if (!config.singleLogout) return undefined;
    const { name, md } = await strategyFor({ force: false, logout: true });
    const strategy = saml.get(name)?._saml;
    if (!md.slo || !strategy) return undefined;
    const user: Profile = { issuer: md.entityId, nameID: session.subject, nameIDFormat: nameIdFormat, sessionIndex: session.sessionIndex };
    return calls.run({ requestId: newRequestId() }, () => strategy.getLogoutUrlAsync(user, session.relayState ?? '', {}));
  }

  return {
    id,
    displayName: config.displayName,
    kind: 'saml',
    entityId: spEntityId,
    acsUrl,
    sloUrl,
    begin,
    complete,
    spMetadata,
    logoutUrl,
    routes: [
      {
        method: 'GET',
        path: `${base}/metadata`,
        handler: async (ctx) => {
          ctx.type = 'application/samlmetadata+xml';
          ctx.set('Cache-Control', 'public, max-age=3600');
          ctx.body = spMetadata();
        },
      },
      {
        method: 'GET',
        path: `${base}/slo`,
        handler: async (ctx) => {
          let found: { name: string; md: IdpMetadata };
          try {
            found = await strategyFor({ force: false, logout: true });
          } catch (err) {
            if (!(err instanceof UpstreamUnavailableError)) throw err;
            // Without the IdP's metadata no logout message can be checked: the IdP may retry later.
            ctx.status = 503;
            ctx.set('Retry-After', String(err.retryAfterSeconds ?? 5));
            ctx.body = `${config.displayName} is not responding; try again later.`;
            return;
          }
          const { name, md } = found;
          const strategy = saml.get(name)?._saml;
          if (!strategy) throw new Error(`upstream ${id}: strategy missing`);
          await handleSingleLogout(ctx, {
            provider: id,
            md,
            sloUrl,
            spEntityId,
            clock: clock(),
            replay: deps.replay,
            onUpstreamLogout: deps.onUpstreamLogout,
            logoutResponseUrl: (request, relayState) => calls.run({ requestId: newRequestId() }, () => strategy.getLogoutResponseUrlAsync(request, relayState, {}, true)),
          });
        },
      },
    ],
  };
}
