import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { decodeJwt } from 'jose';
import pino from 'pino';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { oidcUpstreamSchema } from '../../src/config/upstream-oidc.ts';
import { samlUpstreamSchema } from '../../src/config/upstream-saml.ts';
import { smartcardUpstreamSchema } from '../../src/config/upstream-smartcard.ts';
import { AccountService } from '../../src/identity/accounts.ts';
import { entitledClaims, keepEntitled, STAFF_CLAIMS } from '../../src/identity/entitlements.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { API, REDIRECT, clientKey, testConfig } from '../helpers/broker.ts';
import { UserAgent, loginThrough, loginThroughDemo, location } from '../helpers/browser.ts';
import { scriptedConnector } from '../helpers/scripted-connector.ts';
import { freePort } from '../peers/ports.ts';

// Staff claims (CIS2 RBAC roles, the selected role, ODS organisations, the CIS2 user id) count only from
// an upstream entitled to assert them (catalogue WS-25): the CIS2 preset by default, any other upstream
// only when configured to; the broker's own token claim names never from anyone.

const ROLE = { person_orgid: '1', person_roleid: 'R-FAKE', org_code: 'X26', role_code: 'S8000:G8000:R8000', role_name: 'Clinical Practitioner' };
const STAFF_ASSERTED = { nhsid_nrbac_roles: [ROLE], selected_roleid: 'R-FAKE', nhsid_user_orgs: [{ org_code: 'X26' }], nhsid_useruid: '555000000099', selected_role_code: 'S8000:G8000:R8000', selected_org_code: 'X26' };
const AAL3 = { acr: 'AAL3_ANY', aal: 3, amr: ['pwd'] };

const oidcBase = { type: 'oidc', displayName: 'X', issuer: 'https://op.example', client_id: 'c', client_secret: 'not-used-0123456789' } as const;

describe('staff claim entitlements: configuration', () => {
  it('WS-25 defaults: the CIS2 preset may assert every staff claim; NHS login, a generic OP, SAML and smartcard none', () => {
    expect(oidcUpstreamSchema.parse({ ...oidcBase, id: 'a', preset: 'cis2' }).mapping.privileged).toEqual([...STAFF_CLAIMS]);
    expect(oidcUpstreamSchema.parse({ ...oidcBase, id: 'b' }).mapping.privileged).toEqual([]);
    expect(oidcUpstreamSchema.parse({ ...oidcBase, id: 'c', preset: 'nhs-login', client_secret: undefined, private_key_file: '/k.pem' }).mapping.privileged).toEqual([]);
    const saml = samlUpstreamSchema.parse({ id: 's', type: 'saml', displayName: 'S', idpMetadataFile: '/m.xml', spPrivateKeyFile: '/k', spCertificateFile: '/c' });
    expect(entitledClaims(saml.mapping)).toEqual([]);
    const card = smartcardUpstreamSchema.parse({ id: 'sc', type: 'smartcard', displayName: 'C', direct: true, trust: { caFile: '/ca.pem' }, revocation: { disabled: true }, subject: { from: 'uid' } });
    expect(entitledClaims(card.mapping)).toEqual([]);
    // A generic upstream can be entitled explicitly, to some claims only.
    expect(oidcUpstreamSchema.parse({ ...oidcBase, id: 'd', mapping: { privileged: ['nhsid_user_orgs'] } }).mapping.privileged).toEqual(['nhsid_user_orgs']);
  });

  it('WS-25 NHS login cannot be entitled to staff claims, and the broker\'s own claim names are not entitlements', () => {
    const nhs = oidcUpstreamSchema.safeParse({ ...oidcBase, id: 'n', preset: 'nhs-login', client_secret: undefined, private_key_file: '/k.pem', mapping: { privileged: ['nhsid_nrbac_roles'] } });
    expect(nhs.success).toBe(false);
    expect(nhs.error?.issues.map((i) => i.message).join('\n')).toMatch(/patient identity provider/);
    expect(oidcUpstreamSchema.safeParse({ ...oidcBase, id: 'g', mapping: { privileged: ['selected_role_code'] } }).success).toBe(false);
  });

  it('WS-25 a linking identifier, required claim, allowed values or mapped attribute on a staff claim the upstream may not assert is a configuration error', () => {
    const cfg = testConfig(0, 'sqlite::memory:', { privateKey: undefined as never, jwk: { kty: 'EC' } });
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ linkable: [{ claim: 'nhsid_useruid', kind: 'cis2_uid' }] }, /upstreams\[0\]\.linkable\[0\]\.claim: nhsid_useruid is a staff claim/],
      [{ mapping: { required: ['nhsid_nrbac_roles'] } }, /upstreams\[0\]\.mapping\.required\[0\]: nhsid_nrbac_roles is a staff claim/],
      [{ mapping: { allowed: { selected_roleid: ['R1'] } } }, /mapping\.allowed\.selected_roleid: selected_roleid is a staff claim/],
      [{ mapping: { claims: { org: 'nhsid_user_orgs.0.org_code' } } }, /mapping\.claims\.org: nhsid_user_orgs is a staff claim/],
      [{ mapping: { claims: { role: 'selected_role_code' } } }, /selected_role_code is a staff claim/],
      // Written under a privileged name from an ordinary attribute: it would reach ID tokens as a role.
      [{ mapping: { claims: { selected_role_code: 'department' } } }, /mapping\.claims\.selected_role_code: selected_role_code is a staff claim/],
      [{ mapping: { claims: { nhsid_nrbac_roles: 'groups' } } }, /mapping\.claims\.nhsid_nrbac_roles: nhsid_nrbac_roles is a staff claim/],
    ];
    for (const [extra, message] of cases) {
      const input = { ...cfg, clients: [], upstreams: [{ ...oidcBase, id: 'x', ...extra }] } as never;
      let problems = '';
      try {
        parseConfig(input, {});
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        problems = (err as ConfigError).problems.join('\n');
      }
      expect(problems, JSON.stringify(extra)).toMatch(message);
    }
    // [P] The same settings are fine where the upstream is entitled.
    expect(() => parseConfig({ ...cfg, clients: [], upstreams: [{ ...oidcBase, id: 'x', preset: 'cis2', linkable: [{ claim: 'nhsid_useruid', kind: 'cis2_uid' }], mapping: { required: ['nhsid_nrbac_roles'] } }] } as never, {})).not.toThrow();
  });

  it('keepEntitled drops exactly the privileged claims not on the list, and nothing else', () => {
    const identity = { provider: 'p', subject: 's', authTime: 1, assurance: {}, claims: { name: 'N', groups: ['g'], ...STAFF_ASSERTED } };
    expect(keepEntitled(identity, []).claims).toEqual({ name: 'N', groups: ['g'] });
    expect(keepEntitled(identity, ['nhsid_useruid']).claims).toEqual({ name: 'N', groups: ['g'], nhsid_useruid: '555000000099' });
    // Broker-minted names go whatever the list says.
    expect(keepEntitled(identity, [...STAFF_CLAIMS]).claims).not.toHaveProperty('selected_role_code');
    expect(identity.claims.selected_role_code, 'the input is not changed').toBe('S8000:G8000:R8000');
  });
});

describe('staff claim entitlements: logins through configured upstreams', () => {
  const partner = scriptedConnector('partner');
  const orgs = scriptedConnector('partner-orgs');
  const cis2 = scriptedConnector('cis2');
  let broker: Broker;
  let server: Server;
  let base: string;
  let web: oc.Configuration;
  let accounts: AccountService;

  beforeAll(async () => {
    const port = await freePort();
    const cfg = testConfig(port, `sqlite:${join(mkdtempSync(join(tmpdir(), 'entitlements-')), 'b.db')}`, await clientKey());
    cfg.upstreams = [
      { ...oidcBase, id: 'partner', displayName: 'Partner (generic OP)' },
      { ...oidcBase, id: 'partner-orgs', displayName: 'Partner entitled to ODS organisations', mapping: { privileged: ['nhsid_user_orgs'] } },
      { ...oidcBase, id: 'cis2', preset: 'cis2', displayName: 'CIS2' },
    ] as never;
    cfg.clients!.find((c) => c.client_id === 'web')!.scope = 'openid profile roles patient/Patient.rs';
    broker = await createBroker(parseConfig(cfg, {}), { log: pino({ level: 'silent' }), env: {}, connectors: [partner.connector, orgs.connector, cis2.connector] });
    server = await broker.listen(port, '127.0.0.1');
    base = `http://localhost:${(server.address() as AddressInfo).port}`;
    web = await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute: [oc.allowInsecureRequests] });
    accounts = new AccountService(broker.store.accounts, broker.sealer);
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await broker?.close();
  });

  async function authorize(): Promise<{ url: URL; verifier: string }> {
    const verifier = oc.randomPKCECodeVerifier();
    const url = oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid roles patient/Patient.rs', resource: API, code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    return { url, verifier };
  }
  async function redeem(back: URL, verifier: string) {
    const tokens = await oc.authorizationCodeGrant(web, back, { pkceCodeVerifier: verifier });
    const id = tokens.claims()!;
    return { id: id as Record<string, unknown>, access: decodeJwt(tokens.access_token) as Record<string, unknown>, profile: (await accounts.getProfile(id.sub))! };
  }
  async function login(connector: typeof partner, subject: string) {
    connector.queue.push({ subject, claims: { name: 'Pat Partner', ...STAFF_ASSERTED }, assurance: AAL3 });
    const { url, verifier } = await authorize();
    const ua = new UserAgent();
    return redeem(await loginThrough(ua, url.href, connector.connector.id, base, async (res) => ua.get(location(res, base))), verifier);
  }

  it('WS-25 a generic OP asserting CIS2 roles, a selected role, organisations and the broker\'s role claims: none reaches the tokens or the profile', async () => {
    const t = await login(partner, 'partner-1');
    for (const [where, claims] of Object.entries({ id: t.id, access: t.access, profile: t.profile })) {
      for (const k of Object.keys(STAFF_ASSERTED)) expect(claims[k], `${where}.${k}`).toBeUndefined();
    }
    // [P] The rest of what it asserted is kept.
    expect(t.profile.name).toBe('Pat Partner');
  });

  it('WS-25 an upstream entitled to organisations only keeps them, and still gets no role', async () => {
    const t = await login(orgs, 'orgs-1');
    expect(t.profile.nhsid_user_orgs).toEqual([{ org_code: 'X26' }]);
    for (const k of ['nhsid_nrbac_roles', 'selected_roleid', 'nhsid_useruid', 'selected_role_code', 'selected_org_code']) expect(t.profile[k], k).toBeUndefined();
    expect(t.access.selected_role_code).toBeUndefined();
    expect(t.id.selected_role_code).toBeUndefined();
  });

  it('[P] WS-25 the CIS2 preset\'s upstream gets the role it asserts; the broker\'s role claims come from the choice, not from the upstream', async () => {
    cis2.queue.push({ subject: 'cis2-1', claims: { nhsid_useruid: 'cis2-1', nhsid_nrbac_roles: [ROLE], selected_role_code: 'S9999:G9999:R9999', selected_org_code: 'ZZZ' }, assurance: AAL3 });
    const { url, verifier } = await authorize();
    const ua = new UserAgent();
    const t = await redeem(await loginThrough(ua, url.href, 'cis2', base, async (res) => ua.get(location(res, base))), verifier);
    expect(t.access).toMatchObject({ selected_roleid: 'R-FAKE', selected_role_code: 'S8000:G8000:R8000', selected_org_code: 'X26' });
    expect(t.id).toMatchObject({ selected_role_code: 'S8000:G8000:R8000', selected_org_code: 'X26' });
    expect(t.profile.nhsid_nrbac_roles).toEqual([ROLE]);
    expect(t.profile.selected_role_code).toBeUndefined();
  });

  it('[P] WS-25 the demo upstream (the broker\'s own personas) still gives its nurse roles', async () => {
    const { url, verifier } = await authorize();
    const ua = new UserAgent();
    const t = await redeem(await loginThroughDemo(ua, url.href, 'nurse', base), verifier);
    expect(t.access.selected_roleid).toEqual(expect.any(String));
    expect(t.profile.nhsid_nrbac_roles).toHaveLength(2);
  });
});
