import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { samlUpstreamSchema, type SamlUpstreamInput } from '../../../src/config/upstream-saml.ts';
import { upstreamSchema } from '../../../src/config/upstreams.ts';
import { IdpMetadataHolder, IdpMetadataConfigError, parseIdpMetadata } from '../../../providers/saml/metadata.ts';
import { createSamlConnector } from '../../../providers/saml/index.ts';
import { UpstreamUnavailableError } from '../../../src/identity/upstream.ts';
import { certBody, generateKeyPair } from '../../peers/simplesamlphp.ts';
import { freePort } from '../../peers/ports.ts';

// The SAML upstream settings and the IdP metadata parser, without a running IdP.

const sp = generateKeyPair('unit-sp');
const idpA = generateKeyPair('unit-idp-a');
const idpB = generateKeyPair('unit-idp-b');

const base: SamlUpstreamInput = {
  id: 'org',
  type: 'saml',
  displayName: 'Trust IdP',
  idpMetadataFile: '/etc/broker/idp.xml',
  spPrivateKey: sp.keyPem,
  spCertificate: sp.certPem,
};

function idpMetadata(options: { certs?: string[]; entityId?: string; validUntil?: string; wrap?: boolean } = {}): string {
  const keys = (options.certs ?? [idpA.certPem])
    .map((c) => `<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${certBody(c)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>`)
    .join('');
  const entity = `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="${options.entityId ?? 'https://idp.trust.example'}"${options.validUntil ? ` validUntil="${options.validUntil}"` : ''}>
<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" WantAuthnRequestsSigned="true">${keys}
<md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${certBody(idpB.certPem)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.trust.example/slo"/>
<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.trust.example/sso-post"/>
<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.trust.example/sso"/>
</md:IDPSSODescriptor></md:EntityDescriptor>`;
  return options.wrap ? `<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">${entity}${entity.replace(options.entityId ?? 'https://idp.trust.example', 'https://other-idp.example')}</md:EntitiesDescriptor>` : entity;
}

describe('SAML upstream settings', () => {
  it('has safe defaults: both signatures required, no unsolicited responses, persistent NameID, SHA-256, 60 s skew', () => {
    const c = samlUpstreamSchema.parse(base);
    expect(c).toMatchObject({ wantAssertionsSigned: true, wantResponseSigned: true, allowUnsolicited: false, nameIdFormat: 'persistent', signatureAlgorithm: 'sha256', clockSkew: 60, wantAssertionsEncrypted: false });
    expect(upstreamSchema.parse(base).type).toBe('saml');
  });

  it('refuses incomplete or contradictory settings', () => {
    const bad: Array<[string, Partial<SamlUpstreamInput>]> = [
      ['no metadata', { idpMetadataFile: undefined }],
      ['two metadata sources', { idpMetadataUrl: 'https://idp.example/md' }],
      ['plain-http metadata URL', { idpMetadataFile: undefined, idpMetadataUrl: 'http://idp.example/md' }],
      ['no SP key', { spPrivateKey: undefined }],
      ['not a PEM key', { spPrivateKey: 'secret' }],
      ['neither signature required', { wantAssertionsSigned: false, wantResponseSigned: false }],
      ['encryption required without a key', { wantAssertionsEncrypted: true }],
      ['decryption key without its certificate', { decryptionPrivateKey: sp.keyPem }],
      ['skew of an hour', { clockSkew: 3600 }],
      ['SHA-1', { signatureAlgorithm: 'sha1' as 'sha256' }],
      ['unknown field', { idpCert: 'x' } as Partial<SamlUpstreamInput>],
    ];
    for (const [what, patch] of bad) expect(samlUpstreamSchema.safeParse({ ...base, ...patch }).success, what).toBe(false);
  });
});

describe('IdP metadata', () => {
  it('reads entity ID, the HTTP-Redirect SSO endpoint, the SLO endpoint and signing certificates only', () => {
    const md = parseIdpMetadata(idpMetadata());
    expect(md.entityId).toBe('https://idp.trust.example');
    expect(md.sso).toEqual({ binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', location: 'https://idp.trust.example/sso' });
    expect(md.slo?.location).toBe('https://idp.trust.example/slo');
    expect(md.signingCerts).toHaveLength(1);
    expect(md.signingCerts[0]).toContain(certBody(idpA.certPem).slice(0, 40));
    expect(md.wantAuthnRequestsSigned).toBe(true);
  });

  it('keeps several signing certificates (key rollover)', () => {
    expect(parseIdpMetadata(idpMetadata({ certs: [idpA.certPem, idpB.certPem] })).signingCerts).toHaveLength(2);
  });

  it('picks one IdP out of an EntitiesDescriptor only when told which', () => {
    expect(() => parseIdpMetadata(idpMetadata({ wrap: true }))).toThrow(/several IdPs/);
    expect(parseIdpMetadata(idpMetadata({ wrap: true }), 'https://other-idp.example').entityId).toBe('https://other-idp.example');
  });

  it('refuses expired metadata, a DOCTYPE, and metadata without signing keys', () => {
    expect(() => parseIdpMetadata(idpMetadata({ validUntil: '2001-01-01T00:00:00Z' }))).toThrow(/expired/);
    expect(() => parseIdpMetadata(`<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${idpMetadata()}`)).toThrow(/DOCTYPE/);
    expect(() => parseIdpMetadata(idpMetadata({ certs: [] }))).toThrow();
  });

  it('the connector refuses an SP key that does not match its certificate, and unreadable metadata, at start-up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'saml-unit-'));
    const file = join(dir, 'idp.xml');
    writeFileSync(file, idpMetadata());
    const deps = { issuer: 'https://broker.example', replay: { rememberOnce: async () => true, has: async () => false }, onUpstreamLogout: async () => {} };
    const ok = await createSamlConnector(samlUpstreamSchema.parse({ ...base, idpMetadataFile: file }), deps);
    expect(ok.acsUrl).toBe('https://broker.example/upstream/org/callback');
    expect(ok.entityId).toBe('https://broker.example/upstream/org/metadata');
    await expect(createSamlConnector(samlUpstreamSchema.parse({ ...base, idpMetadataFile: file, spCertificate: idpA.certPem }), deps)).rejects.toThrow(/do not match/);
    await expect(createSamlConnector(samlUpstreamSchema.parse({ ...base, idpMetadataFile: join(dir, 'missing.xml') }), deps)).rejects.toThrow();
  });
});

describe('IdP metadata from a URL: expiry and outages', () => {
  // A real HTTP server whose answer each test sets; it counts the requests that reach it.
  let server: Server;
  let url: string;
  let requests = 0;
  let answer: () => { status: number; body: string } = () => ({ status: 503, body: '' });

  beforeAll(async () => {
    const port = await freePort();
    server = createServer((_req, res) => {
      requests++;
      const a = answer();
      res.writeHead(a.status, { 'content-type': 'application/samlmetadata+xml' }).end(a.body);
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    url = `http://127.0.0.1:${port}/metadata.xml`;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  });

  const holder = (extra: { entityId?: string; refreshSeconds?: number } = {}) => new IdpMetadataHolder({ url, refreshSeconds: extra.refreshSeconds ?? 3600, allowInsecure: true, entityId: extra.entityId });
  const serve = (certPem: string, validUntil: number) => {
    answer = () => ({ status: 200, body: idpMetadata({ certs: [certPem], validUntil: new Date(validUntil).toISOString() }) });
  };
  const signedBy = (md: { signingCerts: string[] }, pem: string) => md.signingCerts[0].replace(/\s+/g, '').includes(certBody(pem).slice(0, 60));
  const sleepUntil = async (t: number) => {
    while (Date.now() < t) await new Promise((r) => setTimeout(r, Math.min(50, t - Date.now() + 1)));
  };
  const anHourOn = () => Date.now() + 3_600_000;

  it('metadata past its validUntil is never used: it is reloaded at once, long before the refresh interval', async () => {
    const expiry = Date.now() + 1500;
    serve(idpA.certPem, expiry);
    const h = holder();
    expect(await h.start()).toBeUndefined();
    const after = requests;
    serve(idpB.certPem, anHourOn());
    // Within its validity and the refresh interval: the copy, no request.
    expect(signedBy(await h.get(), idpA.certPem)).toBe(true);
    expect(requests).toBe(after);
    await sleepUntil(expiry + 20);
    expect(signedBy(await h.get(), idpB.certPem)).toBe(true);
    expect(signedBy(h.snapshot().md, idpB.certPem)).toBe(true);
    expect(requests).toBe(after + 1);
  });

  it('[P] a failed refresh while the copy is still valid keeps the copy: no outage', async () => {
    serve(idpA.certPem, anHourOn());
    const h = holder({ refreshSeconds: 0 });
    await h.start();
    answer = () => ({ status: 500, body: '' });
    await new Promise((r) => setTimeout(r, 5));
    const before = requests;
    expect(signedBy(await h.get(), idpA.certPem)).toBe(true);
    expect(requests).toBe(before + 1);
  });

  it('expired metadata that cannot be refreshed: the IdP is unavailable (never the old copy), attempts back off, and the fresh copy is used once it arrives', async () => {
    const expiry = Date.now() + 1500;
    serve(idpA.certPem, expiry);
    const h = holder();
    await h.start();
    answer = () => ({ status: 503, body: 'down' });
    await sleepUntil(expiry + 20);
    const err = await h.get().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamUnavailableError);
    expect((err as UpstreamUnavailableError).reason).toMatch(/expired, and no fresh copy: IdP metadata: HTTP 503/);
    expect((err as UpstreamUnavailableError).retryAfterSeconds).toBe(2);
    expect(() => h.snapshot()).toThrow(UpstreamUnavailableError);
    // During the back-off nothing is sent to the IdP: the answer is at once.
    const n = requests;
    const fast = await h.get().catch((e: unknown) => e);
    expect(fast).toBeInstanceOf(UpstreamUnavailableError);
    expect((fast as UpstreamUnavailableError).reason).toMatch(/next attempt in [12] s/);
    expect(requests).toBe(n);
    serve(idpB.certPem, anHourOn());
    const t0 = Date.now();
    let md: Awaited<ReturnType<IdpMetadataHolder['get']>> | undefined;
    while (!md && Date.now() - t0 < 5000) {
      md = await h.get().catch(() => undefined);
      if (!md) await new Promise((r) => setTimeout(r, 100));
    }
    expect(md && signedBy(md, idpB.certPem)).toBe(true);
    expect(Date.now() - t0).toBeGreaterThan(1000);
    expect(requests).toBe(n + 1);
  });

  it('the back-off grows while the IdP stays down (2 s, then 4 s)', async () => {
    answer = () => ({ status: 502, body: '' });
    const h = holder();
    expect(await h.start()).toMatch(/HTTP 502/);
    const first = (await h.get().catch((e: unknown) => e)) as UpstreamUnavailableError;
    expect(first.retryAfterSeconds).toBeLessThanOrEqual(2);
    await sleepUntil(Date.now() + first.retryAfterSeconds! * 1000 + 20);
    const second = (await h.get().catch((e: unknown) => e)) as UpstreamUnavailableError;
    expect(second).toBeInstanceOf(UpstreamUnavailableError);
    expect(second.retryAfterSeconds).toBe(4);
  });

  it('start-up: a URL that is down or answers garbage is reported, not thrown; metadata naming another IdP, or a plain-http URL, is a configuration error and throws', async () => {
    answer = () => ({ status: 200, body: 'this is not XML' });
    expect(await holder().start()).toMatch(/IdP metadata/);
    const closed = new IdpMetadataHolder({ url: `http://127.0.0.1:${await freePort()}/md.xml`, refreshSeconds: 3600, allowInsecure: true });
    expect(await closed.start()).toMatch(/IdP metadata/);
    serve(idpA.certPem, anHourOn());
    await expect(holder({ entityId: 'https://another-idp.example' }).start()).rejects.toBeInstanceOf(IdpMetadataConfigError);
    expect(await holder({ entityId: 'https://idp.trust.example' }).start()).toBeUndefined();
    await expect(new IdpMetadataHolder({ url, refreshSeconds: 3600, allowInsecure: false }).start()).rejects.toThrow(/must be https/);
  });
});

describe('AuthnRequest', () => {
  interface FakeCtx {
    status: number;
    location?: string;
    type?: string;
    body?: unknown;
    redirect(url: string): void;
  }
  const fakeCtx = (): FakeCtx => ({
    status: 404,
    redirect(url: string) {
      this.location = url;
      this.status = 302;
    },
  });

  async function connectorFor(metadata: string, patch: Partial<SamlUpstreamInput> = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'saml-unit-'));
    const file = join(dir, 'idp.xml');
    writeFileSync(file, metadata);
    const deps = { issuer: 'https://broker.example', replay: { rememberOnce: async () => true, has: async () => false }, onUpstreamLogout: async () => {} };
    return createSamlConnector(
      samlUpstreamSchema.parse({
        ...base,
        idpMetadataFile: file,
        authnContext: { aal: { '2': ['urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport'], '3': ['urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI'] } },
        ...patch,
      }),
      deps,
    );
  }

  const request = (extra: Record<string, unknown> = {}) => ({ callbackUrl: 'https://broker.example/upstream/org/callback', transactionId: 'tx-123', ...extra });

  it('is signed (RSA-SHA256, redirect binding), carries the request id bound to the transaction, and maps a minimum AAL to a RequestedAuthnContext', async () => {
    const connector = await connectorFor(idpMetadata());
    const ctx = fakeCtx();
    const state = await connector.begin(ctx as unknown as Parameters<typeof connector.begin>[0], request({ minimumAssurance: { aal: 3 }, prompt: 'login' }));
    expect(ctx.status).toBe(303);
    const url = new URL(ctx.location ?? '');
    expect(url.origin + url.pathname).toBe('https://idp.trust.example/sso');
    expect(url.searchParams.get('RelayState')).toBe('tx-123');
    expect(url.searchParams.get('SigAlg')).toBe('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
    const { inflateRawSync } = await import('node:zlib');
    const xml = inflateRawSync(Buffer.from(url.searchParams.get('SAMLRequest') ?? '', 'base64')).toString('utf8');
    expect(state.requestId).toMatch(/^_[0-9a-f]{40}$/);
    expect(xml).toContain(`ID="${state.requestId}"`);
    expect(xml).toContain('AssertionConsumerServiceURL="https://broker.example/upstream/org/callback"');
    expect(xml).toContain('Destination="https://idp.trust.example/sso"');
    expect(xml).toContain('ForceAuthn="true"');
    expect(xml).toContain('Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"');
    expect(xml).toMatch(/RequestedAuthnContext[^>]*Comparison="minimum"/);
    expect(xml).toContain('urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI');
    expect(xml).not.toContain('PasswordProtectedTransport');
    // Without a minimum (and no default configured) no RequestedAuthnContext is sent.
    const plain = fakeCtx();
    await connector.begin(plain as unknown as Parameters<typeof connector.begin>[0], request());
    const plainXml = inflateRawSync(Buffer.from(new URL(plain.location ?? '').searchParams.get('SAMLRequest') ?? '', 'base64')).toString('utf8');
    expect(plainXml).not.toContain('RequestedAuthnContext');
    expect(plainXml).not.toContain('ForceAuthn');
  });

  it('uses the HTTP-POST binding when the IdP offers only that: an XML-signed request in a page without inline script', async () => {
    const postOnly = idpMetadata().replace(/<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"[^>]*\/>/, '');
    const connector = await connectorFor(postOnly);
    const ctx = fakeCtx();
    const state = await connector.begin(ctx as unknown as Parameters<typeof connector.begin>[0], request());
    expect(ctx.type).toBe('html');
    const html = String(ctx.body);
    expect(html).toContain('action="https://idp.trust.example/sso-post"');
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)/);
    const encoded = /name="SAMLRequest" value="([^"]+)"/.exec(html)?.[1] ?? '';
    const xml = Buffer.from(encoded, 'base64').toString('utf8');
    expect(xml).toContain(`ID="${state.requestId}"`);
    expect(xml).toContain('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
    expect(xml).toContain('http://www.w3.org/2001/04/xmlenc#sha256');
    expect(xml).not.toContain('xmldsig#sha1');
  });

  it('refuses a callback URL other than its ACS (a wiring mistake)', async () => {
    const connector = await connectorFor(idpMetadata());
    await expect(connector.begin(fakeCtx() as unknown as Parameters<typeof connector.begin>[0], request({ callbackUrl: 'https://elsewhere.example/cb' }))).rejects.toThrow(/ACS/);
  });
});
