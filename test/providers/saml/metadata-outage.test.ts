import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as oc from 'openid-client';
import pino from 'pino';
import { parseConfig } from '../../../src/config/load.ts';
import type { SamlUpstreamInput } from '../../../src/config/upstream-saml.ts';
import { createBroker, type Broker } from '../../../src/server.ts';
import { openStore } from '../../../src/store/open.ts';
import type { Store } from '../../../src/store/contracts.ts';
import { clientKey, REDIRECT, testConfig } from '../../helpers/broker.ts';
import { freePort } from '../../peers/ports.ts';
import { generateKeyPair, simpleSamlAvailable, startSimpleSaml, type SimpleSamlPeer } from '../../peers/simplesamlphp.ts';
import { Browser, followToClient, loginAtIdp, parseForm, type SamlEnv } from './harness.ts';

// A SAML upstream whose IdP metadata URL is down when the broker starts (catalogue of upstream outages;
// the OIDC connector does the same with discovery): the broker starts from its configuration as in
// production, answers 503 "not responding" for that upstream only, picks the metadata up once the URL
// answers (after the back-off) and logs in through the real SimpleSAMLphp; and when the metadata it got
// passes its validUntil while the URL is down again, it stops using it (503 again) instead of trusting
// expired keys until the refresh interval runs out.

const UPSTREAM = 'org-late';

describe.skipIf(!simpleSamlAvailable)('SAML IdP metadata URL down at start-up, then back, then expired', () => {
  let idp: SimpleSamlPeer;
  let broker: Broker;
  let brokerServer: Server;
  let store: Store;
  let base: string;
  let web: oc.Configuration;
  let metadataPort: number;
  let metadataServer: Server | undefined;
  let metadataRequests = 0;
  let validUntil = 0;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://localhost:${port}`;
    const sp = generateKeyPair('broker-sp-late');
    idp = await startSimpleSaml({
      sps: [{ entityId: `${base}/upstream/${UPSTREAM}/metadata`, acsUrl: `${base}/upstream/${UPSTREAM}/callback`, sloUrl: `${base}/upstream/${UPSTREAM}/slo`, signingCertPem: sp.certPem }],
    });
    // Reserved, and nothing listens on it yet: connections are refused.
    metadataPort = await freePort();
    const upstream: SamlUpstreamInput = {
      id: UPSTREAM,
      type: 'saml',
      displayName: 'Late Trust IdP',
      idpMetadataUrl: `http://127.0.0.1:${metadataPort}/metadata.xml`,
      spPrivateKey: sp.keyPem,
      spCertificate: sp.certPem,
      linkable: [],
      // This test counts on its own waits, not on the breaker opening.
      circuitBreaker: { failureThreshold: 50, openSeconds: 1 },
    };
    const storePath = join(mkdtempSync(join(tmpdir(), 'saml-late-')), 'broker.db');
    store = openStore(`sqlite:${storePath}`);
    const config = parseConfig(testConfig(port, `sqlite:${storePath}`, await clientKey('ES256'), { upstreams: [upstream] }), {});
    // The composition root creates the connector from the configuration, as in production.
    broker = await createBroker(config, { log: pino({ level: 'silent' }), env: {}, store, allowInsecureUpstreams: true });
    brokerServer = await broker.listen(port, '127.0.0.1');
    web = await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute: [oc.allowInsecureRequests] });
  }, 120_000);

  afterAll(async () => {
    await stopMetadata();
    brokerServer?.closeAllConnections();
    await broker?.close();
    await store?.close();
    await idp?.stop();
  });

  /** Serves SimpleSAMLphp's own metadata with a validUntil this many ms ahead. */
  async function serveMetadata(validForMs: number): Promise<void> {
    validUntil = Date.now() + validForMs;
    const xml = idp.metadataXml.replace(/\svalidUntil="[^"]*"/g, '').replace(/<((?:[\w-]+:)?EntityDescriptor)\b/, `<$1 validUntil="${new Date(validUntil).toISOString()}"`);
    metadataServer = createServer((_req, res) => {
      metadataRequests++;
      res.writeHead(200, { 'content-type': 'application/samlmetadata+xml' }).end(xml);
    });
    await new Promise<void>((r) => metadataServer!.listen(metadataPort, '127.0.0.1', r));
  }

  async function stopMetadata(): Promise<void> {
    const s = metadataServer;
    metadataServer = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** A client's authorization through the chooser, picking `upstream`: the chooser POST's answer. */
  async function choose(upstream: string): Promise<{ res: Response; browser: Browser }> {
    const browser = new Browser();
    const auth = oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid profile', code_challenge: await oc.calculatePKCECodeChallenge(oc.randomPKCECodeVerifier()), code_challenge_method: 'S256', state: oc.randomState() });
    let res = await browser.get(auth.href);
    const interaction = new URL(res.headers.get('location') ?? '', auth.href).href;
    res = await browser.get(interaction);
    const chooser = await res.text();
    expect(chooser).toContain(upstream);
    const uid = new URL(interaction).pathname.split('/').pop() ?? '';
    res = await browser.postForm(`${base}/interaction/${uid}/login`, { csrf: parseForm(chooser, interaction).fields.csrf, upstream });
    return { res, browser };
  }

  async function notResponding(what: string): Promise<number> {
    const { res } = await choose(UPSTREAM);
    const html = await res.text();
    expect(res.status, `${what}: ${html.slice(0, 200)}`).toBe(503);
    expect(html).toContain('Late Trust IdP is not responding');
    expect(res.headers.get('location')).toBeNull();
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(retryAfter, 'Retry-After').toBeGreaterThanOrEqual(1);
    return retryAfter;
  }

  it('the broker starts although the IdP metadata URL refuses connections; that upstream answers 503 "not responding", the others work', async () => {
    expect((await fetch(`${base}/.well-known/openid-configuration`)).status).toBe(200);
    await notResponding('metadata URL down');
    // Another upstream of the same broker (the demo IdP) still sends the browser on.
    const { res } = await choose('demo');
    expect([302, 303]).toContain(res.status);
    expect(res.headers.get('location')).toBeTruthy();
    // The SP metadata needs nothing from the IdP; single logout cannot be checked without it (503, retry).
    expect((await fetch(`${base}/upstream/${UPSTREAM}/metadata`)).status).toBe(200);
    const slo = await fetch(`${base}/upstream/${UPSTREAM}/slo?SAMLRequest=x`);
    expect(slo.status).toBe(503);
    expect(Number(slo.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('once the metadata URL answers, after the back-off, logins go through the real IdP', async () => {
    const retryAfter = await notResponding('still down');
    await serveMetadata(12_000);
    // Within the back-off the IdP's URL is not asked again.
    expect(metadataRequests).toBe(0);
    await new Promise((r) => setTimeout(r, retryAfter * 1000 + 100));
    const { res, browser } = await choose(UPSTREAM);
    expect(res.status).toBe(303);
    expect(metadataRequests).toBe(1);
    const sso = new URL(res.headers.get('location') ?? '', base).href;
    expect(sso.startsWith(idp.baseUrl)).toBe(true);
    const answer = await loginAtIdp(browser, sso, 'alice', 'alice-password');
    const acs = await browser.postForm(answer.acs, { SAMLResponse: answer.SAMLResponse, RelayState: answer.RelayState });
    const done = await followToClient({ base, web } as unknown as SamlEnv, browser, acs, answer.acs);
    expect(done.searchParams.get('code')).toBeTruthy();
  });

  it('metadata past its validUntil is not used while the URL is down again: 503 at once, long before the refresh interval (an hour)', async () => {
    await stopMetadata();
    // Still valid: logins go on from the copy, with the URL down.
    const { res, browser } = await choose(UPSTREAM);
    expect(res.status).toBe(303);
    const answer = await loginAtIdp(browser, new URL(res.headers.get('location') ?? '', base).href, 'alice', 'alice-password');
    const wait = validUntil - Date.now() + 100;
    expect(wait).toBeLessThan(12_000);
    await new Promise((r) => setTimeout(r, Math.max(0, wait)));
    // The IdP's answer to a login begun before the expiry is not checked against expired keys: 503, not 401.
    const acs = await browser.postForm(answer.acs, { SAMLResponse: answer.SAMLResponse, RelayState: answer.RelayState });
    expect(acs.status).toBe(503);
    expect(await acs.text()).toContain('Late Trust IdP is not responding');
    await notResponding('metadata expired, URL down');
  }, 30_000);
});
