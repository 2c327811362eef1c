import Router, { type RouterContext } from '@koa/router';
import { z } from 'zod';
import { DelegationError } from '../../delegation/errors.ts';
import { accountSystemFor, FhirMappingError, fromVrsConsent, toFhirConsent, type PartyIdentifier, type Person } from '../../delegation/fhir.ts';
import type { ConsentRecord } from '../../delegation/model.ts';
import type { ApiCaller, ApiScope } from '../api-auth.ts';
import { actorOf, isStaff } from './caller.ts';
import { ApiRequestError, parseWith, readJson, refusalOf, sendRefusal } from './http.ts';
import { actedForMe, nameLookup, viewOf, type Names } from './present.ts';
import { changeBody, consentIdSchema, endBody, inviteBody, respondBody, staffRecordBody, type DelegationView } from './schemas.ts';
import { buildOpenApi } from './openapi.ts';
import type { AccountContext } from './context.ts';

// The delegation JSON API: the same service calls the pages make, for apps. Bearer tokens from the
// broker for its own API resource, one scope per kind of call (read, write, staff, audit.read).

type Flavour = 'json' | 'fhir';
type Handler = (ctx: RouterContext, caller: ApiCaller) => Promise<void>;

export function apiRoutes(app: AccountContext): Router {
  const router = new Router();
  const { delegation, accounts, ledger, authenticateApi } = app.deps;
  const accountSystem = accountSystemFor(app.deps.issuer);

  function route(flavour: Flavour, scope: ApiScope, handler: Handler) {
    return async (ctx: RouterContext): Promise<void> => {
      let caller: ApiCaller | undefined;
      try {
        caller = await authenticateApi(ctx, scope);
        await handler(ctx, caller);
        ctx.set('Cache-Control', 'no-store');
      } catch (err) {
        const refusal = refusalOf(err);
        if (!refusal) throw err;
        if (err instanceof DelegationError && err.code === 'tampered') await app.reportTampered(ctx, caller?.accountId, ctx.params.id, err);
        sendRefusal(ctx, refusal, flavour);
      }
    };
  }

  function idParam(ctx: RouterContext): string {
    const parsed = consentIdSchema.safeParse(ctx.params.id);
    if (!parsed.success) throw new ApiRequestError(404, 'not_found', 'no such delegation', 'INVALIDATED_RESOURCE');
    return parsed.data;
  }

  /**
   * A record the caller may see: its patient, its grantee, or staff. Anyone else learns only that there
   * is no such delegation, so ids cannot be probed.
   */
  async function visible(id: string, caller: ApiCaller): Promise<ConsentRecord> {
    const { record } = await delegation.get(id);
    if (record.grantor !== caller.accountId && record.grantee !== caller.accountId && !isStaff(caller, app.staffRules)) throw new DelegationError('not-found', 'no such delegation');
    return record;
  }

  const views = (records: ConsentRecord[], names: Names): Promise<DelegationView[]> => Promise.all(records.map((r) => viewOf(r, names)));

  async function people(record: ConsentRecord, names: Names): Promise<Record<string, Person>> {
    const out: Record<string, Person> = { [record.grantor]: await names(record.grantor) };
    if (record.grantee) out[record.grantee] = await names(record.grantee);
    return out;
  }

  router.get('/api/openapi.json', (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = buildOpenApi(app.deps.issuer);
  });

  router.get(
    '/api/delegations',
    route('json', 'delegation.read', async (ctx, caller) => {
      const names = nameLookup(accounts);
      const [asPatient, asGrantee] = await Promise.all([delegation.listForPatient(caller.accountId), delegation.listForGrantee(caller.accountId)]);
      ctx.body = { asPatient: await views(asPatient, names), asGrantee: await views(asGrantee, names) };
    }),
  );

  router.post(
    '/api/delegations',
    route('json', 'delegation.write', async (ctx, caller) => {
      const body = parseWith(inviteBody, await readJson(ctx));
      const { record, code } = await delegation.invite(actorOf(caller), body);
      ctx.status = 201;
      ctx.set('Location', `/api/delegations/${record.id}`);
      ctx.body = { delegation: await viewOf(record, nameLookup(accounts)), code, acceptUrl: app.acceptUrl(code), expiresAt: record.invitation?.expiresAt ?? '' };
    }),
  );

  for (const answer of ['accept', 'decline'] as const) {
    router.post(
      `/api/delegations/invitations/${answer}`,
      route('json', 'delegation.write', async (ctx, caller) => {
        const { code } = parseWith(respondBody, await readJson(ctx));
        const record = await delegation.respond(actorOf(caller), code, answer);
        ctx.body = await viewOf(record, nameLookup(accounts));
      }),
    );
  }

  router.post(
    '/api/delegations/staff',
    route('json', 'delegation.staff', async (ctx, caller) => {
      const body = parseWith(staffRecordBody, await readJson(ctx));
      const grantor = await app.resolveParty('nhsNumber' in body.patient ? { kind: 'nhs-number', value: body.patient.nhsNumber } : { kind: 'account', value: body.patient.accountId }, 'patient');
      const grantee = await app.resolveParty('nhsNumber' in body.grantee ? { kind: 'nhs-number', value: body.grantee.nhsNumber } : { kind: 'account', value: body.grantee.accountId }, 'grantee');
      const record = await app.recordVerified(ctx, caller, { grantor, grantee, legalBasis: body.legalBasis, access: body.access, period: body.period, evidence: body.evidence });
      ctx.status = 201;
      ctx.set('Location', `/api/delegations/${record.id}`);
      ctx.body = await viewOf(record, nameLookup(accounts));
    }),
  );

  router.post(
    '/api/delegations/import',
    route('fhir', 'delegation.staff', async (ctx, caller) => {
      // Only staff may import: checked before the body is even read (the service checks again).
      if (!isStaff(caller, app.staffRules)) throw new DelegationError('forbidden', 'importing a relationship needs a staff login at AAL3 with an allowed role');
      const imported = fromVrsConsent(await readJson(ctx, { fhir: true }), { accountSystem });
      const resolve = async (p: PartyIdentifier, field: string) => {
        try {
          return await app.resolveParty(p, field);
        } catch (err) {
          if (err instanceof DelegationError) throw new FhirMappingError(422, 'INVALID_IDENTIFIER_VALUE', err.message);
          throw err;
        }
      };
      const grantor = await resolve(imported.patient, 'patient');
      const grantee = await resolve(imported.proxy, 'proxy');
      const evidence = [`Imported from a VRS Consent${imported.sourceId ? ` ${imported.sourceId}` : ''}`, imported.grantorOrg ? `granting practice ${imported.grantorOrg}` : ''].filter(Boolean).join('; ');
      const record = await app.recordVerified(ctx, caller, {
        grantor,
        grantee,
        legalBasis: imported.legalBasis,
        // VRS has no access element: the practice's lowest level unless the Consent says otherwise.
        access: imported.access ?? { scopes: [], level: 1 },
        period: imported.period,
        evidence,
      });
      const names = nameLookup(accounts);
      ctx.status = 201;
      ctx.set('Location', `/api/delegations/${record.id}/fhir`);
      ctx.type = 'application/fhir+json';
      ctx.body = toFhirConsent(record, await people(record, names), { accountSystem });
    }),
  );

  router.get(
    '/api/delegations/:id',
    route('json', 'delegation.read', async (ctx, caller) => {
      ctx.body = await viewOf(await visible(idParam(ctx), caller), nameLookup(accounts));
    }),
  );

  router.get(
    '/api/delegations/:id/history',
    route('json', 'delegation.read', async (ctx, caller) => {
      const id = idParam(ctx);
      await visible(id, caller);
      const names = nameLookup(accounts);
      const versions = await delegation.history(id);
      ctx.body = { id, versions: await Promise.all(versions.map(async (r) => ({ ...(await viewOf(r, names)), prev: r.prev }))) };
    }),
  );

  router.get(
    '/api/delegations/:id/fhir',
    route('fhir', 'delegation.read', async (ctx, caller) => {
      const record = await visible(idParam(ctx), caller);
      ctx.type = 'application/fhir+json';
      ctx.set('ETag', `W/"${record.version}"`);
      ctx.body = toFhirConsent(record, await people(record, nameLookup(accounts)), { accountSystem });
    }),
  );

  router.patch(
    '/api/delegations/:id',
    route('json', 'delegation.write', async (ctx, caller) => {
      const id = idParam(ctx);
      const body = parseWith(changeBody, await readJson(ctx));
      const record = await delegation.change(actorOf(caller), id, body);
      ctx.body = await viewOf(record, nameLookup(accounts));
    }),
  );

  router.delete(
    '/api/delegations/:id',
    route('json', 'delegation.write', async (ctx, caller) => {
      const id = idParam(ctx);
      // The reason travels in a JSON body, or in the query for clients that cannot send a DELETE body.
      const raw = ctx.request.length || ctx.get('Transfer-Encoding') ? await readJson(ctx) : { reason: ctx.query.reason, text: ctx.query.text };
      const { reason, text } = parseWith(endBody, raw);
      const record = await delegation.end(actorOf(caller), id, reason, text);
      ctx.body = await viewOf(record, nameLookup(accounts));
    }),
  );

  const limitParam = z.coerce.number().int().min(1).max(500).default(100);
  router.get(
    '/api/who-acted-for-me',
    route('json', 'audit.read', async (ctx, caller) => {
      const limit = parseWith(limitParam, ctx.query.limit);
      ctx.body = { entries: await actedForMe(ledger, caller.accountId, nameLookup(accounts), limit) };
    }),
  );

  return router;
}
