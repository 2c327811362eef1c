import fc from 'fast-check';
import { apiToken, type DelegationBroker } from '../delegation/helpers.ts';
import type { FuzzBed } from './bed.ts';
import { stateRows } from './state.ts';
import type { FuzzTarget } from './target.ts';

// The delegation (consent) API under fuzz, as the patient, the carer, a stranger's token or none:
// every route and method, bodies that are near-valid (the real schema's fields with fuzzed values),
// arbitrary JSON or not JSON at all, odd content types. A refused call must change no consent record
// (rows and versions counted) and create nothing; a real delegation and invitation exist throughout so
// change, end and accept calls reach the service rather than stopping at "not found".

const REASONS = ['ROLE_DEACTIVATED_PATIENT_REQUEST', 'OTHER', 'PATIENT_DECEASED', 'x', ''];
const instant = fc.oneof(fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), fc.string({ maxLength: 30 }), fc.integer());
const access = fc.oneof(
  fc.record({ scopes: fc.array(fc.oneof(fc.constantFrom('patient/Patient.rs', 'patient/Observation.rs', 'system/Patient.rs', 'patient/*.*', 'openid'), fc.string({ maxLength: 30 })), { maxLength: 5 }) }, { requiredKeys: [] }),
  fc.record({ scopes: fc.constant(['patient/Patient.rs']), level: fc.oneof(fc.integer({ min: -1, max: 4 }), fc.string({ maxLength: 3 })) }),
  fc.jsonValue({ maxDepth: 3 }),
);
const period = fc.oneof(fc.record({ start: instant, end: instant }, { requiredKeys: [] }), fc.jsonValue({ maxDepth: 2 }));
const party = fc.oneof(fc.record({ accountId: fc.string({ maxLength: 40 }) }), fc.record({ nhsNumber: fc.oneof(fc.constantFrom('9434765919', '9434765918'), fc.string({ maxLength: 12 })) }));
const BODY = fc.oneof(
  fc.record({ access, period, legalBasis: fc.constantFrom('consent', 'parental-responsibility', 'court-deputy', 'nonsense') }, { requiredKeys: [] }),
  fc.record({ code: fc.oneof(fc.constant('<invitation>'), fc.string({ maxLength: 64 }), fc.base64String({ maxLength: 64 })) }),
  fc.record({ reason: fc.oneof(fc.constantFrom(...REASONS), fc.string({ maxLength: 90 })), text: fc.string({ maxLength: 600 }) }, { requiredKeys: [] }),
  fc.record({ patient: party, grantee: party, legalBasis: fc.constantFrom('parental-responsibility', 'consent', 'x'), access, period, evidence: fc.string({ maxLength: 100 }) }, { requiredKeys: [] }),
  fc.record({ resourceType: fc.constantFrom('Consent', 'Patient', 'Bundle'), status: fc.string({ maxLength: 12 }), provision: fc.jsonValue({ maxDepth: 4 }) }, { requiredKeys: [] }),
  fc.jsonValue({ maxDepth: 5 }),
  fc.string({ maxLength: 200 }).map((s) => ({ raw: s })),
);
const ROUTE = fc.constantFrom(
  ['GET', '/api/delegations'], ['POST', '/api/delegations'], ['POST', '/api/delegations/invitations/accept'], ['POST', '/api/delegations/invitations/decline'],
  ['POST', '/api/delegations/staff'], ['POST', '/api/delegations/import'], ['GET', '/api/delegations/<id>'], ['GET', '/api/delegations/<id>/history'],
  ['GET', '/api/delegations/<id>/fhir'], ['PATCH', '/api/delegations/<id>'], ['DELETE', '/api/delegations/<id>'], ['GET', '/api/who-acted-for-me'],
  ['PUT', '/api/delegations/<id>'], ['PATCH', '/api/delegations/<random>'], ['DELETE', '/api/delegations/<random>'], ['GET', '/api/delegations/<random>'],
);
const CALLER = fc.constantFrom('patient', 'patient', 'carer', 'none', 'garbage');
const CONTENT_TYPE = fc.constantFrom('application/json', 'application/json', 'application/fhir+json', 'text/plain', 'application/x-www-form-urlencoded', '');
const QUERY = fc.oneof(fc.constant(''), fc.string({ maxLength: 40 }).map((s) => `?limit=${encodeURIComponent(s)}&reason=${encodeURIComponent(s)}`));

export const consentApiTarget: FuzzTarget = {
  name: 'consent API',
  async run(bed: FuzzBed, numRuns: number) {
    const t: DelegationBroker = { broker: bed.tb.broker, server: bed.tb.server, base: bed.base, account: bed.account, web: bed.web, close: bed.close };
    let tokens: { patient: string; carer: string; at: number } | undefined;
    let delegationId = '';
    let invitationCode = '';
    const fresh = async () => {
      // API tokens live five minutes; a long run renews them (and a delegation and an invitation to aim at).
      if (tokens && Date.now() - tokens.at < 120_000) return tokens;
      const [patient, carer] = await Promise.all([apiToken(t, { persona: 'patient' }), apiToken(t, { persona: 'carer' })]);
      tokens = { patient: patient.token, carer: carer.token, at: Date.now() };
      const invite = async () => {
        const res = await fetch(`${bed.base}/api/delegations`, { method: 'POST', headers: { authorization: `Bearer ${patient.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ access: { scopes: ['patient/Patient.rs'] }, period: { end: new Date(Date.now() + 30 * 86_400_000).toISOString() } }) });
        if (res.status !== 201) throw new Error(`set-up invite answered ${res.status}: ${await res.text()}`);
        return (await res.json()) as { code: string; delegation: { id: string } };
      };
      const accepted = await invite();
      await fetch(`${bed.base}/api/delegations/invitations/accept`, { method: 'POST', headers: { authorization: `Bearer ${carer.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ code: accepted.code }) });
      delegationId = accepted.delegation.id;
      invitationCode = (await invite()).code;
      return tokens;
    };
    await fc.assert(
      fc.asyncProperty(ROUTE, CALLER, BODY, fc.boolean(), CONTENT_TYPE, QUERY, fc.string({ maxLength: 20 }), async ([method, route], caller, body, sendBody, contentType, query, randomId) => {
        const tk = await fresh();
        const path = route.replace('<id>', delegationId).replace('<random>', encodeURIComponent(randomId) || 'x');
        const headers: Record<string, string> = {};
        if (caller === 'patient' || caller === 'carer') headers.authorization = `Bearer ${tk[caller]}`;
        if (caller === 'garbage') headers.authorization = `Bearer ${randomId || 'x'}`;
        let payload: string | undefined;
        if (sendBody && method !== 'GET') {
          const value = body && typeof body === 'object' && 'code' in body && body.code === '<invitation>' ? { code: invitationCode } : body;
          payload = value && typeof value === 'object' && 'raw' in value && typeof value.raw === 'string' ? value.raw : JSON.stringify(value);
          if (contentType) headers['content-type'] = contentType;
        }
        const before = stateRows(bed.dbFile);
        const res = await fetch(`${bed.base}${path}${query}`, { method, headers, body: payload });
        const text = await res.text();
        if (res.status >= 500) throw new Error(`${method} ${path} answered ${res.status}: ${text.slice(0, 200)}`);
        if (res.status >= 400 && stateRows(bed.dbFile) > before) throw new Error(`${method} ${path} changed state on a refusal (${res.status})`);
        return true;
      }),
      { numRuns },
    );
  },
};
