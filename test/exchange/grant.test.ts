// RFC 8693 token exchange end to end: openid-client's genericGrantRequest against the broker, with
// private_key_jwt clients, broker subject tokens (plain, delegated, opaque, already exchanged) and ID
// tokens or JWTs from CIS2-, NHS login- and partner-like issuers served from a local JWKS host.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, jwtVerify, generateKeyPair, SignJWT } from 'jose';
import * as oc from 'openid-client';
import Koa from 'koa';
import type { Server } from 'node:http';
import { exchangeExplainRoutes } from '../../src/web/exchange-explain.ts';
import { freePort } from '../peers/ports.ts';
import { ADMIN_API, ADMIN_TOKEN, API, API2, API_B, AT, CIS2_AUD, IDT, JWT, NHS_AUD, OPAQUE_API, auditedDeny, client, clientCredentialsToken, rawExchange, delegate, exchange, exchangeEntry, introspect, issuerKey, login, person, refused, signToken, startFixture, type Fixture, type Params } from './helpers.ts';

let f: Fixture;
let patient: string;
let carer: string;
let webToken: string;

beforeAll(async () => {
  f = await startFixture();
  const p = await login(f, 'pat-1');
  patient = p.sub;
  webToken = p.access;
  carer = (await login(f, 'carer-1')).sub;
});
afterAll(async () => {
  await f?.close();
});

const claimsOf = (token: string) => decodeJwt(token) as Record<string, unknown>;
const now = () => Math.floor(Date.now() / 1000);

const cis2IdToken = (claims: Record<string, unknown> = {}, options: Parameters<typeof signToken>[2] = {}) =>
  signToken(f.keys.cis2, { iss: f.host.issuer('cis2'), aud: CIS2_AUD, sub: '555057896106', authentication_assurance_level: '3', acr: 'AAL3_ANY', amr: ['N3_SMARTCARD'], auth_time: now() - 60, selected_roleid: '555057996107', ...claims }, options);
const nhsIdToken = (claims: Record<string, unknown> = {}, options: Parameters<typeof signToken>[2] = {}) =>
  signToken(f.keys.nhs, { iss: f.host.issuer('nhslogin'), aud: NHS_AUD, sub: '7a4d2c56-6b7d-4c1e-9e0a-3f1d8d2c9a01', nhs_number: '9912003071', identity_proofing_level: 'P9', vot: 'P9.Cp.Cd', token_use: 'id', auth_time: now() - 60, ...claims }, options);
const partnerJwt = (claims: Record<string, unknown> = {}, options: Parameters<typeof signToken>[2] = {}) =>
  signToken(f.keys.partner, { iss: f.host.issuer('partner'), aud: f.base, sub: `partner-user-${randomUUID().slice(0, 6)}`, ...claims }, options);

describe('broker access tokens as subject tokens', () => {
  it('a web user token becomes an API2 token: audience-bound, down-scoped, act = caller, assurance carried, no refresh token', async () => {
    const r = await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' });
    expect(r.issued_token_type).toBe(AT);
    expect(r.token_type).toBe('bearer');
    expect(r.refresh_token).toBeUndefined();
    expect(r.scope).toBe('patient/Patient.rs');
    const header = decodeProtectedHeader(r.access_token);
    expect(header).toMatchObject({ typ: 'at+jwt', alg: 'ES256' });
    const { payload } = await jwtVerify(r.access_token, createRemoteJWKSet(new URL('/jwks', f.base)), { issuer: f.base, audience: API2 });
    const subject = claimsOf(webToken);
    expect(payload).toMatchObject({ sub: patient, client_id: 'svc', aud: API2, scope: 'patient/Patient.rs', act: { sub: 'svc' }, origin_grant_id: subject.grant_id, identity_proofing_level: 'P9', acr: 'P9.Cp.Cd' });
    expect(payload.grant_id).toBeUndefined();
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(600);
    expect(payload.exp!).toBeLessThanOrEqual(subject.exp as number);
    expect(r.expires_in).toBe(payload.exp! - payload.iat!);
    const entry = await exchangeEntry(f, (e) => e.details.decision === 'allow' && e.details.token_ref !== null && e.details.aud === API2 && e.details.rule === 'svc-self');
    expect(entry).toMatchObject({ outcome: 'success', client: 'svc' });
    expect(entry.details).toMatchObject({ subject_issuer: 'self', subject_token_type: 'access_token', scope: 'patient/Patient.rs', act: ['svc'], refresh_token_issued: false });
    expect(JSON.stringify(entry)).not.toContain(r.access_token.split('.')[1]);
    expect(JSON.stringify(entry)).not.toContain(webToken.split('.')[1]);
  });

  it('without scope: everything the rule allows that the subject token holds; without resource: refused (two resources allowed)', async () => {
    const r = await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2 });
    expect(r.scope!.split(' ').sort()).toEqual(['patient/Patient.rs', 'user/Patient.rs']);
    const e = await refused(f, 'svc', { subject_token: webToken, subject_token_type: AT });
    expect(e).toMatchObject({ error: 'invalid_target' });
    expect(e.error_description).toMatch(/check target/);
  });

  it('an opaque resource gets an opaque token; introspection shows the act chain', async () => {
    const r = await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: OPAQUE_API, scope: 'patient/Patient.rs' });
    expect(r.access_token.split('.')).toHaveLength(1);
    expect(await introspect(f, r.access_token)).toMatchObject({ active: true, sub: patient, client_id: 'svc', aud: OPAQUE_API, act: { sub: 'svc' }, scope: 'patient/Patient.rs' });
  });

  it('an opaque broker access token is a valid subject token too', async () => {
    const opaque = await clientCredentialsToken(f, 'svc', OPAQUE_API);
    const r = await exchange(f, 'svc', { subject_token: opaque, subject_token_type: AT, resource: API2, scope: 'system/Patient.rs' });
    expect(claimsOf(r.access_token)).toMatchObject({ sub: 'svc', act: { sub: 'svc' }, scope: 'system/Patient.rs' });
    // sub = client_id: introspection reads it as a client-credentials token, still with its act chain.
    expect(await introspect(f, r.access_token)).toMatchObject({ active: true, client_id: 'svc', act: { sub: 'svc' } });
  });

  it('introspection of an exchanged JWT: active, with sub, act and scope; inactive once the originating grant is revoked', async () => {
    const u = await login(f, 'grant-user');
    const r = await exchange(f, 'svc', { subject_token: u.access, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' });
    expect(await introspect(f, r.access_token)).toMatchObject({ active: true, sub: u.sub, client_id: 'svc', aud: API2, act: { sub: 'svc' } });
    // The web client revokes its refresh token: oidc-provider revokes the whole grant (revokeGrantPolicy).
    await oc.tokenRevocation(f.web, u.tokens.refresh_token!);
    expect(await introspect(f, r.access_token)).toEqual({ active: false });
    // And the subject token can no longer be exchanged.
    const e = await refused(f, 'svc', { subject_token: u.access, subject_token_type: AT, resource: API2 });
    expect(e.error).toBe('invalid_grant');
    expect(e.error_description).toMatch(/check grant/);
    await auditedDeny(f, 'svc', 'grant', 'invalid_grant');
  });

  it('the calling client can revoke its exchanged token', async () => {
    const r = await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2 });
    const svc = await client(f, 'svc');
    await oc.tokenRevocation(svc, r.access_token);
    expect(await introspect(f, r.access_token)).toEqual({ active: false });
    expect((await refused(f, 'svc2', { subject_token: r.access_token, subject_token_type: AT, resource: API2 })).error_description).toMatch(/revoked.*check revocation/);
  });
});

describe('delegated subject tokens (a carer acting for a patient)', () => {
  it('the chain is kept: sub = patient, act = svc then the carer, consent carried, lifetime capped by the delegation; revoking the consent ends it all', async () => {
    const consent = await delegate(f, patient, carer, ['patient/Patient.rs', 'patient/Observation.rs']);
    const { access } = await login(f, 'carer-1', consent.id);
    expect(claimsOf(access)).toMatchObject({ sub: patient, act: { sub: carer }, consent_id: consent.id });
    const r = await exchange(f, 'svc', { subject_token: access, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' });
    const at = claimsOf(r.access_token);
    expect(at).toMatchObject({ sub: patient, act: { sub: 'svc', act: { sub: carer } }, consent_id: consent.id });
    expect((at.exp as number) - (at.iat as number)).toBeLessThanOrEqual(300);
    expect(await introspect(f, r.access_token)).toMatchObject({ active: true, sub: patient, act: { sub: 'svc', act: { sub: carer } }, consent_id: consent.id });
    const entry = await exchangeEntry(f, (e) => e.consent === consent.id && e.details.decision === 'allow');
    expect(entry.details.act).toEqual(['svc', carer]);

    // Re-exchanging cannot lose the carer: even a forged `act` parameter is ignored (oidc-provider drops it).
    const again = await exchange(f, 'svc', { subject_token: r.access_token, subject_token_type: AT, resource: API2, act: JSON.stringify({ sub: 'nobody' }) });
    expect(claimsOf(again.access_token)).toMatchObject({ sub: patient, act: { sub: 'svc', act: { sub: 'svc', act: { sub: carer } } }, consent_id: consent.id });

    await f.broker.delegation.end(person(patient), consent.id, 'ROLE_DEACTIVATED_PATIENT_REQUEST');
    expect(await introspect(f, r.access_token)).toEqual({ active: false });
    expect(await introspect(f, again.access_token)).toEqual({ active: false });
    for (const token of [access, r.access_token]) {
      const e = await refused(f, 'svc', { subject_token: token, subject_token_type: AT, resource: API2 });
      expect(e.error).toBe('invalid_grant');
      expect(e.error_description).toMatch(/consent.*check consent/);
    }
    await auditedDeny(f, 'svc', 'consent', 'invalid_grant');
  });

  it('rule delegated: forbid refuses a delegated subject token (svc2)', async () => {
    const consent = await delegate(f, patient, carer, ['patient/Patient.rs']);
    const { access } = await login(f, 'carer-1', consent.id);
    const e = await refused(f, 'svc2', { subject_token: access, subject_token_type: AT, resource: API2 });
    expect(e.error).toBe('invalid_request');
    expect(e.error_description).toMatch(/check delegation, rule svc2-chain/);
    await auditedDeny(f, 'svc2', 'delegation');
  });
});

describe('policy rules, one allow and one deny each', () => {
  it('subjectIssuers: svc takes CIS2 ID tokens; svc2 does not', async () => {
    const id = await cis2IdToken();
    expect((await exchange(f, 'svc', { subject_token: id, subject_token_type: IDT, resource: API2, scope: 'user/Patient.rs' })).scope).toBe('user/Patient.rs');
    const e = await refused(f, 'svc2', { subject_token: id, subject_token_type: IDT, resource: API2 });
    expect(e).toMatchObject({ error: 'invalid_request' });
    expect(e.error_description).toMatch(/issuer cis2 is not allowed.*check subject_issuer/);
    await auditedDeny(f, 'svc2', 'subject_issuer');
  });

  it('subjectTokenTypes: partner tokens as jwt allowed, as access_token refused by the rule', async () => {
    const actor = await partnerJwt({ sub: 'partner-actor' });
    const subject = await partnerJwt({ may_act: { sub: 'partner-actor', iss: f.host.issuer('partner') } });
    expect((await exchange(f, 'svc', { subject_token: subject, subject_token_type: JWT, actor_token: actor, actor_token_type: JWT, resource: API2 })).scope).toBe('system/Patient.rs');
    const at = await partnerJwt({ scope: 'system/Patient.rs' }, { header: { typ: 'at+jwt' } });
    const e = await refused(f, 'svc', { subject_token: at, subject_token_type: AT, resource: API2 });
    expect(e.error_description).toMatch(/subject_token_type access_token is not allowed.*check subject_token_type/);
  });

  it('subjectClients: a token of web is accepted, one of a client the rule does not name is not', async () => {
    const other = await clientCredentialsToken(f, 'other', API);
    expect((await exchange(f, 'svc', { subject_token: other, subject_token_type: AT, resource: API2 })).access_token).toBeTruthy();
    const e = await refused(f, 'svc2', { subject_token: other, subject_token_type: AT, resource: API2 });
    expect(e.error_description).toMatch(/issued to client other, which rule svc2-chain does not accept.*check subject_client/);
    await auditedDeny(f, 'svc2', 'subject_client');
  });

  it('subjectAudiences: a broker token for API may be exchanged by svc2, one for the opaque API may not', async () => {
    expect((await exchange(f, 'svc2', { subject_token: webToken, subject_token_type: AT, resource: API2 })).access_token).toBeTruthy();
    const forOpaque = await clientCredentialsToken(f, 'svc', OPAQUE_API);
    const e = await refused(f, 'svc2', { subject_token: forOpaque, subject_token_type: AT, resource: API2 });
    expect(e.error_description).toMatch(/issued for https:\/\/opaque.test, not for a resource rule svc2-chain accepts.*check subject_audience/);
    await auditedDeny(f, 'svc2', 'subject_audience');
  });

  it('resources: API2 allowed; another audience refused, also when repeated next to an allowed one, and unknown ones', async () => {
    expect(claimsOf((await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, audience: API2 })).access_token).aud).toBe(API2);
    const targets: Params[] = [{ resource: ADMIN_API }, { audience: ADMIN_API }, { resource: [API2, ADMIN_API] }, { resource: API2, audience: ADMIN_API }, { resource: 'https://unknown.test' }, { resource: API }];
    for (const params of targets) {
      const e = await refused(f, 'svc', { subject_token: webToken, subject_token_type: AT, ...params });
      expect(e.error, JSON.stringify(params)).toBe('invalid_target');
    }
    await auditedDeny(f, 'svc', 'target', 'invalid_target');
  });

  it('scopes: within the rule allowed, beyond it invalid_scope', async () => {
    expect((await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'user/Patient.rs' })).scope).toBe('user/Patient.rs');
    const e = await refused(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'user/Patient.cruds' });
    expect(e.error).toBe('invalid_scope');
    expect(e.error_description).toMatch(/not allowed by rule svc-self.*check scope/);
    await auditedDeny(f, 'svc', 'scope', 'invalid_scope');
  });

  it('downscopeOnly: a scope the subject token lacks is refused (default), allowed where the rule says false', async () => {
    const cc = await clientCredentialsToken(f, 'svc', OPAQUE_API);
    const e = await refused(f, 'svc', { subject_token: cc, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' });
    expect(e.error).toBe('invalid_scope');
    expect(e.error_description).toMatch(/wider than the subject token's scope/);
    const r = await exchange(f, 'svc2', { subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'user/Patient.cruds' });
    expect(r.scope).toBe('user/Patient.cruds');
  });

  it('minimumAssurance aal: AAL3 CIS2 login allowed, AAL2 refused', async () => {
    expect((await exchange(f, 'svc', { subject_token: await cis2IdToken(), subject_token_type: IDT, resource: API2, scope: 'user/Patient.cruds' })).scope).toBe('user/Patient.cruds');
    const aal2 = await cis2IdToken({ authentication_assurance_level: 2, acr: 'AAL2_OR_AAL3_ANY' });
    const e = await refused(f, 'svc', { subject_token: aal2, subject_token_type: IDT, resource: API2, scope: 'user/Patient.cruds' });
    expect(e.error_description).toMatch(/AAL 2.*below the AAL3.*check assurance, rule svc-cis2-aal3/);
    await auditedDeny(f, 'svc', 'assurance');
  });

  it('minimumAssurance proofing: P9 NHS login allowed, P5 refused', async () => {
    const r = await exchange(f, 'svc', { subject_token: await nhsIdToken(), subject_token_type: IDT, resource: API2 });
    expect(claimsOf(r.access_token)).toMatchObject({ sub: '7a4d2c56-6b7d-4c1e-9e0a-3f1d8d2c9a01', subject_issuer: f.host.issuer('nhslogin'), nhs_number: '9912003071', identity_proofing_level: 'P9', vot: 'P9.Cp.Cd', act: { sub: 'svc' }, scope: 'patient/Patient.rs' });
    const p5 = await nhsIdToken({ identity_proofing_level: 'P5', vot: 'P5.Cp.Cd' });
    expect((await refused(f, 'svc', { subject_token: p5, subject_token_type: IDT, resource: API2 })).error_description).toMatch(/proofing P5.*below the P9/);
  });

  it('WS-25 staff role claims pass only from a CIS2 issuer: an NHS login ID token asserting them loses them', async () => {
    const roles = { selected_roleid: '555057996107', selected_role_code: 'S8000:G8000:R8000', selected_org_code: 'X26' };
    const fromNhs = claimsOf((await exchange(f, 'svc', { subject_token: await nhsIdToken(roles), subject_token_type: IDT, resource: API2 })).access_token);
    expect(fromNhs).toMatchObject({ identity_proofing_level: 'P9' });
    for (const name of Object.keys(roles)) expect(fromNhs[name], name).toBeUndefined();
    const fromCis2 = claimsOf((await exchange(f, 'svc', { subject_token: await cis2IdToken(roles), subject_token_type: IDT, resource: API2, scope: 'user/Patient.cruds' })).access_token);
    expect(fromCis2).toMatchObject(roles);
  });

  it('actor required: missing actor refused; forbidden (svc2): an actor refused', async () => {
    const e = await refused(f, 'svc', { subject_token: await partnerJwt(), subject_token_type: JWT, resource: API2 });
    expect(e.error_description).toMatch(/requires an actor_token.*check actor, rule svc-partner/);
    const e2 = await refused(f, 'svc2', { subject_token: webToken, subject_token_type: AT, actor_token: webToken, actor_token_type: AT, resource: API2 });
    expect(e2.error_description).toMatch(/does not accept an actor_token.*check actor/);
  });

  it('actor optional: a broker actor token joins the chain in front of the caller', async () => {
    const actorToken = await clientCredentialsToken(f, 'svc', OPAQUE_API);
    const r = await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, actor_token: actorToken, actor_token_type: AT, resource: API2 });
    expect(claimsOf(r.access_token).act).toEqual({ sub: 'svc', act: { sub: 'svc' } });
  });

  it('maxActDepth: two levels allowed for svc2, three refused', async () => {
    const once = await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' });
    const twice = await exchange(f, 'svc2', { subject_token: once.access_token, subject_token_type: AT, resource: API2 });
    expect(claimsOf(twice.access_token)).toMatchObject({ sub: patient, client_id: 'svc2', act: { sub: 'svc2', act: { sub: 'svc' } } });
    const e = await refused(f, 'svc2', { subject_token: twice.access_token, subject_token_type: AT, resource: API2 });
    expect(e.error_description).toMatch(/3 deep; rule svc2-chain allows 2.*check act_depth/);
    await auditedDeny(f, 'svc2', 'act_depth');
  });

  it('tokenLifetime: capped by the rule (120 s for NHS login) and by the subject token\'s remaining life', async () => {
    const r = await exchange(f, 'svc', { subject_token: await nhsIdToken({}, { expiresIn: 3600 }), subject_token_type: IDT, resource: API2 });
    expect(r.expires_in).toBe(120);
    const short = await exchange(f, 'svc', { subject_token: await nhsIdToken({}, { expiresIn: 40 }), subject_token_type: IDT, resource: API2 });
    expect(short.expires_in).toBeLessThanOrEqual(40);
    expect(short.expires_in).toBeGreaterThan(30);
  });

  it('tenants: a token of a tenant-B client cannot be exchanged by tenant A; tenant B can use its own', async () => {
    const b = await clientCredentialsToken(f, 'cc-b', API_B);
    const e = await refused(f, 'svc', { subject_token: b, subject_token_type: AT, resource: API2 });
    expect(e.error_description).toMatch(/tenant b, not to the caller's tenant a.*check tenant/);
    await auditedDeny(f, 'svc', 'tenant');
    expect(claimsOf((await exchange(f, 'svc-b', { subject_token: b, subject_token_type: AT })).access_token)).toMatchObject({ aud: API_B, sub: 'cc-b', act: { sub: 'svc-b' } });
  });

  it('a client no rule names: unauthorized_client', async () => {
    const e = await refused(f, 'nope', { subject_token: webToken, subject_token_type: AT, resource: API2 });
    expect(e.error).toBe('unauthorized_client');
    await auditedDeny(f, 'nope', 'client', 'unauthorized_client');
  });
});

describe('may_act and actor tokens', () => {
  it('may_act naming someone else refuses the exchange', async () => {
    const actor = await partnerJwt({ sub: 'partner-actor' });
    const subject = await partnerJwt({ may_act: { sub: 'someone-else' } });
    const e = await refused(f, 'svc', { subject_token: subject, subject_token_type: JWT, actor_token: actor, actor_token_type: JWT, resource: API2 });
    expect(e.error_description).toMatch(/may_act does not name the actor partner-actor.*check may_act/);
  });

  it('an actor token carrying a forged act chain is refused', async () => {
    const actor = await partnerJwt({ sub: 'partner-actor', act: { sub: 'privileged-admin' } });
    const subject = await partnerJwt({ may_act: { sub: 'partner-actor' } });
    const e = await refused(f, 'svc', { subject_token: subject, subject_token_type: JWT, actor_token: actor, actor_token_type: JWT, resource: API2 });
    expect(e.error_description).toMatch(/actor_token must not carry an act claim.*check actor/);
    await auditedDeny(f, 'svc', 'actor');
  });

  it('the allowed chain names the actor (with its issuer) in front of the calling client', async () => {
    const actor = await partnerJwt({ sub: 'partner-actor' });
    const subject = await partnerJwt({ may_act: { sub: 'partner-actor' } });
    const r = await exchange(f, 'svc', { subject_token: subject, subject_token_type: JWT, actor_token: actor, actor_token_type: JWT, resource: API2 });
    expect(claimsOf(r.access_token).act).toEqual({ sub: 'partner-actor', iss: f.host.issuer('partner'), act: { sub: 'svc' } });
  });
});

describe('NHS login composite token (act.sub is a JWT)', () => {
  const proxyIdToken = (claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}) =>
    signToken(f.keys.nhs, { iss: f.host.issuer('nhslogin'), aud: NHS_AUD, sub: 'proxy-sub-1', nhs_number: '9000000019', ...claims }, { header });

  it('is understood: the proxy becomes the inner actor', async () => {
    const composite = await nhsIdToken({ act: { sub: await proxyIdToken() } });
    const r = await exchange(f, 'svc', { subject_token: composite, subject_token_type: IDT, resource: API2 });
    expect(claimsOf(r.access_token)).toMatchObject({ sub: '7a4d2c56-6b7d-4c1e-9e0a-3f1d8d2c9a01', act: { sub: 'svc', act: { sub: 'proxy-sub-1', iss: f.host.issuer('nhslogin') } } });
  });

  it('is refused when the inner JWT lacks nhs_number, kid or typ JWT (APIM error cases)', async () => {
    const cases: Array<[Promise<string>, RegExp]> = [
      [proxyIdToken({ nhs_number: undefined }), /Missing 'nhs_number' claim in act.sub JWT/],
      [proxyIdToken({}, { kid: undefined }), /Missing 'kid' header in act.sub JWT/],
      [proxyIdToken({}, { typ: 'at+jwt' }), /Invalid 'typ' header in act.sub JWT/],
      [proxyIdToken({ iss: 'https://elsewhere.test' }), /issuer/],
    ];
    for (const [inner, message] of cases) {
      const composite = await nhsIdToken({ act: { sub: await inner } });
      const e = await refused(f, 'svc', { subject_token: composite, subject_token_type: IDT, resource: API2 });
      expect(e.error).toBe('invalid_request');
      expect(e.error_description).toMatch(message);
    }
    await auditedDeny(f, 'svc', 'nhs_login_act');
  });
});

describe("the NHS API platform's error cases (nhs-interfaces.md 3.3)", () => {
  const cases: Array<[string, () => Promise<Record<string, string>>, RegExp]> = [
    ['missing subject_token', async () => ({ subject_token_type: IDT }), /Missing subject_token/],
    ['missing subject_token_type', async () => ({ subject_token: await cis2IdToken() }), /subject_token_type/],
    ['unknown subject_token_type', async () => ({ subject_token: await cis2IdToken(), subject_token_type: 'urn:x:y' }), /subject_token_type/],
    ['ID token declared as an access token', async () => ({ subject_token: await cis2IdToken(), subject_token_type: AT }), /not trusted for access_token/],
    ['broker access token declared as an ID token', async () => ({ subject_token: webToken, subject_token_type: IDT }), /declared as id_token/],
    ['malformed JWT', async () => ({ subject_token: 'eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln', subject_token_type: IDT }), /Malformed JWT in subject_token/],
    ['expired', async () => ({ subject_token: await cis2IdToken({}, { expiresIn: -120 }), subject_token_type: IDT }), /JWT has expired/],
    ['issued in the future', async () => ({ subject_token: await cis2IdToken({}, { iatOffset: 600, expiresIn: 900 }), subject_token_type: IDT }), /iat/],
    ['unknown kid', async () => ({ subject_token: await signToken({ ...f.keys.cis2, kid: 'never-published' }, { iss: f.host.issuer('cis2'), aud: CIS2_AUD, sub: 'x' }), subject_token_type: IDT }), /no matching public key/],
    ['no kid', async () => ({ subject_token: await cis2IdToken({}, { header: { kid: undefined } }), subject_token_type: IDT }), /Missing 'kid' header/],
    ['bad signature', async () => ({ subject_token: `${(await cis2IdToken()).split('.').slice(0, 2).join('.')}.${(await nhsIdToken()).split('.')[2]}`, subject_token_type: IDT }), /signature verification failed/],
    ['signed by another key with the published kid', async () => ({ subject_token: await signToken({ ...(await issuerKey('RS256')), kid: f.keys.cis2.kid }, { iss: f.host.issuer('cis2'), aud: CIS2_AUD, sub: 'x' }), subject_token_type: IDT }), /signature verification failed/],
    ['untrusted issuer', async () => ({ subject_token: await signToken(f.keys.cis2, { iss: 'https://evil.test', aud: CIS2_AUD, sub: 'x' }), subject_token_type: IDT }), /issuer is not trusted/],
    ['no aud', async () => ({ subject_token: await cis2IdToken({ aud: undefined }), subject_token_type: IDT }), /aud/],
    ['aud not expected (stricter than APIM)', async () => ({ subject_token: await cis2IdToken({ aud: 'some-other-rp' }), subject_token_type: IDT }), /Invalid 'aud' claim/],
    ['alg none', async () => ({ subject_token: `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: f.host.issuer('cis2'), aud: CIS2_AUD, sub: 'x', exp: now() + 60 })).toString('base64url')}.`, subject_token_type: IDT }), /alg/],
    ['alg not allowed for the issuer (ES256 for CIS2)', async () => ({ subject_token: await signToken(f.keys.partner, { iss: f.host.issuer('cis2'), aud: CIS2_AUD, sub: 'x' }), subject_token_type: IDT }), /Invalid 'alg' header/],
    ['refresh token requested', async () => ({ subject_token: await cis2IdToken(), subject_token_type: IDT, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }), /refresh_token is not issued/],
  ];
  for (const [name, params, message] of cases) {
    it(`${name}: invalid_request, audited`, async () => {
      const e = await refused(f, 'svc', { resource: API2, ...(await params()) });
      expect(e.status).toBe(400);
      expect(e.error).toBe('invalid_request');
      expect(e.error_description).toMatch(message);
      await exchangeEntry(f, (x) => x.client === 'svc' && x.details.decision === 'deny' && x.details.error_description === e.error_description);
    });
  }

  it('an issuer whose JWKS cannot be fetched: 503 temporarily_unavailable', async () => {
    f.host.published.delete('partner');
    const rotated = await issuerKey('ES256');
    try {
      const token = await signToken(rotated, { iss: f.host.issuer('partner'), aud: f.base, sub: 'x' });
      const e = await refused(f, 'svc', { subject_token: token, subject_token_type: JWT, resource: API2 });
      expect(e).toMatchObject({ status: 503, error: 'temporarily_unavailable' });
    } finally {
      f.host.publish('partner', f.keys.partner);
    }
  });

  it('an unknown kid makes the broker refetch the JWKS once: a rotated-in key works at once', async () => {
    const next = await issuerKey('RS256');
    const before = f.host.fetches.get('cis2') ?? 0;
    f.host.publish('cis2', next);
    const token = await signToken(next, { iss: f.host.issuer('cis2'), aud: CIS2_AUD, sub: '555057896106', authentication_assurance_level: '3' });
    expect((await exchange(f, 'svc', { subject_token: token, subject_token_type: IDT, resource: API2, scope: 'user/Patient.rs' })).access_token).toBeTruthy();
    expect((f.host.fetches.get('cis2') ?? 0) - before).toBe(1);
  });
});

describe('escalation attempts', () => {
  it('wider scope than the subject token: invalid_scope', async () => {
    const narrow = await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' });
    const e = await refused(f, 'svc', { subject_token: narrow.access_token, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs user/Patient.rs' });
    expect(e.error).toBe('invalid_scope');
  });

  it('a revoked subject token: refused', async () => {
    const u = await login(f, 'revoked-user');
    await oc.tokenRevocation(f.web, u.access);
    const e = await refused(f, 'svc', { subject_token: u.access, subject_token_type: AT, resource: API2 });
    expect(e.error_description).toMatch(/revoked.*check revocation/);
    await auditedDeny(f, 'svc', 'revocation');
  });

  it('a client assertion replayed: invalid_client, audited as an exchange denial', async () => {
    const jti = randomUUID();
    await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2 }, { jti });
    const e = await refused(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2 }, { jti });
    expect(e).toMatchObject({ status: 401, error: 'invalid_client' });
    await auditedDeny(f, 'svc', 'client_authentication', 'invalid_client');
  });

  it('another tenant\'s client and another tenant\'s issuer: refused', async () => {
    const fromB = await signToken(f.keys.tenantB, { iss: 'https://idp-b.test', aud: f.base, sub: 'b-user' });
    expect((await exchange(f, 'svc-b', { subject_token: fromB, subject_token_type: JWT })).access_token).toBeTruthy();
    // svc has no rule for idp-b, and idp-b belongs to tenant b anyway.
    const e = await refused(f, 'svc', { subject_token: fromB, subject_token_type: JWT, resource: API2 });
    expect(e.error).toBe('invalid_request');
  });

  it('a DPoP-bound client must send a proof; with one, the token is DPoP-bound (cnf.jkt) and a replayed proof is refused', async () => {
    const e = await refused(f, 'svc-dpop', { subject_token: webToken, subject_token_type: AT, resource: API2 });
    expect(e.error).toBe('invalid_dpop_proof');
    const keyPair = await generateKeyPair('ES256');
    const dpop = oc.getDPoPHandle(await client(f, 'svc-dpop'), keyPair);
    const r = await exchange(f, 'svc-dpop', { subject_token: webToken, subject_token_type: AT, resource: API2 }, { DPoP: dpop });
    expect(r.token_type).toBe('dpop');
    expect((claimsOf(r.access_token).cnf as { jkt?: string }).jkt).toBeTruthy();
    // A proof replayed by hand (openid-client makes a fresh one each time).
    const jwk = await exportJWK(keyPair.publicKey);
    const proof = await new SignJWT({ htm: 'POST', htu: `${f.base}/token`, jti: randomUUID(), iat: now() }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).sign(keyPair.privateKey);
    const send = async () => rawExchange(f, 'svc-dpop', { subject_token: webToken, subject_token_type: AT, resource: API2 }, { DPoP: proof });
    expect((await send()).status).toBe(200);
    const replay = await send();
    expect(replay.status).toBe(400);
    expect(await replay.json()).toMatchObject({ error: 'invalid_dpop_proof', error_description: expect.stringMatching(/Replay/) });
  });

  it('a public client cannot exchange (config refuses it; nothing registers it)', async () => {
    const res = await fetch(`${f.base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', client_id: 'public-app', subject_token: webToken, subject_token_type: AT }) });
    expect([400, 401]).toContain(res.status);
    expect((await res.json()).access_token).toBeUndefined();
    await exchangeEntry(f, (e) => e.details.check === 'client_authentication' && e.outcome === 'failure' && (e.client === 'public-app' || e.client === null));
  });
});

describe('explain (POST /admin/exchange/explain, mounted here on its own Koa app)', () => {
  let explainBase: string;
  let server: Server;
  beforeAll(async () => {
    const app = new Koa();
    const b = f.broker;
    app.use(exchangeExplainRoutes({ config: b.config, provider: b.provider, store: b.store, publicJwks: b.publicJwks, delegation: { stillActive: async (id, grantee) => Boolean(await b.delegation.activeFor(id, grantee)) }, ledger: b.ledger }).routes());
    const port = await freePort();
    server = app.listen(port, '127.0.0.1');
    explainBase = `http://127.0.0.1:${port}`;
  });
  afterAll(() => {
    server?.closeAllConnections();
    server?.close();
  });
  const post = (body: unknown, token = ADMIN_TOKEN, type = 'application/json') =>
    fetch(`${explainBase}/admin/exchange/explain`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': type }, body: type === 'application/json' ? JSON.stringify(body) : new URLSearchParams(body as Record<string, string>).toString() });

  it('says which rule allows, with every rule considered, verifying the tokens; issues nothing; audited', async () => {
    const before = (await f.broker.ledger.query({ type: 'token.exchanged', limit: 10_000 })).length;
    const res = await post({ client_id: 'svc', subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown> & { rules: Array<{ rule: string; outcome: string; checks: Array<{ check: string; outcome: string }> }> };
    expect(body).toMatchObject({ verified: true, decision: 'allow', rule: 'svc-self', token: { resource: API2, scope: 'patient/Patient.rs', act: ['svc'] }, subject: { issuer: 'self', clientId: 'web' } });
    expect(body.rules.map((r) => [r.rule, r.outcome])).toEqual([['svc-self', 'allow'], ['svc-cis2-aal3', 'deny'], ['svc-nhs-p9', 'deny'], ['svc-partner', 'deny']]);
    expect(body.rules[1].checks[0]).toMatchObject({ check: 'subject_issuer', outcome: 'fail' });
    expect(JSON.stringify(body)).not.toContain(webToken.split('.')[1]);
    expect((await f.broker.ledger.query({ type: 'token.exchanged', limit: 10_000 })).length).toBe(before);
    await new Promise((r) => setTimeout(r, 50));
    expect((await f.broker.ledger.query({ type: 'admin.action', order: 'desc', limit: 1 }))[0].details).toMatchObject({ action: 'exchange.explain', decision: 'allow', rule: 'svc-self' });
  });

  it('says why a request is denied (the rule that got furthest), and catches a revoked consent as the grant would', async () => {
    const aal2 = await cis2IdToken({ authentication_assurance_level: '2' });
    const body = (await (await post({ client_id: 'svc', subject_token: aal2, subject_token_type: IDT, resource: API2, scope: 'user/Patient.rs' }, ADMIN_TOKEN, 'application/x-www-form-urlencoded')).json()) as Record<string, unknown>;
    expect(body).toMatchObject({ decision: 'deny', rule: 'svc-cis2-aal3', check: 'assurance', error: 'invalid_request' });
    const consent = await delegate(f, patient, carer, ['patient/Patient.rs']);
    const { access } = await login(f, 'carer-1', consent.id);
    await f.broker.delegation.end(person(carer), consent.id, 'ROLE_DEACTIVATED_PROXY_REQUEST');
    expect(await (await post({ client_id: 'svc', subject_token: access, subject_token_type: AT, resource: API2 })).json()).toMatchObject({ decision: 'deny', check: 'consent', error: 'invalid_grant' });
  });

  it('refuses without the admin token, and with a malformed body', async () => {
    expect((await post({ client_id: 'svc' }, 'wrong-token-wrong-token-wrong-token')).status).toBe(401);
    expect((await fetch(`${explainBase}/admin/exchange/explain`, { method: 'POST', body: '{}' })).status).toBe(401);
    expect((await post({ subject_token: webToken })).status).toBe(400);
  });
});
