import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { apiToken, auditEntry, call, inDays, startDelegationBroker, type DelegationBroker } from './helpers.ts';

// An invitation past its expiry is refused, changes nothing and is audited. The clock is moved with a
// fake Date (timers stay real), in its own broker so the rest of the suite keeps real time.

describe('expired invitation', () => {
  let t: DelegationBroker;
  beforeAll(async () => {
    t = await startDelegationBroker({ delegation: { invitationTTL: 300 } });
  });
  afterAll(async () => {
    vi.useRealTimers();
    await t?.close();
  });

  it('accepting after the invitation expired is refused; the record stays proposed; the refusal is audited', async () => {
    const patient = await apiToken(t, { persona: 'patient' });
    const created = await call<{ code: string; delegation: { id: string }; expiresAt: string }>(t, patient.token, 'POST', '/api/delegations', { access: { level: 1 }, period: { end: inDays(30) } });
    expect(created.status).toBe(201);
    expect(Date.parse(created.body.expiresAt) - Date.now()).toBeLessThanOrEqual(300_000);

    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    vi.setSystemTime(Date.now() + 301_000);
    const carer = await apiToken(t, { persona: 'carer' });
    const res = await call(t, carer.token, 'POST', '/api/delegations/invitations/accept', { code: created.body.code });
    expect([404, 410]).toContain(res.status);
    expect(String(res.body.error_description)).toMatch(/expired/);
    const { record } = await t.broker.delegation.get(created.body.delegation.id);
    expect(record).toMatchObject({ version: 1, status: 'proposed' });
    expect(record.grantee).toBeUndefined();
    await auditEntry(t.broker, 'consent.changed', (e) => e.outcome === 'failure' && e.details.attempted === 'consent.accepted' && t.broker.ledger.open(e).actor === carer.accountId);
  });
});
