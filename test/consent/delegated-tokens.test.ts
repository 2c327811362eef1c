import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { decodeJwt, createRemoteJWKSet, jwtVerify } from 'jose';
import pino from 'pino';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { parseConfig } from '../../src/config/load.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import type { Actor } from '../../src/delegation/service.ts';
import { clientKey, testConfig, API, REDIRECT } from '../helpers/broker.ts';
import { UserAgent, loginThrough, location } from '../helpers/browser.ts';
import { scriptedConnector } from '../helpers/scripted-connector.ts';
import { freePort } from '../peers/ports.ts';

// Delegated tokens end to end at the token level: a carer acting for a patient gets sub = patient,
// act.sub = carer, consent_id, scopes no wider than the consent, a short lifetime; the moment the
// consent ends, introspection says inactive and refresh fails.

const nhsLogin = scriptedConnector('nhs-login');
const P9 = { acr: 'P9.Cp.Cd', aal: 2, proofing: 'P9' as const };

describe('delegated tokens', () => {
  let broker: Broker;
  let server: Server;
  let base: string;
  let web: oc.Configuration;
  let patient: string;
  let carer: string;

  const rsBasic = `Basic ${Buffer.from('rs:rs-secret-0123456789ab').toString('base64')}`;
  const introspect = async (token: string) =>
    (await (await fetch(`${base}/token/introspection`, { method: 'POST', headers: { authorization: rsBasic, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }) })).json()) as Record<string, unknown>;

  beforeAll(async () => {
    const port = await freePort();
    const cfg = testConfig(port, `sqlite:${join(mkdtempSync(join(tmpdir(), 'delegated-')), 'b.db')}`, await clientKey());
    cfg.upstreams = [{ id: 'nhs-login', type: 'oidc', displayName: 'NHS login', issuer: 'https://auth.login.nhs.uk', client_id: 'x', client_secret: 'not-used-0123456789' }] as never;
    cfg.resources![0].scopes = ['patient/Patient.rs', 'patient/Observation.rs', 'system/Patient.rs', 'system/Observation.rs'];
    cfg.resources![0].accessTokenTTL = 900;
    cfg.clients!.find((c) => c.client_id === 'web')!.scope = 'openid profile offline_access patient/Patient.rs patient/Observation.rs';
    broker = await createBroker(parseConfig(cfg, {}), { log: pino({ level: 'silent' }), env: {}, connectors: [nhsLogin.connector] });
    server = await broker.listen(port, '127.0.0.1');
    base = `http://localhost:${(server.address() as AddressInfo).port}`;
    web = await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute: [oc.allowInsecureRequests] });
    patient = (await login('pat-1', 'self')).id.sub;
    carer = (await login('carer-1', 'self')).id.sub;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await broker?.close();
  });

  async function login(subject: string, actAs: string, scope = 'openid offline_access patient/Patient.rs patient/Observation.rs') {
    nhsLogin.queue.push({ subject, claims: { nhs_number: subject === 'pat-1' ? '9000000009' : '9000000017', name: subject }, assurance: P9 });
    const verifier = oc.randomPKCECodeVerifier();
    const url = oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope, resource: API, prompt: 'consent', code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const ua = new UserAgent();
    const back = await loginThrough(ua, url.href, 'nhs-login', base, async (res) => ua.get(location(res, base)), { actAs });
    const tokens = await oc.authorizationCodeGrant(web, back, { pkceCodeVerifier: verifier });
    return { id: tokens.claims()!, tokens, access: decodeJwt(tokens.access_token) };
  }

  const actor = (accountId: string): Actor => ({ accountId, assurance: { aal: 2, proofing: 'P9' } });

  async function delegate(scopes: string[]) {
    const { code } = await broker.delegation.invite(actor(patient), { access: { scopes }, period: { end: new Date(Date.now() + 30 * 86_400_000).toISOString() } });
    return broker.delegation.respond(actor(carer), code, 'accept');
  }

  it('a carer acting for a patient: sub = patient, act.sub = carer, consent_id, narrowed scope, at most 5 minutes', async () => {
    const consent = await delegate(['patient/Patient.rs']);
    const { access, id, tokens } = await login('carer-1', consent.id);
    expect(id.sub).toBe(carer);
    expect(access).toMatchObject({ sub: patient, act: { sub: carer }, consent_id: consent.id, patient, scope: 'patient/Patient.rs' });
    expect((access.exp as number) - (access.iat as number)).toBeLessThanOrEqual(300);
    await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL('/jwks', base)), { issuer: base, audience: API });
    expect(await introspect(tokens.access_token)).toMatchObject({ active: true, sub: patient, act: { sub: carer }, consent_id: consent.id, consent_status: 'active' });
  });

  it('revoking the consent: introspection inactive at once, refresh invalid_grant', async () => {
    const consent = await delegate(['patient/Patient.rs', 'patient/Observation.rs']);
    const { tokens } = await login('carer-1', consent.id);
    expect((await introspect(tokens.access_token)).active).toBe(true);
    const heard: string[] = [];
    const off = broker.bus.subscribe((id) => heard.push(id));
    await broker.delegation.end(actor(patient), consent.id, 'ROLE_DEACTIVATED_PATIENT_REQUEST');
    off();
    expect(heard).toContain(consent.id);
    expect(await introspect(tokens.access_token)).toEqual({ active: false });
    await expect(oc.refreshTokenGrant(web, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('a carer cannot act under a consent that is not theirs or not active (act-as refused)', async () => {
    const consent = await delegate(['patient/Patient.rs']);
    await broker.delegation.end(actor(carer), consent.id, 'ROLE_DEACTIVATED_PROXY_REQUEST');
    await expect(login('carer-1', consent.id)).rejects.toThrow(/403|expected a redirect/);
  });

  it('a carer with an SSO session is asked again (fresh login + act-as) when a client wants patient data', async () => {
    const ua = new UserAgent();
    nhsLogin.queue.push({ subject: 'carer-1', claims: { nhs_number: '9000000017' }, assurance: P9 });
    const first = oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: await oc.calculatePKCECodeChallenge(oc.randomPKCECodeVerifier()), code_challenge_method: 'S256' });
    await loginThrough(ua, first.href, 'nhs-login', base, async (res) => ua.get(location(res, base)));
    // Without patient scopes the SSO session answers at once...
    const sso = await ua.get(oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: await oc.calculatePKCECodeChallenge(oc.randomPKCECodeVerifier()), code_challenge_method: 'S256' }).href);
    expect(location(sso, base)).toMatch(/^https:\/\/client\.test\/cb\?code=/);
    // ...with patient scopes and a live delegation, the carer signs in again and chooses.
    await delegate(['patient/Patient.rs']);
    const again = await ua.get(oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid patient/Patient.rs', resource: API, code_challenge: await oc.calculatePKCECodeChallenge(oc.randomPKCECodeVerifier()), code_challenge_method: 'S256' }).href);
    expect(location(again, base)).toMatch(/\/interaction\//);
  });

  it('acting as themself, the carer gets an ordinary token', async () => {
    const { access } = await login('carer-1', 'self');
    expect(access.sub).toBe(carer);
    expect(access.act).toBeUndefined();
  });
});
