import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import type { DatabaseSync } from 'node:sqlite';
import { CompactSign, decodeJwt, generateKeyPair } from 'jose';
import { createSealer, parseDataKey } from '../../src/crypto/seal.ts';
import type { SqliteStore } from '../../src/store/sqlite/index.ts';
import { accountSystemFor, ACCESS_EXTENSION, VRS_ERROR_SYSTEM } from '../../src/delegation/fhir.ts';
import { delegationView, delegationList, historyView, invitationCreated, actedForMeView } from '../../src/web/account/schemas.ts';
import { TEST_KEK } from '../helpers/broker.ts';
import { scriptedConnector } from '../helpers/scripted-connector.ts';
import { apiToken, auditEntry, call, clientTokens, inDays, introspect, startDelegationBroker, type ApiLogin, type DelegationBroker } from './helpers.ts';

// The delegation API end to end over HTTP, with real logins (demo personas and a scripted NHS
// login-like upstream) and real tokens for the broker-account client: the lifecycle, FHIR export and
// VRS import, and every refusal the issue lists. Each refusal must be clear, change nothing, and be
// in the audit ledger.

const nhsLogin = scriptedConnector('nhs-login');
const NURSE_R8001 = '555057996107'; // Nurse Access Role, org Y51 (allowed staff role)
const NURSE_R0001 = '555057898108'; // Privacy Officer, org X26 (not a staff role for delegation)

type Json = Record<string, unknown>;
interface Created {
  delegation: { id: string; version: number; status: string };
  code: string;
  acceptUrl: string;
}

describe('delegation API', () => {
  let t: DelegationBroker;
  let patient: ApiLogin;
  let carer: ApiLogin;
  let nurse: ApiLogin;
  let clerk: ApiLogin;
  let db: DatabaseSync;

  beforeAll(async () => {
    t = await startDelegationBroker({ connectors: [nhsLogin.connector] });
    db = (t.broker.store as SqliteStore).db;
    [patient, carer, nurse, clerk] = await Promise.all([
      apiToken(t, { persona: 'patient' }),
      apiToken(t, { persona: 'carer' }),
      apiToken(t, { persona: 'nurse' }, { role: NURSE_R8001 }),
      apiToken(t, { persona: 'nurse' }, { role: NURSE_R0001 }),
    ]);
  });
  afterAll(async () => {
    await t?.close();
  });

  const invite = async (by: ApiLogin = patient, scopes = ['patient/Patient.rs', 'patient/Observation.rs']) => {
    const res = await call<Created>(t, by.token, 'POST', '/api/delegations', { access: { scopes }, period: { end: inDays(60) } });
    expect(res.status).toBe(201);
    return res.body;
  };
  const accept = (by: ApiLogin, code: string) => call<Json>(t, by.token, 'POST', '/api/delegations/invitations/accept', { code });
  const activeDelegation = async (scopes?: string[]) => {
    const { code, delegation } = await invite(patient, scopes);
    expect((await accept(carer, code)).status).toBe(200);
    return delegation.id;
  };
  const versions = async (id: string) => (await t.broker.delegation.history(id)).length;
  const refusedAudit = (consent: string | null, attempted: string, actor: string) =>
    auditEntry(t.broker, 'consent.changed', (e) => e.outcome === 'failure' && e.consent === consent && e.details.attempted === attempted && t.broker.ledger.open(e).actor === actor);

  describe('lifecycle', () => {
    it('a patient invites, the carer accepts; both see it; the history is a signed chain; the audit has both steps', async () => {
      const created = await invite();
      expect(invitationCreated.safeParse(created).success).toBe(true);
      expect(created.delegation).toMatchObject({ status: 'proposed', version: 1 });
      expect(created.acceptUrl).toBe(`${t.base}/account/invitations/accept?code=${created.code}`);
      const id = created.delegation.id;

      const accepted = await accept(carer, created.code);
      expect(accepted.status).toBe(200);
      expect(delegationView.parse(accepted.body)).toMatchObject({ id, status: 'active', statusReason: 'ROLE_CREATED', version: 2, patient: { accountId: patient.accountId, name: 'Pat Patient' }, grantee: { accountId: carer.accountId, name: 'Cara Carer' } });

      const mine = await call(t, patient.token, 'GET', '/api/delegations');
      expect(delegationList.parse(mine.body).asPatient.map((d) => d.id)).toContain(id);
      const theirs = delegationList.parse((await call(t, carer.token, 'GET', '/api/delegations')).body);
      expect(theirs.asGrantee.find((d) => d.id === id)).toMatchObject({ status: 'active', patient: { name: 'Pat Patient' } });

      for (const who of [patient, carer, nurse]) expect((await call(t, who.token, 'GET', `/api/delegations/${id}`)).status).toBe(200);
      // Someone who is neither a party nor staff learns nothing, not even that it exists.
      const stranger = await call(t, clerk.token, 'GET', `/api/delegations/${id}`);
      expect(stranger).toMatchObject({ status: 404, body: { error: 'not_found' } });

      const history = historyView.parse((await call(t, carer.token, 'GET', `/api/delegations/${id}/history`)).body);
      expect(history.versions.map((v) => [v.version, v.status])).toEqual([
        [1, 'proposed'],
        [2, 'active'],
      ]);
      expect(history.versions[0].prev).toBeNull();
      expect(history.versions[1].prev).toMatch(/^[A-Za-z0-9_-]{43}$/);

      await auditEntry(t.broker, 'consent.proposed', (e) => e.consent === id && e.outcome === 'success');
      await auditEntry(t.broker, 'consent.accepted', (e) => e.consent === id && e.outcome === 'success');
    });

    it('the carer declines: rejected, and the code cannot be used again', async () => {
      const { code, delegation } = await invite();
      const declined = await call(t, carer.token, 'POST', '/api/delegations/invitations/decline', { code });
      expect(declined).toMatchObject({ status: 200, body: { status: 'rejected', statusReason: 'APPLICATION_WITHDRAWN' } });
      const again = await accept(carer, code);
      expect(again).toMatchObject({ status: 404, body: { error: 'not_found' } });
      expect(String(again.body.error_description)).toMatch(/not valid|used|expired/);
      expect(await versions(delegation.id)).toBe(2);
      await refusedAudit(null, 'consent.accepted', carer.accountId);
    });

    it('the patient narrows the access; a new version; the grantee cannot widen it (403, nothing changed, audited)', async () => {
      const id = await activeDelegation();
      const narrowed = await call(t, patient.token, 'PATCH', `/api/delegations/${id}`, { access: { scopes: ['patient/Patient.rs'] } });
      expect(narrowed).toMatchObject({ status: 200, body: { version: 3, status: 'active', statusReason: 'ROLE_CHANGED', access: { scopes: ['patient/Patient.rs'] } } });

      const widen = await call(t, carer.token, 'PATCH', `/api/delegations/${id}`, { access: { scopes: ['patient/*.rs'], level: 3 } });
      expect(widen).toMatchObject({ status: 403, body: { error: 'access_denied' } });
      expect(String(widen.body.error_description)).toMatch(/only the patient/);
      expect(await versions(id)).toBe(3);
      expect((await t.broker.delegation.get(id)).record.access).toEqual({ scopes: ['patient/Patient.rs'] });
      await refusedAudit(id, 'consent.changed', carer.accountId);
    });

    it('ending: the patient revokes with a reason; ending again, changing, or a wrong reason are invalid transitions', async () => {
      const id = await activeDelegation();
      const noText = await call(t, patient.token, 'DELETE', `/api/delegations/${id}`, { reason: 'OTHER' });
      expect(noText).toMatchObject({ status: 422, body: { error: 'invalid_state_transition' } });
      expect(String(noText.body.error_description)).toMatch(/OTHER needs an explanation/);
      const wrongReason = await call(t, patient.token, 'DELETE', `/api/delegations/${id}`, { reason: 'ROLE_CREATED' });
      expect(wrongReason).toMatchObject({ status: 422, body: { error: 'invalid_state_transition' } });
      expect(await versions(id)).toBe(2);
      await refusedAudit(id, 'consent.revoked', patient.accountId);

      const ended = await call(t, patient.token, 'DELETE', `/api/delegations/${id}?reason=ROLE_DEACTIVATED_PATIENT_REQUEST`);
      expect(ended).toMatchObject({ status: 200, body: { status: 'inactive', statusReason: 'ROLE_DEACTIVATED_PATIENT_REQUEST', version: 3 } });

      for (const [method, body] of [
        ['DELETE', { reason: 'ROLE_DEACTIVATED_PATIENT_REQUEST' }],
        ['PATCH', { access: { level: 1 } }],
      ] as const) {
        const res = await call(t, patient.token, method, `/api/delegations/${id}`, body);
        expect(res).toMatchObject({ status: 422, body: { error: 'invalid_state_transition' } });
        expect(String(res.body.error_description)).toMatch(/from inactive|inactive to/);
      }
      expect(await versions(id)).toBe(3);
      await refusedAudit(id, 'consent.changed', patient.accountId);
    });

    it('the carer can end it too (proxy request); a stranger cannot', async () => {
      const id = await activeDelegation();
      expect((await call(t, clerk.token, 'DELETE', `/api/delegations/${id}`, { reason: 'ROLE_DEACTIVATED_PATIENT_REQUEST' })).status).toBe(403);
      await refusedAudit(id, 'consent.revoked', clerk.accountId);
      expect(await call(t, carer.token, 'DELETE', `/api/delegations/${id}`, { reason: 'ROLE_DEACTIVATED_PROXY_REQUEST' })).toMatchObject({ status: 200, body: { status: 'inactive' } });
    });

    it('a pending invitation: withdrawn only with its own reason; then its code is dead', async () => {
      const { code, delegation } = await invite();
      const wrong = await call(t, patient.token, 'DELETE', `/api/delegations/${delegation.id}`, { reason: 'ROLE_DEACTIVATED_PATIENT_REQUEST' });
      expect(wrong).toMatchObject({ status: 422, body: { error: 'invalid_state_transition' } });
      expect(String(wrong.body.error_description)).toMatch(/not a reason for proposed to inactive/);
      const changed = await call(t, patient.token, 'PATCH', `/api/delegations/${delegation.id}`, { access: { level: 1 } });
      expect(changed).toMatchObject({ status: 422, body: { error: 'invalid_state_transition' } });
      expect(await versions(delegation.id)).toBe(1);
      const withdrawn = await call(t, patient.token, 'DELETE', `/api/delegations/${delegation.id}`, { reason: 'APPLICATION_WITHDRAWN' });
      expect(withdrawn).toMatchObject({ status: 200, body: { status: 'inactive', statusReason: 'APPLICATION_WITHDRAWN' } });
      expect((await accept(carer, code)).status).toBe(404);
      expect(await versions(delegation.id)).toBe(2);
    });
  });

  describe('refusals', () => {
    it('a reused invitation code: the second use (by anyone) is refused and changes nothing', async () => {
      const { code, delegation } = await invite();
      expect((await accept(carer, code)).status).toBe(200);
      for (const who of [carer, nurse]) {
        const again = await accept(who, code);
        expect(again).toMatchObject({ status: 404, body: { error: 'not_found' } });
        await refusedAudit(null, 'consent.accepted', who.accountId);
      }
      const decline = await call(t, carer.token, 'POST', '/api/delegations/invitations/decline', { code });
      expect(decline.status).toBe(404);
      const record = (await t.broker.delegation.get(delegation.id)).record;
      expect(record).toMatchObject({ version: 2, status: 'active', grantee: carer.accountId });
    });

    it('a patient cannot accept their own invitation (403); the code still works for the person it was meant for', async () => {
      const { code, delegation } = await invite();
      const own = await accept(patient, code);
      expect(own).toMatchObject({ status: 403, body: { error: 'access_denied' } });
      expect(String(own.body.error_description)).toMatch(/your own invitation/);
      expect(await versions(delegation.id)).toBe(1);
      await refusedAudit(delegation.id, 'consent.accepted', patient.accountId);
      expect((await accept(carer, code)).status).toBe(200);
    });

    it('a carer below the required proofing level (P5 when P9 is required) is refused; nothing changes', async () => {
      nhsLogin.queue.push({ subject: 'carer-p5', claims: { name: 'Paula Five', nhs_number: '9000000025' }, assurance: { acr: 'P5.Cp.Cd', aal: 2, proofing: 'P5' } });
      const weak = await apiToken(t, { connector: 'nhs-login' });
      expect(weak.claims.identity_proofing_level).toBe('P5');
      const { code, delegation } = await invite();
      const res = await accept(weak, code);
      expect(res).toMatchObject({ status: 403, body: { error: 'access_denied' } });
      expect(String(res.body.error_description)).toMatch(/verified their identity to P9/);
      expect((await t.broker.delegation.get(delegation.id)).record).toMatchObject({ version: 1, status: 'proposed' });
      await refusedAudit(delegation.id, 'consent.accepted', weak.accountId);
      // The patient at P5 cannot invite either.
      const invited = await call(t, weak.token, 'POST', '/api/delegations', { access: { level: 1 }, period: { end: inDays(30) } });
      expect(invited.status).toBe(403);
      await refusedAudit(null, 'consent.proposed', weak.accountId);
    });

    it('bad input is a 4xx that names the problem, never a 500, and creates nothing', async () => {
      const before = (await t.broker.delegation.listForPatient(patient.accountId)).length;
      const cases: Array<[unknown, string | undefined, number, RegExp]> = [
        ['{not json', 'application/json', 400, /not valid JSON/],
        ['code=1', 'application/x-www-form-urlencoded', 415, /application\/json/],
        [{ access: { scopes: ['everything'] }, period: { end: inDays(10) } }, undefined, 400, /SMART v2 patient scope/],
        [{ access: {}, period: { end: inDays(10) } }, undefined, 400, /scopes, an access level, or both/],
        [{ access: { level: 4 }, period: { end: inDays(10) } }, undefined, 400, /access\.level/],
        [{ access: { level: 1 }, period: { end: 'tomorrow' } }, undefined, 400, /period\.end/],
        [{ access: { level: 1 }, period: { end: inDays(10) }, grantee: 'me' }, undefined, 400, /grantee|unrecognized/i],
        [{ access: { level: 1 }, legalBasis: 'parental-responsibility', period: { end: inDays(10) } }, undefined, 403, /recorded by staff/],
        [{ access: { level: 1 }, period: { end: inDays(5000) } }, undefined, 422, /at most 1095 days/],
        [{ access: { level: 1 } }, undefined, 422, /end date/],
        [[1, 2, 3], undefined, 400, /expected object/i],
      ];
      for (const [body, type, status, message] of cases) {
        const res = await call(t, patient.token, 'POST', '/api/delegations', body, type);
        expect(res.status, JSON.stringify(body)).toBe(status);
        expect(String(res.body.error_description), JSON.stringify(body)).toMatch(message);
      }
      const big = await call(t, patient.token, 'POST', '/api/delegations', { access: { level: 1 }, pad: 'x'.repeat(70_000) });
      expect(big.status).toBe(413);
      expect(await call(t, patient.token, 'POST', '/api/delegations/invitations/accept', { code: 'short' })).toMatchObject({ status: 400 });
      expect(await call(t, patient.token, 'PATCH', '/api/delegations/not%20an%20id', { access: { level: 1 } })).toMatchObject({ status: 404 });
      expect(await call(t, patient.token, 'PATCH', '/api/delegations/0000', {})).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
      expect(await call(t, patient.token, 'DELETE', '/api/delegations/0000')).toMatchObject({ status: 400 });
      expect(await call(t, patient.token, 'GET', '/api/who-acted-for-me?limit=0')).toMatchObject({ status: 400 });
      expect((await t.broker.delegation.listForPatient(patient.accountId)).length).toBe(before);
    });

    it('tokens: none, foreign audience, or delegated are refused with WWW-Authenticate', async () => {
      const none = await call(t, undefined, 'GET', '/api/delegations');
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token"/);
      // A token for another resource (the test API) is not a token for the broker's API.
      const other = await clientTokens(t, { persona: 'patient' }, 'self');
      expect((await call(t, other.access_token, 'GET', '/api/delegations')).status).toBe(401);
      const fhir = await call(t, undefined, 'GET', '/api/delegations/x/fhir');
      expect(fhir).toMatchObject({ status: 401, body: { resourceType: 'OperationOutcome', issue: [{ code: 'forbidden', details: { coding: [{ system: VRS_ERROR_SYSTEM, code: 'ACCESS_DENIED' }] } }] } });
    });
  });

  describe('staff', () => {
    it('staff at AAL3 with an allowed role record a verified relationship; a duplicate, the wrong role, or a patient are refused', async () => {
      const body = { patient: { accountId: patient.accountId }, grantee: { accountId: carer.accountId }, legalBasis: 'parental-responsibility', access: { level: 2 }, period: { end: inDays(365) }, evidence: 'birth certificate seen' };
      // Clear the way: end any active relationship between them left by earlier tests.
      for (const r of await t.broker.delegation.listForPatient(patient.accountId)) {
        if (r.status === 'active' && r.grantee === carer.accountId) await call(t, patient.token, 'DELETE', `/api/delegations/${r.id}`, { reason: 'ROLE_DEACTIVATED_PATIENT_REQUEST' });
      }
      const recorded = await call(t, nurse.token, 'POST', '/api/delegations/staff', body);
      expect(recorded.status).toBe(201);
      expect(delegationView.parse(recorded.body)).toMatchObject({ status: 'active', legalBasis: 'parental-responsibility', verifiedBy: { accountId: nurse.accountId, orgCode: 'Y51' }, access: { level: 2 } });
      const id = String(recorded.body.id);
      await auditEntry(t.broker, 'consent.accepted', (e) => e.consent === id && e.details.verified === true);

      const duplicate = await call(t, nurse.token, 'POST', '/api/delegations/staff', body);
      expect(duplicate).toMatchObject({ status: 409, body: { error: 'conflict' } });
      await refusedAudit(null, 'consent.accepted', nurse.accountId);

      for (const who of [clerk, patient]) {
        const res = await call(t, who.token, 'POST', '/api/delegations/staff', { ...body, legalBasis: 'best-interest' });
        expect(res).toMatchObject({ status: 403, body: { error: 'access_denied' } });
        expect(String(res.body.error_description)).toMatch(/staff login at AAL3/);
        await refusedAudit(null, 'consent.accepted', who.accountId);
      }
      const byNhs = await call(t, nurse.token, 'POST', '/api/delegations/staff', { ...body, patient: { nhsNumber: '9000000009' }, grantee: { accountId: nurse.accountId } });
      expect(byNhs.status).toBe(422);
      expect(await call(t, nurse.token, 'POST', '/api/delegations/staff', { ...body, patient: { nhsNumber: '9000000001' } })).toMatchObject({ status: 400 });
      expect(await call(t, nurse.token, 'POST', '/api/delegations/staff', { ...body, grantee: { accountId: 'no-such-account' } })).toMatchObject({ status: 422 });
      // Staff can end it, with a staff reason.
      expect(await call(t, nurse.token, 'DELETE', `/api/delegations/${id}`, { reason: 'ROLE_DEACTIVATED_SAFEGUARDING' })).toMatchObject({ status: 200, body: { status: 'inactive' } });
    });
  });

  describe('FHIR', () => {
    it('exports a Consent in the VRS shape (patient, performer, actor with role, period, status, legal basis, status reason)', async () => {
      const id = await activeDelegation(['patient/Patient.rs']);
      const res = await call<Json>(t, carer.token, 'GET', `/api/delegations/${id}/fhir`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/application\/fhir\+json/);
      const record = (await t.broker.delegation.get(id)).record;
      expect(res.body).toMatchObject({
        resourceType: 'Consent',
        id,
        meta: { versionId: '2' },
        status: 'active',
        scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
        category: [{ coding: [{ code: 'INFA' }] }],
        patient: { identifier: { system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9000000009' }, display: 'Pat Patient' },
        performer: [{ type: 'RelatedPerson', identifier: { system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9000000017' } }],
        policyRule: { coding: [{ system: 'https://fhir.nhs.uk/England/CodeSystem/England-NHSProxyLegalBasis', code: 'consent' }] },
        provision: {
          type: 'permit',
          period: { start: record.period.start, end: record.period.end },
          actor: [{ role: { coding: [{ system: 'http://hl7.org/fhir/consentperformer', code: 'delegatee' }] }, reference: { identifier: { value: '9000000017' } } }],
        },
        extension: expect.arrayContaining([{ url: 'https://fhir.nhs.uk/England/StructureDefinition/Extension-England-Consent-Status-Reason', valueCodeableConcept: { coding: [{ system: 'https://fhir.nhs.uk/England/CodeSystem/England-ConsentStatusReason', code: 'ROLE_CREATED' }] } }]),
      });
      const missing = await call(t, carer.token, 'GET', '/api/delegations/00000000-0000-0000-0000-000000000000/fhir');
      expect(missing).toMatchObject({ status: 404, body: { resourceType: 'OperationOutcome', issue: [{ details: { coding: [{ system: VRS_ERROR_SYSTEM, code: 'INVALIDATED_RESOURCE' }] } }] } });
    });

    describe('VRS import', () => {
      const accountSystem = () => accountSystemFor(t.base);
      const vrs = (over: Json = {}): Json => ({
        resourceType: 'Consent',
        status: 'active',
        scope: { coding: [{ system: 'https://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
        category: [{ coding: [{ system: 'https://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'INFA', display: 'information access' }] }],
        patient: { type: 'Patient', identifier: { system: accountSystem(), value: patient.accountId } },
        dateTime: '2025-02-11T14:30:00Z',
        performer: [{ identifier: { system: accountSystem(), value: nurse.accountId } }],
        policyRule: { coding: [{ system: 'https://fhir.nhs.uk/England/CodeSystem/England-NHSProxyLegalBasis', code: 'parental-responsibility' }] },
        // VRS omits provision.actor.role: tolerated.
        provision: { type: 'permit', period: { start: new Date().toISOString().slice(0, 10), end: inDays(400).slice(0, 10) }, actor: [{ reference: { type: 'RelatedPerson', identifier: { system: accountSystem(), value: nurse.accountId } } }] },
        extension: [
          { url: 'https://fhir.nhs.uk/England/StructureDefinition/Extension-England-Consent-Status-Reason', valueCodeableConcept: { coding: [{ system: 'https://fhir.nhs.uk/England/CodeSystem/England-ConsentStatusReason', code: 'ROLE_CREATED' }] } },
          { url: 'https://hl7.org/fhir/5.0/StructureDefinition/extension-Consent.grantor', valueReference: { identifier: { system: 'https://fhir.nhs.uk/Id/ods-organization-code', value: 'G8101234' } } },
        ],
        ...over,
      });
      const post = (by: ApiLogin, body: unknown, type = 'application/fhir+json') => call<Json>(t, by.token, 'POST', '/api/delegations/import', body, type);
      const outcome = (code: string) => ({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', details: { coding: [{ system: VRS_ERROR_SYSTEM, code }] } }] });

      it('staff import a VRS Consent without provision.actor.role; it comes back as a conformant Consent; a second import is a duplicate', async () => {
        const res = await post(nurse, vrs());
        expect(res.status, JSON.stringify(res.body)).toBe(201);
        expect(res.body).toMatchObject({ resourceType: 'Consent', status: 'active', policyRule: { coding: [{ code: 'parental-responsibility' }] }, provision: { actor: [{ role: { coding: [{ code: 'delegatee' }] } }] } });
        const id = String(res.body.id);
        const record = (await t.broker.delegation.get(id)).record;
        expect(record).toMatchObject({ grantor: patient.accountId, grantee: nurse.accountId, legalBasis: 'parental-responsibility', access: { level: 1 }, verifier: { accountId: nurse.accountId, orgCode: 'Y51' } });
        expect(record.evidence).toMatch(/G8101234/);

        const again = await post(nurse, vrs());
        expect(again).toMatchObject({ status: 409, body: outcome('DUPLICATE_RELATIONSHIP') });
        await refusedAudit(null, 'consent.accepted', nurse.accountId);

        // Round trip: our own export (with its access extension) imports with the same access. The export
        // names the patient by NHS number; this broker has no NHS-number index, so the test names them by
        // account id (the NHS-number case is the 422 below).
        await t.broker.delegation.end({ accountId: nurse.accountId, assurance: { aal: 3 }, role: { roleId: NURSE_R8001, roleCode: 'S8000:G8000:R8001', orgCode: 'Y51' } }, id, 'ROLE_DEACTIVATED_SAFEGUARDING');
        const exported = await call<Json>(t, nurse.token, 'GET', `/api/delegations/${id}/fhir`);
        expect(exported.body).toMatchObject({ status: 'inactive', patient: { identifier: { system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9000000009' } } });
        const active = { ...exported.body, status: 'active', extension: [{ url: ACCESS_EXTENSION, extension: [{ url: 'scope', valueString: 'patient/Patient.rs' }] }] };
        const asNhs = await post(nurse, active, 'application/json');
        expect(asNhs).toMatchObject({ status: 422, body: outcome('INVALID_IDENTIFIER_VALUE') });
        const roundTrip = { ...active, patient: { identifier: { system: accountSystem(), value: patient.accountId } } };
        const reimported = await post(nurse, roundTrip, 'application/json');
        expect(reimported.status, JSON.stringify(reimported.body)).toBe(201);
        expect((await t.broker.delegation.get(String(reimported.body.id))).record.access).toEqual({ scopes: ['patient/Patient.rs'] });
      });

      it('refuses what it cannot map, with the VRS error codes, and creates nothing', async () => {
        // No active patient -> nurse relationship left by the previous test: each case fails on its own defect.
        for (const r of await t.broker.delegation.listForPatient(patient.accountId)) {
          if (r.status === 'active' && r.grantee === nurse.accountId) await call(t, patient.token, 'DELETE', `/api/delegations/${r.id}`, { reason: 'ROLE_DEACTIVATED_PATIENT_REQUEST' });
        }
        const before = (await t.broker.delegation.listForPatient(patient.accountId)).length;
        const nhs = (value: string) => ({ system: 'https://fhir.nhs.uk/Id/nhs-number', value });
        const cases: Array<[unknown, number, string]> = [
          // Genuine VRS identifiers: NHS numbers that this broker cannot map to accounts.
          [vrs({ patient: { identifier: nhs('9000000009') } }), 422, 'INVALID_IDENTIFIER_VALUE'],
          [vrs({ patient: { identifier: nhs('9000000001') } }), 422, 'INVALID_IDENTIFIER_VALUE'],
          [vrs({ patient: { identifier: { system: 'https://example.org/mrn', value: '1' } } }), 422, 'INVALID_IDENTIFIER_SYSTEM'],
          [vrs({ patient: { identifier: { system: 'https://fhir.nhs.uk/Id/nhs-number' } } }), 400, 'MISSING_IDENTIFIER_VALUE'],
          [vrs({ performer: undefined, provision: { type: 'permit', period: { end: inDays(30) } } }), 400, 'MISSING_IDENTIFIER_VALUE'],
          [vrs({ policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-NullFlavor', code: 'UNK' }] } }), 422, 'INVALID_LEGAL_BASIS_CODE'],
          [vrs({ status: 'inactive' }), 422, 'INVALID_PARAMETER'],
          [vrs({ status: 'nonsense' }), 422, 'INVALID_PARAMETER'],
          [vrs({ performer: [{ identifier: { system: accountSystemFor(t.base), value: carer.accountId } }] }), 422, 'INVALID_PARAMETER'],
          [vrs({ provision: { type: 'permit', period: { start: '2025-02-11', end: '2029-02-11' }, actor: [] } }), 422, 'INVALID_PARAMETER'],
          [{ resourceType: 'Patient' }, 422, 'INVALID_PARAMETER'],
          ['{"resourceType":', 400, 'INVALID_PARAMETER'],
        ];
        for (const [body, status, code] of cases) {
          const res = await post(nurse, body);
          expect(res.status, JSON.stringify(body).slice(0, 200)).toBe(status);
          expect(res.body, JSON.stringify(body).slice(0, 200)).toMatchObject(outcome(code));
        }
        const notStaff = await post(patient, vrs());
        expect(notStaff).toMatchObject({ status: 403, body: outcome('ACCESS_DENIED') });
        expect((await t.broker.delegation.listForPatient(patient.accountId)).length).toBe(before);
      });
    });
  });

  describe('who acted for me', () => {
    it('lists every token issued to a carer for the patient (time, actor, client, scopes); not to the carer', async () => {
      const id = await activeDelegation(['patient/Patient.rs']);
      await clientTokens(t, { persona: 'carer' }, id);
      const res = await call(t, patient.token, 'GET', '/api/who-acted-for-me');
      expect(res.status).toBe(200);
      const { entries } = actedForMeView.parse(res.body);
      const entry = entries.find((e) => e.consent === id);
      expect(entry).toMatchObject({ type: 'token.issued', actors: [{ accountId: carer.accountId, name: 'Cara Carer' }], client: 'web', outcome: 'success' });
      expect(entry?.scope).toContain('patient/Patient.rs');
      expect(Date.parse(entry!.time)).toBeGreaterThan(Date.now() - 60_000);
      const carerView = actedForMeView.parse((await call(t, carer.token, 'GET', '/api/who-acted-for-me')).body);
      expect(carerView.entries.some((e) => e.consent === id)).toBe(false);
    });
  });

  it('serves an OpenAPI 3.1 document describing every route, the bearer scheme and its scopes', async () => {
    const res = await call<Json>(t, undefined, 'GET', '/api/openapi.json');
    expect(res.status).toBe(200);
    const doc = res.body as { openapi: string; paths: Record<string, Record<string, { security?: Array<Record<string, string[]>> }>>; components: { securitySchemes: Record<string, Json>; schemas: Record<string, Json> } };
    expect(doc.openapi).toBe('3.1.0');
    const routes = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).filter((m) => m !== 'parameters').map((m) => `${m.toUpperCase()} ${path}`));
    expect(routes.sort()).toEqual(
      [
        'GET /api/delegations',
        'POST /api/delegations',
        'POST /api/delegations/invitations/accept',
        'POST /api/delegations/invitations/decline',
        'POST /api/delegations/staff',
        'POST /api/delegations/import',
        'GET /api/delegations/{id}',
        'PATCH /api/delegations/{id}',
        'DELETE /api/delegations/{id}',
        'GET /api/delegations/{id}/history',
        'GET /api/delegations/{id}/fhir',
        'GET /api/who-acted-for-me',
        'GET /api/account/links',
        'DELETE /api/account/links/{provider}/{subject}',
        'GET /api/openapi.json',
      ].sort(),
    );
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.components.securitySchemes.broker).toMatchObject({ type: 'oauth2', flows: { authorizationCode: { scopes: { 'delegation.read': expect.any(String), 'delegation.staff': expect.any(String) } } } });
    expect(doc.paths['/api/delegations/staff'].post.security).toEqual([{ bearer: ['delegation.staff'] }, { broker: ['delegation.staff'] }]);
    expect(doc.components.schemas.Invitation).toMatchObject({ type: 'object', required: expect.arrayContaining(['access']) });
    // Every reference resolves inside the document.
    for (const [, target] of JSON.stringify(doc).matchAll(/"\$ref":"([^"]+)"/g)) {
      expect(target).toMatch(/^#\/components\/schemas\//);
      expect(doc.components.schemas[target.slice('#/components/schemas/'.length)], target).toBeDefined();
    }
  });

  // Last: the tampered records poison the carer's and patient's lists from here on (see the report).
  describe('tampering', () => {
    const row = (id: string, version: number) => db.prepare('SELECT record, status FROM consent_versions WHERE id = ? AND version = ?').get(id, version) as { record: string; status: string };

    it('an edited row (a revoked consent copied back to active): GET, FHIR, change and introspection refuse; history fails; audited', async () => {
      const id = await activeDelegation(['patient/Patient.rs']);
      const tokens = await clientTokens(t, { persona: 'carer' }, id);
      expect(decodeJwt(tokens.access_token)).toMatchObject({ sub: patient.accountId, act: { sub: carer.accountId }, consent_id: id });
      expect(await call(t, patient.token, 'DELETE', `/api/delegations/${id}`, { reason: 'ROLE_DEACTIVATED_PATIENT_REQUEST' })).toMatchObject({ status: 200 });
      // The attacker makes the newest version say "active" by copying the active version's sealed record over it.
      const active = row(id, 2);
      db.prepare('UPDATE consent_versions SET record = ?, status = ? WHERE id = ? AND version = 3').run(active.record, 'active', id);
      db.prepare('UPDATE consents SET status = ? WHERE id = ?').run('active', id);

      const get = await call(t, patient.token, 'GET', `/api/delegations/${id}`);
      expect(get).toMatchObject({ status: 409, body: { error: 'record_tampered' } });
      expect(String(get.body.error_description)).toMatch(/does not match its index|failed its signature check/);
      expect(await call(t, patient.token, 'GET', `/api/delegations/${id}/fhir`)).toMatchObject({ status: 409, body: { resourceType: 'OperationOutcome' } });
      expect(await call(t, patient.token, 'GET', `/api/delegations/${id}/history`)).toMatchObject({ status: 409, body: { error: 'record_tampered' } });
      expect(await call(t, patient.token, 'PATCH', `/api/delegations/${id}`, { access: { level: 1 } })).toMatchObject({ status: 409, body: { error: 'record_tampered' } });
      expect(await introspect(t, tokens.access_token)).toEqual({ active: false });
      await auditEntry(t.broker, 'signature.invalid', (e) => e.consent === id && e.outcome === 'failure');
      await refusedAudit(null, 'consent.changed', patient.accountId);
      // Nothing was written on top of the tampered row.
      expect((db.prepare('SELECT COUNT(*) AS n FROM consent_versions WHERE id = ?').get(id) as { n: number }).n).toBe(3);
    });

    it('a forged record (signed with another key, sealed with the right one): refused as failing its signature', async () => {
      const id = await activeDelegation(['patient/Patient.rs']);
      const sealer = createSealer([parseDataKey(TEST_KEK)]);
      const jws = sealer.open(row(id, 2).record, 'consent-record');
      const original = JSON.parse(Buffer.from(jws.split('.')[1], 'base64url').toString()) as Json;
      const { privateKey } = await generateKeyPair('ES256');
      const kid = t.broker.publicJwks().keys.find((k) => k.alg === 'ES256')?.kid;
      const forged = await new CompactSign(new TextEncoder().encode(JSON.stringify({ ...original, access: { scopes: ['patient/*.rs'], level: 3 } })))
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'consent+jws' })
        .sign(privateKey);
      db.prepare('UPDATE consent_versions SET record = ? WHERE id = ? AND version = 2').run(sealer.seal(forged, 'consent-record'), id);
      const res = await call(t, carer.token, 'GET', `/api/delegations/${id}`);
      expect(res).toMatchObject({ status: 409, body: { error: 'record_tampered' } });
      expect(String(res.body.error_description)).toMatch(/failed its signature check/);
      expect(await t.broker.delegation.activeFor(id, carer.accountId)).toBeUndefined();
      await auditEntry(t.broker, 'signature.invalid', (e) => e.consent === id);
    });

    it('a removed version: each remaining record verifies, but the history breaks the chain', async () => {
      const id = await activeDelegation(['patient/Patient.rs', 'patient/Observation.rs']);
      expect((await call(t, patient.token, 'PATCH', `/api/delegations/${id}`, { access: { scopes: ['patient/Patient.rs'] } })).status).toBe(200);
      db.prepare('DELETE FROM consent_versions WHERE id = ? AND version = 2').run(id);
      expect((await call(t, patient.token, 'GET', `/api/delegations/${id}`)).status).toBe(200);
      const history = await call(t, patient.token, 'GET', `/api/delegations/${id}/history`);
      expect(history).toMatchObject({ status: 409, body: { error: 'record_tampered' } });
      expect(String(history.body.error_description)).toMatch(/breaks the chain/);
      await auditEntry(t.broker, 'signature.invalid', (e) => e.consent === id);
    });
  });
});
