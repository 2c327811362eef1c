import type { AccountService } from '../../identity/accounts.ts';
import type { ConsentRecord } from '../../delegation/model.ts';
import { grantedScopes } from '../../delegation/model.ts';
import type { Person } from '../../delegation/fhir.ts';
import { whoActedForMe, type Ledger } from '../../audit/index.ts';
import type { DelegationView } from './schemas.ts';

// Records as the pages and the API show them: names looked up (profiles are sealed at rest), invitation
// code hashes and other internals left out.

export type Names = (accountId: string) => Promise<Person>;

/** Per-request cache of profile look-ups: a list shows the same people many times. */
export function nameLookup(accounts: AccountService): Names {
  const cache = new Map<string, Promise<Person>>();
  return (accountId) => {
    let found = cache.get(accountId);
    if (!found) {
      found = accounts.getProfile(accountId).then((p) => {
        const person: Person = {};
        if (typeof p?.name === 'string') person.name = p.name;
        else if (typeof p?.given_name === 'string' || typeof p?.family_name === 'string') person.name = [p?.given_name, p?.family_name].filter((x) => typeof x === 'string').join(' ');
        if (typeof p?.nhs_number === 'string') person.nhsNumber = p.nhs_number;
        return person;
      });
      cache.set(accountId, found);
    }
    return found;
  };
}

async function personView(accountId: string, names: Names): Promise<{ accountId: string; name?: string }> {
  const { name } = await names(accountId);
  return name ? { accountId, name } : { accountId };
}

export async function viewOf(record: ConsentRecord, names: Names): Promise<DelegationView> {
  const view: DelegationView = {
    id: record.id,
    version: record.version,
    status: record.status,
    statusReason: record.statusReason,
    patient: await personView(record.grantor, names),
    legalBasis: record.legalBasis,
    access: record.access.level === undefined ? { scopes: record.access.scopes } : { scopes: record.access.scopes, level: record.access.level },
    grantedScopes: grantedScopes(record.access),
    period: record.period.end ? { start: record.period.start, end: record.period.end } : { start: record.period.start },
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    changedBy: record.changedBy,
  };
  if (record.statusText) view.statusText = record.statusText;
  if (record.grantee) view.grantee = await personView(record.grantee, names);
  if (record.invitation) view.invitationExpiresAt = record.invitation.expiresAt;
  if (record.verifier) view.verifiedBy = record.verifier.orgCode ? { accountId: record.verifier.accountId, orgCode: record.verifier.orgCode } : { accountId: record.verifier.accountId };
  return view;
}

export interface ActedForMeRow {
  time: string;
  type: 'token.issued' | 'token.exchanged';
  actors: Array<{ accountId: string; name?: string }>;
  client: string | null;
  consent: string | null;
  scope: string | null;
  audience: string | null;
  outcome: 'success' | 'failure';
}

/** Every token issued to someone acting for this patient, and every exchange made with one (from the ledger). */
export async function actedForMe(ledger: Ledger, patient: string, names: Names, limit = 100): Promise<ActedForMeRow[]> {
  const entries = await whoActedForMe(ledger, patient, { limit });
  return Promise.all(
    entries.map(async (e) => ({
      time: e.time,
      type: e.type,
      actors: await Promise.all(e.actors.map((a) => personView(a, names))),
      client: e.client,
      consent: e.consent,
      scope: e.scope,
      audience: e.audience,
      outcome: e.outcome,
    })),
  );
}
