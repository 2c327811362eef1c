import type { Context } from 'koa';
import { DelegationError } from '../../delegation/errors.ts';
import type { PartyIdentifier } from '../../delegation/fhir.ts';
import type { Access, ConsentRecord, LegalBasis } from '../../delegation/model.ts';
import type { ApiCaller } from '../api-auth.ts';
import { actorOf, DEFAULT_STAFF_RULES, isStaff, type StaffRules } from './caller.ts';
import type { AccountAppDeps } from './index.ts';

// What the pages and the API share: the dependencies, the staff rules, and the few operations both
// make the same way (resolving people, recording verified relationships, reporting tampering).

export interface AccountContext {
  deps: AccountAppDeps;
  staffRules: StaffRules;
  acceptUrl(code: string): string;
  /** An account id for a person given by account id or NHS number; DelegationError('invalid') if none. */
  resolveParty(party: PartyIdentifier, field: string): Promise<string>;
  /** Staff record a verified relationship; a second active one between the same people is refused. */
  recordVerified(ctx: Context, caller: ApiCaller, input: { grantor: string; grantee: string; legalBasis: LegalBasis; access: Access; period: { start?: string; end?: string }; evidence?: string }): Promise<ConsentRecord>;
  /** A record failed its signature or chain check: recorded in the ledger (the caller sees a 409). */
  reportTampered(ctx: Context, accountId: string | undefined, consentId: string | undefined, err: DelegationError): Promise<void>;
}

function requestIdOf(ctx: Context): string | undefined {
  const id = (ctx.state as { requestId?: unknown }).requestId;
  return typeof id === 'string' ? id : undefined;
}

export function accountContext(deps: AccountAppDeps): AccountContext {
  const staffRules = deps.staffRules ?? DEFAULT_STAFF_RULES;
  const { accounts, delegation, ledger, log } = deps;

  const append = async (event: Parameters<typeof ledger.append>[0]): Promise<void> => {
    try {
      await ledger.append(JSON.parse(JSON.stringify(event)) as typeof event);
    } catch (err) {
      log.error({ err }, 'audit append failed');
    }
  };

  return {
    deps,
    staffRules,
    acceptUrl: (code) => {
      const url = new URL('/account/invitations/accept', deps.issuer);
      url.searchParams.set('code', code);
      return url.href;
    },

    async resolveParty(party, field) {
      if (party.kind === 'account') {
        if (!(await accounts.getProfile(party.value))) throw new DelegationError('invalid', `the ${field} has no account on this broker`);
        return party.value;
      }
      if (!deps.findAccountByNhsNumber) throw new DelegationError('invalid', `people cannot be looked up by NHS number on this broker; give the ${field}'s account id`);
      const found = await deps.findAccountByNhsNumber(party.value);
      if (!found) throw new DelegationError('invalid', `no account is linked to the ${field}'s NHS number`);
      return found;
    },

    async recordVerified(ctx, caller, input) {
      // Not staff: the service refuses (and audits) before anything is looked up.
      if (!isStaff(caller, staffRules)) return delegation.recordVerified(actorOf(caller), input);
      const existing = await delegation.listForPatient(input.grantor);
      if (existing.some((r) => r.grantee === input.grantee && r.status === 'active')) {
        const err = new DelegationError('conflict', 'these people already have an active relationship; change or end that one instead');
        await append({ type: 'consent.changed', outcome: 'failure', actor: caller.accountId, subject: input.grantor, requestId: requestIdOf(ctx), details: { attempted: 'consent.accepted', code: err.code, reason: err.message } });
        throw err;
      }
      return delegation.recordVerified(actorOf(caller), input);
    },

    async reportTampered(ctx, accountId, consentId, err) {
      log.error({ consentId, requestId: requestIdOf(ctx) }, 'consent record failed its integrity check');
      await append({ type: 'signature.invalid', outcome: 'failure', actor: accountId, consent: consentId, requestId: requestIdOf(ctx), details: { what: 'consent-record', reason: err.message, path: ctx.path } });
    },
  };
}
