import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { decodeJwt } from 'jose';
import pino from 'pino';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { parseConfig } from '../../src/config/load.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { clientKey, testConfig, API, REDIRECT } from '../helpers/broker.ts';
import { UserAgent, loginThrough, location } from '../helpers/browser.ts';
import { scriptedConnector } from '../helpers/scripted-connector.ts';
import { freePort } from '../peers/ports.ts';
import type { Server } from 'node:http';

// Identity: mapping rules, linking only on strong evidence, assurance step-up, staff role choice.

const nhsLoginA = scriptedConnector('nhs-login');
const nhsLoginB = scriptedConnector('nhs-login-b');
const cis2 = scriptedConnector('cis2');
const P9 = { acr: 'P9.Cp.Cd', aal: 2, proofing: 'P9' as const, vot: 'P9.Cp.Cd' };
const P5 = { acr: 'P5.Cp.Cd', aal: 2, proofing: 'P5' as const, vot: 'P5.Cp.Cd' };

describe('identity: mapping, linking, step-up, roles', () => {
  let broker: Broker;
  let server: Server;
  let base: string;
  let web: oc.Configuration;
  let strict: oc.Configuration;
  let patientApp: oc.Configuration;

  beforeAll(async () => {
    const port = await freePort();
    const cfg = testConfig(port, `sqlite:${join(mkdtempSync(join(tmpdir(), 'identity-')), 'b.db')}`, await clientKey());
    const linkNhs = [{ claim: 'nhs_number', kind: 'nhs_number', minimumProofing: 'P9' as const }];
    cfg.upstreams = [
      { id: 'nhs-login', type: 'oidc', displayName: 'NHS login', issuer: 'https://auth.login.nhs.uk', client_id: 'x', client_secret: 'not-used-0123456789', linkable: linkNhs, mapping: { required: ['nhs_number'] } },
      { id: 'nhs-login-b', type: 'oidc', displayName: 'NHS login (second)', issuer: 'https://auth.sandpit.signin.nhs.uk', client_id: 'x', client_secret: 'not-used-0123456789', linkable: linkNhs },
      { id: 'cis2', type: 'oidc', preset: 'cis2', displayName: 'CIS2', client_id: 'x', client_secret: 'not-used-0123456789', issuer: 'https://am.nhsint.auth-ptl.cis2.spineservices.nhs.uk:443/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare', linkable: [{ claim: 'nhsid_useruid', kind: 'cis2_uid', minimumAal: 2 }] },
    ] as never;
    cfg.clients!.push({ client_id: 'strict', client_secret: 'strict-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [REDIRECT], resources: [API], firstParty: true, scope: 'openid roles patient/Patient.rs', minimumAssurance: { aal: 3 } });
    cfg.clients!.push({ client_id: 'patient-app', client_secret: 'patient-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [REDIRECT], resources: [API], firstParty: true, scope: 'openid patient/Patient.rs', minimumAssurance: { proofing: 'P9' } });
    cfg.clients!.find((c) => c.client_id === 'web')!.scope = 'openid profile offline_access roles patient/Patient.rs';
    broker = await createBroker(parseConfig(cfg, {}), { log: pino({ level: 'silent' }), env: {}, connectors: [nhsLoginA.connector, nhsLoginB.connector, cis2.connector] });
    server = await broker.listen(port, '127.0.0.1');
    base = `http://localhost:${(server.address() as AddressInfo).port}`;
    const insecure = { execute: [oc.allowInsecureRequests] };
    web = await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), insecure);
    strict = await oc.discovery(new URL(base), 'strict', undefined, oc.ClientSecretBasic('strict-secret-0123456789'), insecure);
    patientApp = await oc.discovery(new URL(base), 'patient-app', undefined, oc.ClientSecretBasic('patient-secret-0123456789'), insecure);
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await broker?.close();
  });

  async function login(client: oc.Configuration, upstream: string, scope = 'openid roles patient/Patient.rs') {
    const verifier = oc.randomPKCECodeVerifier();
    const url = oc.buildAuthorizationUrl(client, { redirect_uri: REDIRECT, scope, resource: API, code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const ua = new UserAgent();
    const back = await loginThrough(ua, url.href, upstream, base, async (res) => ua.get(location(res, base)));
    const tokens = await oc.authorizationCodeGrant(client, back, { pkceCodeVerifier: verifier });
    return { idToken: tokens.claims()!, access: decodeJwt(tokens.access_token) };
  }

  async function accountCount(): Promise<number> {
    const db = (broker.store as unknown as { db: import('node:sqlite').DatabaseSync }).db;
    return (db.prepare('SELECT COUNT(*) AS n FROM accounts').get() as { n: number }).n;
  }

  it('a verified NHS number from a P9 login links a second provider to the same account', async () => {
    nhsLoginA.queue.push({ subject: 'a-1', claims: { nhs_number: '9990000001', name: 'Ann' }, assurance: P9 });
    const first = await login(web, 'nhs-login');
    nhsLoginB.queue.push({ subject: 'b-1', claims: { nhs_number: '9990000001' }, assurance: P9 });
    const second = await login(web, 'nhs-login-b');
    expect(second.idToken.sub).toBe(first.idToken.sub);
    expect(await broker.store.accounts.listLinks(first.idToken.sub)).toEqual(
      expect.arrayContaining([expect.objectContaining({ provider: 'nhs-login-b', subject: 'b-1', evidence: 'nhs_number:P9' })]),
    );
  });

  it('the same NHS number from a P5 login does not link', async () => {
    nhsLoginA.queue.push({ subject: 'a-2', claims: { nhs_number: '9990000002' }, assurance: P9 });
    const first = await login(web, 'nhs-login');
    nhsLoginB.queue.push({ subject: 'b-2', claims: { nhs_number: '9990000002' }, assurance: P5 });
    const second = await login(web, 'nhs-login-b');
    expect(second.idToken.sub).not.toBe(first.idToken.sub);
  });

  it('a second provider with the same e-mail does not link', async () => {
    nhsLoginA.queue.push({ subject: 'a-3', claims: { nhs_number: '9990000003', email: 'same@example.org', email_verified: true }, assurance: P9 });
    const first = await login(web, 'nhs-login');
    cis2.queue.push({ subject: 'c-3', claims: { email: 'same@example.org', email_verified: true, nhsid_useruid: 'c-3' }, assurance: { acr: 'AAL3_ANY', aal: 3 } });
    const second = await login(web, 'cis2');
    expect(second.idToken.sub).not.toBe(first.idToken.sub);
  });

  it('a login missing a required claim is refused and creates no account', async () => {
    const before = await accountCount();
    nhsLoginA.queue.push({ subject: 'a-4', claims: { name: 'No Number' }, assurance: P9 });
    await expect(login(web, 'nhs-login')).rejects.toThrow(/401/);
    expect(await accountCount()).toBe(before);
  });

  it('an AAL2 login where AAL3 is required steps up at the upstream, then succeeds', async () => {
    cis2.queue.push({ subject: 'c-5', claims: { nhsid_useruid: 'c-5' }, assurance: { acr: 'AAL2_ANY', aal: 2 } });
    cis2.queue.push({ subject: 'c-5', claims: { nhsid_useruid: 'c-5' }, assurance: { acr: 'AAL3_ANY', aal: 3, amr: ['sc'] } });
    const seen = cis2.requests.length;
    const { idToken, access } = await login(strict, 'cis2');
    expect(idToken.acr).toBe('AAL3_ANY');
    expect(access.authentication_assurance_level).toBe('3');
    const [first, stepUp] = cis2.requests.slice(seen);
    expect(first.minimumAssurance).toEqual({ aal: 3 });
    expect(stepUp.prompt).toBe('login');
    expect(stepUp.minimumAssurance).toEqual({ aal: 3 });
  });

  it('still too weak after step-up: refused, no token', async () => {
    cis2.queue.push({ subject: 'c-6', claims: {}, assurance: { acr: 'AAL2_ANY', aal: 2 } });
    cis2.queue.push({ subject: 'c-6', claims: {}, assurance: { acr: 'AAL2_ANY', aal: 2 } });
    await expect(login(strict, 'cis2')).rejects.toThrow(/401/);
  });

  it('a P5 patient where P9 is required steps up with the proofing requirement', async () => {
    nhsLoginA.queue.push({ subject: 'a-9', claims: { nhs_number: '9990000009' }, assurance: P5 });
    nhsLoginA.queue.push({ subject: 'a-9', claims: { nhs_number: '9990000009' }, assurance: P9 });
    const seen = nhsLoginA.requests.length;
    const { idToken, access } = await login(patientApp, 'nhs-login', 'openid patient/Patient.rs');
    expect(idToken.acr).toBe('P9.Cp.Cd');
    expect(access.identity_proofing_level).toBe('P9');
    const stepUp = nhsLoginA.requests[seen + 1];
    expect(stepUp).toMatchObject({ prompt: 'login', minimumAssurance: { proofing: 'P9' } });
  });

  it('staff with two roles choose one; tokens carry role id, role code and ODS code', async () => {
    const roles = [
      { person_orgid: '1', person_roleid: 'R-ADMIN', org_code: 'X26', role_code: 'S8002:G8003:R0001', role_name: 'Admin' },
      { person_orgid: '2', person_roleid: 'R-NURSE', org_code: 'Y51', role_code: 'S8000:G8000:R8001', role_name: 'Nurse' },
    ];
    cis2.queue.push({ subject: 'c-7', claims: { nhsid_useruid: 'c-7', nhsid_nrbac_roles: roles }, assurance: { acr: 'AAL3_ANY', aal: 3 } });
    // loginThrough picks the first role offered.
    const { idToken, access } = await login(strict, 'cis2');
    expect(access).toMatchObject({ selected_roleid: 'R-ADMIN', selected_role_code: 'S8002:G8003:R0001', selected_org_code: 'X26' });
    expect(idToken.selected_roleid).toBe('R-ADMIN');
  });

  it("the upstream's selected_roleid is used without asking", async () => {
    const roles = [
      { person_orgid: '1', person_roleid: 'R-ADMIN', org_code: 'X26', role_code: 'S8002:G8003:R0001' },
      { person_orgid: '2', person_roleid: 'R-NURSE', org_code: 'Y51', role_code: 'S8000:G8000:R8001' },
    ];
    cis2.queue.push({ subject: 'c-8', claims: { nhsid_useruid: 'c-8', nhsid_nrbac_roles: roles, selected_roleid: 'R-NURSE' }, assurance: { acr: 'AAL3_ANY', aal: 3 } });
    const { access } = await login(strict, 'cis2');
    expect(access.selected_org_code).toBe('Y51');
  });
});
