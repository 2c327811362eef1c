import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Store, StoredConsent } from '../store/contracts.ts';
import type { Sealer } from '../crypto/seal.ts';
import type { RecordSigner } from '../crypto/jws-signer.ts';
import type { DelegationPolicy } from '../config/schema.ts';
import { meetsAssurance } from '../identity/assurance.ts';
import { accessSchema, consentRecordSchema, grantedScopes, LEGAL_BASES, scopeCovered, type Access, type AccessInput, type ConsentRecord, type ConsentStatus, type LegalBasis } from './model.ts';
import { transitionError } from './transitions.ts';
import { DelegationError } from './errors.ts';

// The lifecycle of delegations: a patient invites a carer, the carer accepts or declines, staff record
// verified relationships, any party ends it, and it ends by its end date. Each change is a new signed
// version written with compare-and-set, so two concurrent changes can never both apply.

const RECORD_TYP = 'consent+jws';
const SEAL_PURPOSE = 'consent-record';
const INVITATION_MODEL = 'ConsentInvitation';

/** Who is acting, with the assurance of their current login. */
export interface Actor {
  accountId: string;
  assurance: { aal?: number; proofing?: string };
  /** Staff only: the selected CIS2 role. */
  role?: { roleId: string; roleCode: string; orgCode: string };
}

export type ConsentEventType = 'consent.proposed' | 'consent.accepted' | 'consent.changed' | 'consent.revoked' | 'consent.expired' | 'consent.rejected' | 'consent.refused';

export interface DelegationEvents {
  /** Every change and every refused attempt (outcome failure), for the audit ledger. */
  onEvent?(type: ConsentEventType, record: ConsentRecord | undefined, actor: string, outcome: 'success' | 'failure', details: Record<string, unknown>): void | Promise<void>;
  /** A consent stopped being active: other instances and resource servers must learn at once. */
  onRevoked?(consentId: string): void | Promise<void>;
}

export interface VerifiedConsent {
  record: ConsentRecord;
  jws: string;
}

function iso(epochMs = Date.now()): string {
  return new Date(epochMs).toISOString();
}

function hashOf(jws: string): string {
  return createHash('sha256').update(jws).digest('base64url');
}

export class DelegationService {
  readonly #store: Store;
  readonly #sealer: Sealer;
  readonly #signer: RecordSigner;
  readonly #policy: DelegationPolicy;
  readonly #events: DelegationEvents;

  constructor(store: Store, sealer: Sealer, signer: RecordSigner, policy: DelegationPolicy, events: DelegationEvents = {}) {
    this.#store = store;
    this.#sealer = sealer;
    this.#signer = signer;
    this.#policy = policy;
    this.#events = events;
  }

  async #refuse(type: ConsentEventType, actor: string, record: ConsentRecord | undefined, err: DelegationError): Promise<never> {
    await this.#events.onEvent?.('consent.refused', record, actor, 'failure', { attempted: type, code: err.code, reason: err.message });
    throw err;
  }

  async #sign(record: ConsentRecord): Promise<string> {
    return this.#signer.sign(new TextEncoder().encode(JSON.stringify(record)), RECORD_TYP);
  }

  /** Opens and verifies one stored version: seal, signature, schema, and that it is what the index says. */
  async #open(stored: StoredConsent): Promise<VerifiedConsent> {
    let record: ConsentRecord;
    let jws: string;
    try {
      jws = this.#sealer.open(stored.record, SEAL_PURPOSE);
      const payload = await this.#signer.verify(jws, RECORD_TYP);
      record = consentRecordSchema.parse(JSON.parse(new TextDecoder().decode(payload)));
    } catch {
      throw new DelegationError('tampered', `consent ${stored.id} version ${stored.version} failed its signature check`);
    }
    if (record.id !== stored.id || record.version !== stored.version || record.status !== stored.status || record.grantor !== stored.grantor || record.grantee !== stored.grantee) {
      throw new DelegationError('tampered', `consent ${stored.id} version ${stored.version} does not match its index`);
    }
    return { record, jws };
  }

  #toStored(record: ConsentRecord, jws: string): StoredConsent {
    return {
      id: record.id,
      version: record.version,
      grantor: record.grantor,
      grantee: record.grantee,
      status: record.status,
      record: this.#sealer.seal(jws, SEAL_PURPOSE),
      updatedAt: Math.floor(Date.parse(record.updatedAt) / 1000),
      endsAt: record.period.end ? Math.floor(Date.parse(record.period.end) / 1000) : undefined,
    };
  }

  /** Writes the next version (compare-and-set on the current one). */
  async #next(current: VerifiedConsent, changes: Partial<ConsentRecord>, actor: string): Promise<ConsentRecord> {
    const next: ConsentRecord = consentRecordSchema.parse({
      ...current.record,
      ...changes,
      version: current.record.version + 1,
      updatedAt: iso(),
      changedBy: actor,
      prev: hashOf(current.jws),
    });
    const jws = await this.#sign(next);
    const ok = await this.#store.consents.update(this.#toStored(next, jws), current.record.version);
    if (!ok) throw new DelegationError('conflict', 'the consent was changed at the same time; reload and try again');
    return next;
  }

  #checkPeriod(period: { start: string; end?: string }): void {
    const start = Date.parse(period.start);
    const end = period.end ? Date.parse(period.end) : undefined;
    if (end !== undefined && end <= start) throw new DelegationError('invalid', 'the end date must be after the start date');
    const max = start + this.#policy.maximumPeriodDays * 86_400_000;
    if (end === undefined || end > max) throw new DelegationError('invalid', `a delegation may last at most ${this.#policy.maximumPeriodDays} days; give an end date within that`);
  }

  #checkAccess(access: AccessInput): Access {
    const parsed = accessSchema.safeParse(access);
    if (!parsed.success) throw new DelegationError('invalid', parsed.error.issues[0]?.message ?? 'invalid access');
    if (parsed.data.level !== undefined && !this.#policy.allowedLevels.includes(parsed.data.level)) throw new DelegationError('invalid', `access level ${parsed.data.level} is not allowed`);
    return parsed.data;
  }

  #checkProofing(actor: Actor, who: string): void {
    if (!meetsAssurance(actor.assurance, { proofing: this.#policy.minimumProofing })) {
      throw new DelegationError('forbidden', `the ${who} must have verified their identity to ${this.#policy.minimumProofing}`);
    }
  }

  #isStaff(actor: Actor): boolean {
    const jobRole = actor.role?.roleCode.split(':').pop() ?? '';
    return meetsAssurance(actor.assurance, { aal: this.#policy.staffMinimumAal }) && this.#policy.staffRoleCodes.includes(jobRole);
  }

  /** A patient invites someone to act for them. Returns the single-use code to hand to the invitee. */
  async invite(patient: Actor, input: { legalBasis?: LegalBasis; access: AccessInput; period?: { start?: string; end?: string } }): Promise<{ record: ConsentRecord; code: string }> {
    const legalBasis = input.legalBasis ?? 'consent';
    try {
      this.#checkProofing(patient, 'patient');
      if (!LEGAL_BASES.includes(legalBasis)) throw new DelegationError('invalid', 'unknown legal basis');
      if (this.#policy.staffVerified.includes(legalBasis)) throw new DelegationError('forbidden', `${legalBasis} must be recorded by staff who have verified it`);
      const access = this.#checkAccess(input.access);
      const period = { start: input.period?.start ?? iso(), end: input.period?.end };
      this.#checkPeriod(period);
      const code = randomBytes(15).toString('base64url');
      const now = iso();
      const record: ConsentRecord = consentRecordSchema.parse({
        id: randomUUID(),
        version: 1,
        status: 'proposed',
        statusReason: 'APPLICATION_SUBMITTED',
        grantor: patient.accountId,
        invitation: { codeHash: hashOf(code), expiresAt: iso(Date.now() + this.#policy.invitationTTL * 1000) },
        legalBasis,
        access,
        period,
        createdAt: now,
        updatedAt: now,
        changedBy: patient.accountId,
        prev: null,
      });
      const jws = await this.#sign(record);
      // The handle outlives the invitation by a day, so an expired code gets a clear "expired" answer.
      await this.#store.oidc.upsert(INVITATION_MODEL, hashOf(code), { consentId: record.id }, this.#policy.invitationTTL + 86_400);
      if (!(await this.#store.consents.create(this.#toStored(record, jws)))) throw new DelegationError('conflict', 'consent id collision');
      await this.#events.onEvent?.('consent.proposed', record, patient.accountId, 'success', { legalBasis, access });
      return { record, code };
    } catch (err) {
      if (err instanceof DelegationError) return this.#refuse('consent.proposed', patient.accountId, undefined, err);
      throw err;
    }
  }

  /** The invitee answers with the code: accept binds them as grantee; decline rejects the invitation. */
  async respond(invitee: Actor, code: string, answer: 'accept' | 'decline'): Promise<ConsentRecord> {
    const type = answer === 'accept' ? 'consent.accepted' : 'consent.rejected';
    let current: VerifiedConsent | undefined;
    try {
      if (typeof code !== 'string' || code.length < 10 || code.length > 100) throw new DelegationError('not-found', 'this invitation code is not valid');
      const handle = await this.#store.oidc.find(INVITATION_MODEL, hashOf(code));
      if (!handle || typeof handle.consentId !== 'string') throw new DelegationError('not-found', 'this invitation code is not valid, or has expired or been used');
      if (handle.consumed) throw new DelegationError('not-found', 'this invitation has already been used');
      current = await this.get(handle.consentId);
      const r = current.record;
      if (r.grantor === invitee.accountId) throw new DelegationError('forbidden', 'you cannot accept your own invitation');
      if (answer === 'accept') this.#checkProofing(invitee, 'person accepting');
      if (r.status !== 'proposed' || !r.invitation) throw new DelegationError('invalid-transition', 'this invitation has already been answered');
      if (Date.parse(r.invitation.expiresAt) <= Date.now()) throw new DelegationError('expired', 'this invitation has expired');
      // Single use, across instances: only the caller that consumes the code may answer.
      if (!(await this.#store.oidc.consume(INVITATION_MODEL, hashOf(code)))) throw new DelegationError('not-found', 'this invitation has already been used');
      const to: ConsentStatus = answer === 'accept' ? 'active' : 'rejected';
      const reason = answer === 'accept' ? 'ROLE_CREATED' : 'APPLICATION_WITHDRAWN';
      const problem = transitionError(r.status, to, reason);
      if (problem) throw new DelegationError('invalid-transition', problem);
      const next = await this.#next(current, { status: to, statusReason: reason, grantee: invitee.accountId, invitation: undefined }, invitee.accountId);
      await this.#events.onEvent?.(type, next, invitee.accountId, 'success', {});
      return next;
    } catch (err) {
      if (err instanceof DelegationError) return this.#refuse(type, invitee.accountId, current?.record, err);
      throw err;
    }
  }

  /** Staff record a relationship they have verified (for example parental responsibility). Active at once. */
  async recordVerified(staff: Actor, input: { grantor: string; grantee: string; legalBasis: LegalBasis; access: AccessInput; period: { start?: string; end?: string }; evidence?: string }): Promise<ConsentRecord> {
    try {
      if (!this.#isStaff(staff)) throw new DelegationError('forbidden', `recording a verified relationship needs a staff login at AAL${this.#policy.staffMinimumAal} with an allowed role`);
      if (input.grantor === input.grantee) throw new DelegationError('invalid', 'a person cannot act for themselves');
      if (!LEGAL_BASES.includes(input.legalBasis)) throw new DelegationError('invalid', 'unknown legal basis');
      const access = this.#checkAccess(input.access);
      const period = { start: input.period.start ?? iso(), end: input.period.end };
      this.#checkPeriod(period);
      const now = iso();
      const record: ConsentRecord = consentRecordSchema.parse({
        id: randomUUID(),
        version: 1,
        status: 'active',
        statusReason: 'ROLE_CREATED',
        grantor: input.grantor,
        grantee: input.grantee,
        legalBasis: input.legalBasis,
        access,
        period,
        verifier: { accountId: staff.accountId, roleId: staff.role?.roleId, orgCode: staff.role?.orgCode },
        evidence: input.evidence,
        createdAt: now,
        updatedAt: now,
        changedBy: staff.accountId,
        prev: null,
      });
      const jws = await this.#sign(record);
      if (!(await this.#store.consents.create(this.#toStored(record, jws)))) throw new DelegationError('conflict', 'consent id collision');
      await this.#events.onEvent?.('consent.accepted', record, staff.accountId, 'success', { verified: true, legalBasis: input.legalBasis });
      return record;
    } catch (err) {
      if (err instanceof DelegationError) return this.#refuse('consent.accepted', staff.accountId, undefined, err);
      throw err;
    }
  }

  /** The patient changes access or period. The grantee can never widen what they were given. */
  async change(actor: Actor, consentId: string, changes: { access?: AccessInput; period?: { start: string; end?: string } }): Promise<ConsentRecord> {
    let current: VerifiedConsent | undefined;
    try {
      current = await this.get(consentId);
      const r = current.record;
      if (r.grantor !== actor.accountId) throw new DelegationError('forbidden', 'only the patient can change what a delegation allows');
      const problem = transitionError(r.status, 'active', 'ROLE_CHANGED');
      if (problem) throw new DelegationError('invalid-transition', problem);
      const access = changes.access ? this.#checkAccess(changes.access) : r.access;
      const period = changes.period ?? r.period;
      this.#checkPeriod(period);
      const next = await this.#next(current, { access, period, statusReason: 'ROLE_CHANGED' }, actor.accountId);
      await this.#events.onEvent?.('consent.changed', next, actor.accountId, 'success', { access });
      // A narrower consent must bite at once on tokens already issued.
      await this.#events.onRevoked?.(consentId);
      return next;
    } catch (err) {
      if (err instanceof DelegationError) return this.#refuse('consent.changed', actor.accountId, current?.record, err);
      throw err;
    }
  }

  /** The patient, the grantee or staff end a delegation (or withdraw a pending invitation), with a reason. */
  async end(actor: Actor, consentId: string, reason: string, text?: string): Promise<ConsentRecord> {
    let current: VerifiedConsent | undefined;
    try {
      current = await this.get(consentId);
      const r = current.record;
      const party = actor.accountId === r.grantor || actor.accountId === r.grantee;
      if (!party && !this.#isStaff(actor)) throw new DelegationError('forbidden', 'only the patient, the person acting for them, or staff can end this');
      const to: ConsentStatus = 'inactive';
      const problem = transitionError(r.status, to, reason, text);
      if (problem) throw new DelegationError('invalid-transition', problem);
      const next = await this.#next(current, { status: to, statusReason: reason, statusText: text, invitation: undefined }, actor.accountId);
      if (r.invitation) await this.#store.oidc.destroy(INVITATION_MODEL, r.invitation.codeHash);
      await this.#events.onEvent?.('consent.revoked', next, actor.accountId, 'success', { reason });
      await this.#events.onRevoked?.(consentId);
      return next;
    } catch (err) {
      if (err instanceof DelegationError) return this.#refuse('consent.revoked', actor.accountId, current?.record, err);
      throw err;
    }
  }

  /** Ends every active delegation whose end date has passed (run periodically; also enforced on read). */
  async expireDue(now = Date.now()): Promise<number> {
    const due = await this.#store.consents.listEnding(Math.floor(now / 1000), ['active', 'proposed'], 500);
    let n = 0;
    for (const stored of due) {
      try {
        const current = await this.#open(stored);
        const reason = current.record.status === 'active' ? 'ROLE_DEACTIVATED_END_DATE_REACHED' : 'INVITATION_EXPIRED';
        const next = await this.#next(current, { status: 'inactive', statusReason: reason, invitation: undefined }, 'system');
        await this.#events.onEvent?.('consent.expired', next, 'system', 'success', {});
        await this.#events.onRevoked?.(stored.id);
        n++;
      } catch (err) {
        if (!(err instanceof DelegationError)) throw err;
      }
    }
    return n;
  }

  /** The newest version, verified. */
  async get(consentId: string): Promise<VerifiedConsent> {
    const stored = await this.#store.consents.get(consentId);
    if (!stored) throw new DelegationError('not-found', 'no such delegation');
    return this.#open(stored);
  }

  /** Every version, each verified, and the hash chain between them checked. */
  async history(consentId: string): Promise<ConsentRecord[]> {
    const versions = await this.#store.consents.history(consentId);
    if (versions.length === 0) throw new DelegationError('not-found', 'no such delegation');
    const out: ConsentRecord[] = [];
    let prevJws: string | undefined;
    for (const v of versions) {
      const { record, jws } = await this.#open(v);
      const expectedPrev = prevJws === undefined ? null : hashOf(prevJws);
      if (record.prev !== expectedPrev || record.version !== out.length + 1) throw new DelegationError('tampered', `consent ${consentId} version ${record.version} breaks the chain`);
      out.push(record);
      prevJws = jws;
    }
    return out;
  }

  /** Verified records; one that fails verification is left out and reported, so it cannot hide the others. */
  async #openAll(stored: StoredConsent[]): Promise<ConsentRecord[]> {
    const out: ConsentRecord[] = [];
    for (const s of stored) {
      try {
        out.push((await this.#open(s)).record);
      } catch (err) {
        if (!(err instanceof DelegationError)) throw err;
        await this.#events.onEvent?.('consent.refused', undefined, 'system', 'failure', { consent: s.id, code: err.code, reason: err.message });
      }
    }
    return out;
  }

  async listForPatient(accountId: string): Promise<ConsentRecord[]> {
    return this.#openAll(await this.#store.consents.listByGrantor(accountId));
  }

  async listForGrantee(accountId: string): Promise<ConsentRecord[]> {
    return this.#openAll(await this.#store.consents.listByGrantee(accountId));
  }

  /**
   * The consent if it lets `grantee` act for its patient right now; undefined otherwise. The hot path
   * of delegated-token issue, refresh and introspection: one store read and one signature check.
   */
  async activeFor(consentId: string, grantee?: string, at = Date.now()): Promise<ConsentRecord | undefined> {
    let verified: VerifiedConsent;
    try {
      verified = await this.get(consentId);
    } catch (err) {
      if (err instanceof DelegationError) return undefined;
      throw err;
    }
    const r = verified.record;
    if (r.status !== 'active') return undefined;
    if (grantee !== undefined && r.grantee !== grantee) return undefined;
    if (Date.parse(r.period.start) > at) return undefined;
    if (r.period.end && Date.parse(r.period.end) <= at) return undefined;
    return r;
  }

  /** The requested scopes this consent covers (the rest are dropped: never wider than the consent). */
  static narrow(requested: string[], record: ConsentRecord): string[] {
    const granted = grantedScopes(record.access);
    return requested.filter((s) => scopeCovered(s, granted));
  }
}
