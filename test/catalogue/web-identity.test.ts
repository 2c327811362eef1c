// Catalogue section 6B (identity mapping and account linking). Two set-ups:
//  - the real fake CIS2 and NHS login OPs behind the broker (test/providers/oidc/harness.ts), for what an
//    upstream asserts in its signed ID token: a mutable e-mail (nOAuth), a subject another IdP also
//    uses, attributes it is not trusted for;
//  - scripted upstreams with linking configured as in production (NHS number at P9, CIS2 user id), for
//    the linking decisions themselves: e-mail, verified or not, never links; a pre-registered account
//    with the victim's address is never joined to the victim's login.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import * as oc from 'openid-client';
import { decodeJwt } from 'jose';
import pino from 'pino';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { createOidcConnector } from '../../providers/oidc/index.ts';
import { API, REDIRECT, clientKey, testConfig } from '../helpers/broker.ts';
import { UserAgent, loginThrough, location } from '../helpers/browser.ts';
import { scriptedConnector } from '../helpers/scripted-connector.ts';
import { freePort } from '../peers/ports.ts';
import { Browser, startHarness, type Harness } from '../providers/oidc/harness.ts';
import { CIS2_PERSONAS } from '../peers/fake-cis2.ts';

const P9 = { acr: 'P9.Cp.Cd', aal: 2, proofing: 'P9' as const, vot: 'P9.Cp.Cd' };

describe('linking decisions (scripted upstreams, linking configured)', () => {
  const nhs = scriptedConnector('nhs-login');
  const partner = scriptedConnector('partner');
  let broker: Broker;
  let server: Server;
  let base: string;
  let web: oc.Configuration;

  beforeAll(async () => {
    const port = await freePort();
    const cfg = testConfig(port, `sqlite:${join(mkdtempSync(join(tmpdir(), 'ws-identity-')), 'b.db')}`, await clientKey());
    cfg.upstreams = [
      { id: 'nhs-login', type: 'oidc', displayName: 'NHS login', issuer: 'https://auth.login.nhs.uk', client_id: 'x', client_secret: 'not-used-0123456789', linkable: [{ claim: 'nhs_number', kind: 'nhs_number', minimumProofing: 'P9' }] },
      // A partner IdP whose users set their own e-mail address.
      { id: 'partner', type: 'oidc', displayName: 'Partner', issuer: 'https://idp.partner.example', client_id: 'x', client_secret: 'not-used-0123456789', linkable: [{ claim: 'employee_id', kind: 'partner_employee', minimumAal: 2 }] },
    ] as never;
    broker = await createBroker(parseConfig(cfg, {}), { log: pino({ level: 'silent' }), env: {}, connectors: [nhs.connector, partner.connector] });
    server = await broker.listen(port, '127.0.0.1');
    base = `http://localhost:${(server.address() as AddressInfo).port}`;
    web = await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute: [oc.allowInsecureRequests] });
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await broker?.close();
  });

  /** Signs in through `connector` with the identity queued; returns the broker account (the ID token's sub). */
  async function login(connector: typeof nhs, identity: { subject: string; claims: Record<string, unknown>; assurance?: typeof P9 }): Promise<string> {
    connector.queue.push({ subject: identity.subject, claims: identity.claims, assurance: identity.assurance ?? P9 });
    const verifier = oc.randomPKCECodeVerifier();
    const url = oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid', resource: API, code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const ua = new UserAgent();
    const back = await loginThrough(ua, url.href, connector.connector.id, base, async (res) => ua.get(location(res, base)));
    return (await oc.authorizationCodeGrant(web, back, { pkceCodeVerifier: verifier })).claims()!.sub;
  }
  const links = (accountId: string) => broker.store.accounts.listLinks(accountId);

  it('WS-19 an e-mail matching an existing account, unverified, absent, or even verified, does not link: a separate account, the existing one untouched', async () => {
    const victim = await login(nhs, { subject: 'nhs-victim-19', claims: { nhs_number: '9990001901', email: 'victim19@example.org', email_verified: true } });
    const seen = new Set([victim]);
    for (const claims of [{ email_verified: false }, {}, { email_verified: 'false' }, { email_verified: true }]) {
      const other = await login(partner, { subject: `partner-19-${seen.size}`, claims: { email: 'victim19@example.org', ...claims } });
      expect(seen.has(other), JSON.stringify(claims)).toBe(false);
      seen.add(other);
    }
    expect(await links(victim)).toEqual([expect.objectContaining({ provider: 'nhs-login', subject: 'nhs-victim-19' })]);
  });

  it('WS-19 e-mail cannot be configured as a linking identifier', () => {
    const cfg = testConfig(0, 'sqlite::memory:', { privateKey: undefined as never, jwk: { kty: 'EC' } });
    for (const claim of ['email', 'e-mail', 'Email_Address']) {
      const input = { ...cfg, clients: [], upstreams: [{ id: 'x', type: 'oidc', displayName: 'X', issuer: 'https://x.example', client_id: 'x', client_secret: 'not-used-0123456789', linkable: [{ claim, kind: 'email' }] }] } as never;
      expect(() => parseConfig(input, {}), claim).toThrow(ConfigError);
      try {
        parseConfig(input, {});
      } catch (err) {
        expect((err as ConfigError).problems.join('\n')).toMatch(/e-mail is never a linking identifier/);
      }
    }
  });

  it('WS-20 an account pre-registered with the victim\'s address (unverified) is never joined to the victim\'s login through a trusted IdP', async () => {
    const attacker = await login(partner, { subject: 'partner-squatter-20', claims: { email: 'victim20@example.org', email_verified: false, name: 'Victim Twenty' } });
    const victim = await login(nhs, { subject: 'nhs-victim-20', claims: { nhs_number: '9990002001', email: 'victim20@example.org', email_verified: true, name: 'Victim Twenty' } });
    expect(victim).not.toBe(attacker);
    expect(await links(attacker)).toEqual([expect.objectContaining({ provider: 'partner', subject: 'partner-squatter-20', evidence: 'jit' })]);
    expect(await links(victim)).toEqual([expect.objectContaining({ provider: 'nhs-login', subject: 'nhs-victim-20', evidence: 'jit' })]);
    // Each keeps reaching their own account.
    expect(await login(partner, { subject: 'partner-squatter-20', claims: { email: 'victim20@example.org' } })).toBe(attacker);
    expect(await login(nhs, { subject: 'nhs-victim-20', claims: { nhs_number: '9990002001' } })).toBe(victim);
  });

  it('WS-20 a linking identifier asserted below its required assurance does not join accounts either', async () => {
    const first = await login(nhs, { subject: 'nhs-first-20b', claims: { nhs_number: '9990002002' } });
    const weak = await login(nhs, { subject: 'nhs-weak-20b', claims: { nhs_number: '9990002002' }, assurance: { ...P9, proofing: 'P5' as never, acr: 'P5.Cp.Cd', vot: 'P5.Cp.Cd' } });
    expect(weak).not.toBe(first);
    // [P] the same identifier at P9 from another login does join (strong evidence).
    expect(await login(nhs, { subject: 'nhs-strong-20b', claims: { nhs_number: '9990002002' } })).toBe(first);
  });

  it('WS-23 the same subject from two IdPs is two accounts, each link namespaced by its IdP', async () => {
    const a = await login(nhs, { subject: 'shared-subject-23', claims: {} });
    const b = await login(partner, { subject: 'shared-subject-23', claims: {} });
    expect(b).not.toBe(a);
    expect(await links(a)).toEqual([expect.objectContaining({ provider: 'nhs-login', subject: 'shared-subject-23' })]);
    expect(await links(b)).toEqual([expect.objectContaining({ provider: 'partner', subject: 'shared-subject-23' })]);
  });
});

describe('what real upstream OPs assert (fake CIS2 and NHS login behind the broker)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ extra: async ({ cis2Config, deps }) => [await createOidcConnector(cis2Config({ id: 'cis2-b', displayName: 'CIS2 (second entry)' }), deps)] });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });
  afterEach(() => {
    // A tamper is used by the next token the fake issues: never leave one for the next test.
    h.cis2.tamper = h.nhs.tamper = undefined;
    h.cis2.tamperUserinfo = h.nhs.tamperUserinfo = undefined;
  });

  /** A login through the broker to the web client; returns the ID token and access token claims. */
  async function tokens(upstream: string, persona: string) {
    if (upstream.startsWith('nhs')) h.nhs.defaultPersona = persona;
    const c = await h.clientLogin({ login_hint: persona, resource: API, scope: 'openid profile' });
    const outcome = await h.login(new Browser(), c.authorizationUrl, { upstream });
    if (outcome.kind !== 'client') throw new Error(`login failed: ${outcome.status} ${outcome.html.slice(0, 200)} ${h.reasons(0).slice(-2).join(' | ')}`);
    const t = await oc.authorizationCodeGrant(h.web, outcome.url, { pkceCodeVerifier: c.verifier, expectedState: c.state, expectedNonce: c.nonce });
    return { id: t.claims()!, access: decodeJwt(t.access_token) as Record<string, unknown> };
  }

  it('WS-22 nOAuth: another user of the same IdP who sets the victim\'s e-mail (and claims it verified) gets their own account, keyed on the subject', async () => {
    const victim = (await tokens('cis2', 'nurse')).id.sub;
    const before = await h.counts();
    h.cis2.tamper = { claims: { email: CIS2_PERSONAS.nurse.email, email_verified: true, preferred_username: CIS2_PERSONAS.nurse.email, upn: CIS2_PERSONAS.nurse.email } };
    const attacker = (await tokens('cis2', 'gp')).id.sub;
    expect(attacker).not.toBe(victim);
    expect((await h.counts()).accounts).toBe(before.accounts + 1);
    // The victim's account still has only the victim's login.
    expect(await h.store.accounts.listLinks(victim)).toEqual([expect.objectContaining({ provider: 'cis2', subject: CIS2_PERSONAS.nurse.uid })]);
  });

  it('WS-23 the same subject through a second IdP entry, and from another issuer (NHS login asserting the CIS2 user\'s sub), is another account each time', async () => {
    const viaCis2 = (await tokens('cis2', 'noRoles')).id.sub;
    const viaSecondEntry = (await tokens('cis2-b', 'noRoles')).id.sub;
    expect(viaSecondEntry).not.toBe(viaCis2);
    const uid = CIS2_PERSONAS.noRoles.uid;
    h.nhs.tamper = { claims: { sub: uid } };
    h.nhs.tamperUserinfo = { sub: uid };
    const viaNhs = (await tokens('nhs-login', 'p9')).id.sub;
    expect(new Set([viaCis2, viaSecondEntry, viaNhs]).size).toBe(3);
    expect(await h.store.accounts.findLink('nhs-login', uid)).toMatchObject({ accountId: viaNhs });
    expect(await h.store.accounts.findLink('cis2', uid)).toMatchObject({ accountId: viaCis2 });
  });

  it('WS-25 groups and role attributes an IdP asserts do not reach the tokens', async () => {
    h.nhs.tamper = { claims: { groups: ['admin'], roles: ['admin'], role: 'admin', admin: true, scope: 'admin' } };
    const { id, access } = await tokens('nhs-login', 'p9');
    for (const claims of [id as Record<string, unknown>, access]) {
      for (const k of ['groups', 'roles', 'role', 'admin']) expect(claims[k], k).toBeUndefined();
    }
    expect(String(access.scope ?? '')).not.toMatch(/admin/);
  });

  let roleTokens: Awaited<ReturnType<typeof tokens>> | undefined;
  it('[P] WS-25 a patient login through NHS login whose ID token asserts CIS2 national RBAC roles completes (set-up of the next test)', async () => {
    const role = { person_orgid: '1', person_roleid: 'R-FAKE', org_code: 'X26', role_code: 'S8000:G8000:R8000', role_name: 'Clinical Practitioner' };
    h.nhs.tamper = { claims: { nhsid_nrbac_roles: [role], selected_roleid: 'R-FAKE' } };
    roleTokens = await tokens('nhs-login', 'p9');
    expect(roleTokens.id.acr).toBe('P9.Cp.Cd');
  });

  // NHS login is a patient identity provider: the staff claims it sends are dropped as its identity
  // arrives (the preset drops them, and no configuration can entitle it to them).
  it('WS-25 that patient IdP\'s RBAC roles give no staff role in the access token or the profile', async () => {
    expect(roleTokens).toBeDefined();
    expect(roleTokens!.access.selected_role_code).toBeUndefined();
    expect(roleTokens!.access.selected_roleid).toBeUndefined();
    expect(roleTokens!.id.selected_roleid).toBeUndefined();
    const profile = await h.accounts().getProfile(roleTokens!.id.sub);
    expect(profile?.nhs_number, 'the login itself went through').toBeTruthy();
    expect(profile?.nhsid_nrbac_roles).toBeUndefined();
    expect(profile?.selected_roleid).toBeUndefined();
  });

  it('[P] WS-25 the CIS2 upstream, entitled to staff claims, still gives its nurse the role selected there', async () => {
    const { access } = await tokens('cis2', 'nurse');
    expect(access).toMatchObject({ selected_roleid: CIS2_PERSONAS.nurse.picks, selected_role_code: expect.stringMatching(/^S\d+:G\d+:R\d+$/) });
  });
});
