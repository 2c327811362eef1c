import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import type { Server } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import * as oc from 'openid-client';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import type { SamlUpstreamInput } from '../../src/config/upstream-saml.ts';
import { AccountService } from '../../src/identity/accounts.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { API, REDIRECT, clientKey, testConfig } from '../helpers/broker.ts';
import { freePort } from '../peers/ports.ts';
import { generateKeyPair, simpleSamlAvailable, startSimpleSaml, type SimpleSamlPeer } from '../peers/simplesamlphp.ts';
import { Browser, followToClient, loginAtIdp, parseForm, type SamlEnv } from '../providers/saml/harness.ts';

// A real SAML IdP (SimpleSAMLphp) whose user carries staff attributes in its signed assertion: CIS2
// RBAC roles, a selected role, the broker's own role claim names, ODS organisations, a CIS2 user id,
// groups and a role. A trust's IdP is entitled to none of the staff ones unless configured (WS-25).

const STAFF_ATTRIBUTES: Record<string, string[]> = {
  nhsid_nrbac_roles: [JSON.stringify({ person_roleid: 'R-SAML', org_code: 'X26', role_code: 'S8000:G8000:R8000' })],
  selected_roleid: ['R-SAML'],
  selected_role_code: ['S8000:G8000:R8000'],
  selected_org_code: ['X26'],
  nhsid_user_orgs: ['X26'],
  nhsid_useruid: ['555000000077'],
};

describe.skipIf(!simpleSamlAvailable)('WS-25 a SAML IdP asserting staff attributes', () => {
  let idp: SimpleSamlPeer;
  let broker: Broker;
  let server: Server;
  let base: string;
  let web: oc.Configuration;
  let accounts: AccountService;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://localhost:${port}`;
    const sp = generateKeyPair('broker-sp');
    const ids = ['trust', 'trust-orgs'];
    idp = await startSimpleSaml({
      sps: ids.map((id) => ({ entityId: `${base}/upstream/${id}/metadata`, acsUrl: `${base}/upstream/${id}/callback`, sloUrl: `${base}/upstream/${id}/slo`, signingCertPem: sp.certPem })),
      users: [{ username: 'sam', password: 'sam-password', attributes: { uid: ['sam'], displayName: ['Sam Staff'], groups: ['admin'], role: ['admin'], ...STAFF_ATTRIBUTES } }],
    });
    const upstream = (id: string, extra: Partial<SamlUpstreamInput> = {}): SamlUpstreamInput => ({ id, type: 'saml', displayName: id, idpMetadataFile: idp.metadataFile, spPrivateKey: sp.keyPem, spCertificate: sp.certPem, linkable: [], ...extra });
    const cfg = testConfig(port, `sqlite:${join(mkdtempSync(join(tmpdir(), 'saml-entitlements-')), 'b.db')}`, await clientKey(), {
      upstreams: [upstream('trust'), upstream('trust-orgs', { mapping: { privileged: ['nhsid_user_orgs', 'nhsid_useruid'] } })],
    });
    cfg.clients!.find((c) => c.client_id === 'web')!.scope = 'openid profile roles patient/Patient.rs';
    broker = await createBroker(parseConfig(cfg, {}), { log: pino({ level: 'silent' }), env: {}, allowInsecureUpstreams: true });
    server = await broker.listen(port, '127.0.0.1');
    web = await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute: [oc.allowInsecureRequests] });
    accounts = new AccountService(broker.store.accounts, broker.sealer);
  }, 60_000);
  afterAll(async () => {
    server?.closeAllConnections();
    await broker?.close();
    await idp?.stop();
  });

  /** A full login as `sam` through upstream `id`: tokens and the stored profile. */
  async function login(id: string) {
    const browser = new Browser();
    const verifier = oc.randomPKCECodeVerifier();
    const auth = oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid profile roles patient/Patient.rs', resource: API, code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const interaction = new URL((await browser.get(auth.href)).headers.get('location')!, base).href;
    const chooser = parseForm(await (await browser.get(interaction)).text(), interaction);
    const uid = new URL(interaction).pathname.split('/').pop()!;
    const toIdp = await browser.postForm(`${base}/interaction/${uid}/login`, { csrf: chooser.fields.csrf, upstream: id });
    const answer = await loginAtIdp(browser, new URL(toIdp.headers.get('location')!, base).href, 'sam', 'sam-password');
    const acs = await browser.postForm(answer.acs, { SAMLResponse: answer.SAMLResponse, RelayState: answer.RelayState });
    const back = await followToClient({ base } as SamlEnv, browser, acs, answer.acs);
    const tokens = await oc.authorizationCodeGrant(web, back, { pkceCodeVerifier: verifier });
    const idToken = tokens.claims()! as Record<string, unknown>;
    return { id: idToken, access: decodeJwt(tokens.access_token) as Record<string, unknown>, profile: (await accounts.getProfile(String(idToken.sub)))! };
  }

  it('WS-25 an IdP not entitled to staff attributes: none of them reaches the tokens or the profile; its other attributes do', async () => {
    const t = await login('trust');
    for (const [where, claims] of Object.entries(t)) {
      for (const k of Object.keys(STAFF_ATTRIBUTES)) expect(claims[k], `${where}.${k}`).toBeUndefined();
      for (const k of ['groups', 'role']) {
        if (where !== 'profile') expect(claims[k], `${where}.${k}`).toBeUndefined();
      }
    }
    expect(t.profile.displayName).toBe('Sam Staff');
    expect(t.profile.role, 'an attribute that confers nothing is kept as asserted').toBe('admin');
  });

  it('WS-25 an IdP entitled to organisations and the CIS2 user id keeps those, and still gets no role', async () => {
    const t = await login('trust-orgs');
    expect(t.profile).toMatchObject({ nhsid_user_orgs: 'X26', nhsid_useruid: '555000000077' });
    for (const k of ['nhsid_nrbac_roles', 'selected_roleid', 'selected_role_code', 'selected_org_code']) {
      expect(t.profile[k], `profile.${k}`).toBeUndefined();
      expect(t.id[k], `id.${k}`).toBeUndefined();
      expect(t.access[k], `access.${k}`).toBeUndefined();
    }
  });
});
