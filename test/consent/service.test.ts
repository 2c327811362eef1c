import { describe, it, expect, beforeEach } from 'vitest';
import { exportJWK, generateKeyPair } from 'jose';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/index.ts';
import { createSealer } from '../../src/crypto/seal.ts';
import { createRecordSigner } from '../../src/crypto/jws-signer.ts';
import { DelegationService, type Actor } from '../../src/delegation/service.ts';
import { DelegationError } from '../../src/delegation/errors.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { DelegationPolicy } from '../../src/config/schema.ts';

// The consent lifecycle on its own: the state machine, the policy, single-use invitations, signatures
// and the hash chain, compare-and-set under concurrency. Every refusal changes nothing and is reported.

const patient: Actor = { accountId: 'patient-1', assurance: { aal: 2, proofing: 'P9' } };
const carer: Actor = { accountId: 'carer-1', assurance: { aal: 2, proofing: 'P9' } };
const weakCarer: Actor = { accountId: 'carer-2', assurance: { aal: 2, proofing: 'P5' } };
const nurse: Actor = { accountId: 'nurse-1', assurance: { aal: 3 }, role: { roleId: 'R-1', roleCode: 'S8000:G8000:R8001', orgCode: 'Y51' } };
const clerk: Actor = { accountId: 'clerk-1', assurance: { aal: 3 }, role: { roleId: 'R-2', roleCode: 'S8002:G8003:R0001', orgCode: 'X26' } };
const inAMonth = () => new Date(Date.now() + 30 * 86_400_000).toISOString();

describe('consent lifecycle', () => {
  let store: SqliteStore;
  let service: DelegationService;
  let events: Array<{ type: string; outcome: string; details: Record<string, unknown> }>;
  let policy: DelegationPolicy;

  async function build(overrides: Partial<DelegationPolicy> = {}) {
    store = openSqliteStore(':memory:');
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const priv = { ...(await exportJWK(privateKey)), kid: 'k1', alg: 'ES256' };
    const pub = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    policy = { ...parseConfig({}, {}).delegation, ...overrides };
    events = [];
    service = new DelegationService(store, createSealer([Buffer.alloc(32, 3)]), await createRecordSigner(priv, () => ({ keys: [pub] })), policy, {
      onEvent: (type, _record, _actor, outcome, details) => void events.push({ type, outcome, details }),
    });
  }
  beforeEach(() => build());

  async function refusedWith(code: DelegationError['code'], attempt: () => Promise<unknown>) {
    const before = events.length;
    await expect(attempt()).rejects.toMatchObject({ name: 'DelegationError', code });
    expect(events.slice(before)).toEqual([expect.objectContaining({ type: 'consent.refused', outcome: 'failure' })]);
  }

  it('invite -> accept makes an active, signed, chained record', async () => {
    const { record, code } = await service.invite(patient, { access: { scopes: ['patient/Observation.rs'] }, period: { end: inAMonth() } });
    expect(record).toMatchObject({ status: 'proposed', version: 1, prev: null });
    const accepted = await service.respond(carer, code, 'accept');
    expect(accepted).toMatchObject({ status: 'active', version: 2, grantee: carer.accountId, statusReason: 'ROLE_CREATED' });
    expect(await service.activeFor(record.id, carer.accountId)).toBeTruthy();
    const history = await service.history(record.id);
    expect(history.map((h) => h.status)).toEqual(['proposed', 'active']);
    expect(history[1].prev).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('a reused invitation is refused and changes nothing', async () => {
    const { record, code } = await service.invite(patient, { access: { level: 1 }, period: { end: inAMonth() } });
    await service.respond(carer, code, 'accept');
    await refusedWith('not-found', () => service.respond({ ...carer, accountId: 'carer-3' }, code, 'accept'));
    expect((await service.get(record.id)).record.grantee).toBe(carer.accountId);
  });

  it('an expired invitation is refused', async () => {
    await build({ invitationTTL: 1 });
    const { record, code } = await service.invite(patient, { access: { level: 1 }, period: { end: inAMonth() } });
    await new Promise((r) => setTimeout(r, 1100));
    await expect(service.respond(carer, code, 'accept')).rejects.toBeInstanceOf(DelegationError);
    expect((await service.get(record.id)).record.status).toBe('proposed');
  });

  it('a patient cannot accept their own invitation; a carer below P9 cannot accept', async () => {
    const { record, code } = await service.invite(patient, { access: { level: 1 }, period: { end: inAMonth() } });
    await refusedWith('forbidden', () => service.respond(patient, code, 'accept'));
    await refusedWith('forbidden', () => service.respond(weakCarer, code, 'accept'));
    expect((await service.get(record.id)).record.status).toBe('proposed');
  });

  it('legal bases that need staff verification cannot be self-declared; staff at AAL3 with an allowed role record them', async () => {
    await refusedWith('forbidden', () => service.invite(patient, { legalBasis: 'parental-responsibility', access: { level: 2 }, period: { end: inAMonth() } }));
    await refusedWith('forbidden', () => service.recordVerified(clerk, { grantor: 'child-1', grantee: 'parent-1', legalBasis: 'parental-responsibility', access: { level: 2 }, period: { end: inAMonth() } }));
    await refusedWith('forbidden', () => service.recordVerified({ ...nurse, assurance: { aal: 2 } }, { grantor: 'child-1', grantee: 'parent-1', legalBasis: 'parental-responsibility', access: { level: 2 }, period: { end: inAMonth() } }));
    const r = await service.recordVerified(nurse, { grantor: 'child-1', grantee: 'parent-1', legalBasis: 'parental-responsibility', access: { level: 2 }, period: { end: inAMonth() }, evidence: 'birth certificate seen' });
    expect(r).toMatchObject({ status: 'active', verifier: { accountId: 'nurse-1', orgCode: 'Y51' } });
  });

  it('period and access policy: no end date, too long, unknown level, non-patient scopes', async () => {
    await refusedWith('invalid', () => service.invite(patient, { access: { level: 1 } }));
    await refusedWith('invalid', () => service.invite(patient, { access: { level: 1 }, period: { end: new Date(Date.now() + 4 * 365 * 86_400_000).toISOString() } }));
    await refusedWith('invalid', () => service.invite(patient, { access: { scopes: ['system/Patient.rs'] }, period: { end: inAMonth() } }));
    await build({ allowedLevels: [1] });
    await refusedWith('invalid', () => service.invite(patient, { access: { level: 3 }, period: { end: inAMonth() } }));
  });

  it('invalid transitions are refused: ending twice, reactivating by invite code, OTHER without text', async () => {
    const { record, code } = await service.invite(patient, { access: { level: 1 }, period: { end: inAMonth() } });
    await service.respond(carer, code, 'accept');
    await refusedWith('invalid-transition', () => service.end(patient, record.id, 'OTHER'));
    await refusedWith('invalid-transition', () => service.end(patient, record.id, 'ROLE_CREATED'));
    await service.end(patient, record.id, 'ROLE_DEACTIVATED_PATIENT_REQUEST');
    await refusedWith('invalid-transition', () => service.end(carer, record.id, 'ROLE_DEACTIVATED_PROXY_REQUEST'));
    await refusedWith('invalid-transition', () => service.change(patient, record.id, { access: { level: 2 } }));
    expect(await service.activeFor(record.id, carer.accountId)).toBeUndefined();
  });

  it('only the patient changes access; the grantee cannot widen it; strangers cannot end it', async () => {
    const { record, code } = await service.invite(patient, { access: { scopes: ['patient/Observation.rs'] }, period: { end: inAMonth() } });
    await service.respond(carer, code, 'accept');
    await refusedWith('forbidden', () => service.change(carer, record.id, { access: { level: 3 } }));
    await refusedWith('forbidden', () => service.end({ accountId: 'stranger', assurance: { aal: 2, proofing: 'P9' } }, record.id, 'ROLE_DEACTIVATED_PATIENT_REQUEST'));
    const changed = await service.change(patient, record.id, { access: { scopes: ['patient/Observation.r'] } });
    expect(changed).toMatchObject({ version: 3, status: 'active', statusReason: 'ROLE_CHANGED' });
    expect(DelegationService.narrow(['patient/Observation.rs', 'patient/Observation.r'], changed)).toEqual(['patient/Observation.r']);
  });

  it('an edited record fails its signature check; a removed version breaks the chain', async () => {
    const { record, code } = await service.invite(patient, { access: { level: 1 }, period: { end: inAMonth() } });
    await service.respond(carer, code, 'accept');
    await service.end(carer, record.id, 'ROLE_DEACTIVATED_PROXY_REQUEST');
    // Edit the index to claim it is still active: the signed record disagrees.
    store.db.prepare("UPDATE consents SET status = 'active' WHERE id = ?").run(record.id);
    store.db.prepare("UPDATE consent_versions SET status = 'active' WHERE id = ? AND version = 3").run(record.id);
    await expect(service.get(record.id)).rejects.toMatchObject({ code: 'tampered' });
    expect(await service.activeFor(record.id, carer.accountId)).toBeUndefined();
    store.db.prepare("UPDATE consent_versions SET status = 'inactive' WHERE id = ? AND version = 3").run(record.id);
    store.db.prepare("UPDATE consents SET status = 'inactive' WHERE id = ?").run(record.id);
    // Swap in a forged sealed record: the seal or signature fails.
    const v2 = store.db.prepare('SELECT record FROM consent_versions WHERE id = ? AND version = 2').get(record.id) as { record: string };
    const tampered = v2.record.slice(0, -6) + (v2.record.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA');
    store.db.prepare('UPDATE consent_versions SET record = ? WHERE id = ? AND version = 2').run(tampered, record.id);
    await expect(service.history(record.id)).rejects.toMatchObject({ code: 'tampered' });
  });

  it('20 concurrent ends of one consent: exactly one applies', async () => {
    const { record, code } = await service.invite(patient, { access: { level: 1 }, period: { end: inAMonth() } });
    await service.respond(carer, code, 'accept');
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => service.end(patient, record.id, 'ROLE_DEACTIVATED_PATIENT_REQUEST')));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((await service.history(record.id)).length).toBe(3);
  });

  it('end dates end delegations (sweep), and reads enforce them before the sweep', async () => {
    const { record, code } = await service.invite(patient, { access: { level: 1 }, period: { end: new Date(Date.now() + 1500).toISOString() } });
    await service.respond(carer, code, 'accept');
    await new Promise((r) => setTimeout(r, 1600));
    expect(await service.activeFor(record.id, carer.accountId)).toBeUndefined();
    expect(await service.expireDue()).toBe(1);
    expect((await service.get(record.id)).record).toMatchObject({ status: 'inactive', statusReason: 'ROLE_DEACTIVATED_END_DATE_REACHED' });
  });
});
