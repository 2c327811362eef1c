import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import type { Context } from 'koa';
import { createSamlConnector } from '../../providers/saml/index.ts';
import { samlUpstreamSchema, type SamlUpstreamInput } from '../../src/config/upstream-saml.ts';
import { UpstreamUnavailableError } from '../../src/identity/upstream.ts';
import { freePort } from '../peers/ports.ts';
import { generateKeyPair, simpleSamlAvailable, startSimpleSaml, type KeyPair, type SimpleSamlPeer } from '../peers/simplesamlphp.ts';
import { startHarness, type Harness, type LoginOutcome } from './oidc/harness.ts';
import { followToClient, loginAtIdp, startLogin, type SamlEnv } from './saml/harness.ts';

// The circuit breaker with a SAML upstream (a real SimpleSAMLphp) in the same broker as the fake CIS2:
// a SAML login goes through end to end while CIS2 logins hang on its token endpoint and after CIS2's
// circuit has opened; and the one network call of the SAML connector, the IdP metadata URL, reports an
// IdP that is down or answers garbage as an outage (a local file that is missing stays a configuration
// error). Start-up with the metadata URL down: test/providers/saml/metadata-outage.test.ts.

const METRICS_TOKEN = 'metrics-token-0123456789';
const CIS2_TIMEOUT_MS = 5000;

describe.skipIf(!simpleSamlAvailable)('circuit breaker: a SAML upstream beside a failing OIDC one', () => {
  let h: Harness;
  let idp: SimpleSamlPeer;
  let sp: KeyPair;
  const samlInput = (extra: Partial<SamlUpstreamInput>): SamlUpstreamInput => ({
    id: 'org',
    type: 'saml',
    displayName: 'Trust IdP',
    spPrivateKey: sp.keyPem,
    spCertificate: sp.certPem,
    ...extra,
  });

  beforeAll(async () => {
    sp = generateKeyPair('broker-sp');
    h = await startHarness({
      cis2: { timeoutMs: CIS2_TIMEOUT_MS },
      extra: async ({ deps }) => {
        idp = await startSimpleSaml({
          sps: [{ entityId: `${deps.issuer}/upstream/org/metadata`, acsUrl: `${deps.issuer}/upstream/org/callback`, sloUrl: `${deps.issuer}/upstream/org/slo`, signingCertPem: sp.certPem }],
        });
        return [await createSamlConnector(samlUpstreamSchema.parse(samlInput({ idpMetadataUrl: idp.metadataUrl })), deps)];
      },
      configure: (input, { cis2Config }) => {
        input.upstreams = [{ ...cis2Config(), circuitBreaker: { failureThreshold: 3, openSeconds: 60 } }];
        input.metrics = { bearerToken: METRICS_TOKEN };
      },
    });
  });

  afterAll(async () => {
    await h?.close();
    await idp?.stop();
  });

  async function circuit(upstream: string): Promise<number> {
    const text = await (await fetch(`${h.base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
    return Number(new RegExp(`^broker_upstream_circuit_state\\{upstream="${upstream}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
  }

  /** A whole SAML login: chooser, SimpleSAMLphp's password form, the auto-POST to the ACS, the client's code. */
  async function samlLogin(): Promise<string | null> {
    const env = { base: h.base, web: h.web } as unknown as SamlEnv;
    const login = await startLogin(env, 'org');
    const answer = await loginAtIdp(login.browser, login.ssoRedirect, 'alice', 'alice-password');
    const res = await login.browser.postForm(answer.acs, { SAMLResponse: answer.SAMLResponse, RelayState: answer.RelayState });
    return (await followToClient(env, login.browser, res, answer.acs)).searchParams.get('code');
  }

  it('SAML logins go through while CIS2 logins hang, and after CIS2 circuit opened', async () => {
    expect(await samlLogin()).toBeTruthy();
    h.cis2.tokenDelayMs = 10 * CIS2_TIMEOUT_MS;
    try {
      const reached: Array<Promise<void>> = [];
      const hanging = Array.from({ length: 3 }, () => {
        let arrived!: () => void;
        reached.push(new Promise<void>((r) => (arrived = r)));
        return h.attempt('cis2', 'gp', { onCallback: (u) => (arrived(), u) }).then((outcome: LoginOutcome) => ({ outcome, at: performance.now() }));
      });
      await Promise.all(reached);
      const t0 = performance.now();
      expect(await samlLogin()).toBeTruthy();
      const samlDone = performance.now();
      const results = await Promise.all(hanging);
      for (const r of results) {
        expect(r.outcome.kind === 'page' && r.outcome.status).toBe(503);
        expect(r.at).toBeGreaterThan(samlDone);
      }
      expect(samlDone - t0).toBeLessThan(CIS2_TIMEOUT_MS);
    } finally {
      h.cis2.tokenDelayMs = 0;
    }
    expect(await circuit('cis2')).toBe(2);
    expect(await samlLogin()).toBeTruthy();
    expect(await circuit('org')).toBe(0);
  });

  it('the IdP metadata URL down or answering garbage is an outage (the connector starts, its logins are unavailable); a missing local file is not', async () => {
    const deps = h.deps;
    const closed = `http://127.0.0.1:${await freePort()}/metadata.xml`;
    for (const url of [closed, `${idp.baseUrl}/saml2/idp/no-such-page.php`]) {
      const connector = await createSamlConnector(samlUpstreamSchema.parse(samlInput({ id: 'org-b', idpMetadataUrl: url })), deps);
      const err = await connector.begin({} as Context, { callbackUrl: `${deps.issuer}/upstream/org-b/callback`, transactionId: 'tx' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UpstreamUnavailableError);
      expect((err as UpstreamUnavailableError).reason).toContain('IdP metadata');
    }
    const missing = join(mkdtempSync(join(tmpdir(), 'saml-cb-')), 'missing.xml');
    const err = await createSamlConnector(samlUpstreamSchema.parse(samlInput({ id: 'org-b', idpMetadataFile: missing })), deps).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(UpstreamUnavailableError);
  });
});
