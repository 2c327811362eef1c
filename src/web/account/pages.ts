import Router, { type RouterContext } from '@koa/router';
import type { Context } from 'koa';
import { DelegationError, HTTP_STATUS } from '../../delegation/errors.ts';
import { accessSchema, LEGAL_BASES, type Access, type ConsentRecord } from '../../delegation/model.ts';
import { deactivationReasons } from '../../delegation/transitions.ts';
import { isValidNhsNumber, type PartyIdentifier } from '../../delegation/fhir.ts';
import type { ApiCaller } from '../api-auth.ts';
import { BrokerHttpError, NotFoundError, ForbiddenError } from '../errors.ts';
import { readForm } from '../form.ts';
import { actorOf, isStaff } from './caller.ts';
import type { AccountContext } from './context.ts';
import { actedForMe, nameLookup, viewOf } from './present.ts';
import { consentIdSchema, invitationCodeSchema } from './schemas.ts';
import type { AccountSessions } from './session.ts';
import { acceptPage, actedForMePage, dashboardPage, delegationPage, historyPage, invitationCreatedPage, invitePage, SCOPE_CHOICES, staffRecordPage, type AccessValues, type FieldError, type Relation, type StaffValues } from './views.ts';

// The account pages. Each page authorises from the session's access token with the scope the matching
// API call needs and then calls the same delegation service; a refused change re-renders its form with
// the service's reason in an error summary.

const DEFAULT_LEVELS = [1, 2, 3];

class TamperedPageError extends BrokerHttpError {
  constructor() {
    super(409, 'This record cannot be used', 'This record failed its integrity check: it was changed outside the service. Nobody can act under it. The problem has been recorded; contact your GP practice.');
  }
}

function html(ctx: Context, body: string, status = 200): void {
  ctx.status = status;
  ctx.type = 'html';
  ctx.body = body;
}

/** Reads the access and end-date fields shared by the invite, change and staff forms. */
export function readAccessForm(form: URLSearchParams, allowedLevels: number[]): { values: AccessValues; access?: Access; end?: string; errors: FieldError[] } {
  const errors: FieldError[] = [];
  const known = new Set(SCOPE_CHOICES.map(([s]) => s));
  const scopes = [...new Set(form.getAll('scopes'))];
  const levels = form.getAll('level');
  const values: AccessValues = { scopes: scopes.filter((s) => known.has(s)), level: levels[0] || undefined, endDay: form.get('end-day')?.trim(), endMonth: form.get('end-month')?.trim(), endYear: form.get('end-year')?.trim() };
  let access: Access | undefined;
  if (scopes.some((s) => !known.has(s)) || levels.length > 1 || (values.level !== undefined && !allowedLevels.map(String).includes(values.level))) {
    errors.push({ field: 'level-none', message: 'Choose from the listed levels and parts of the record' });
  } else {
    const parsed = accessSchema.safeParse({ scopes, ...(values.level ? { level: Number(values.level) } : {}) });
    if (parsed.success) access = parsed.data;
    else errors.push({ field: 'level-none', message: 'Choose a level of access, or at least one part of the record' });
  }
  let end: string | undefined;
  const [d, m, y] = [values.endDay, values.endMonth, values.endYear].map((x) => (x && /^\d{1,4}$/.test(x) ? Number(x) : NaN));
  if (!values.endDay && !values.endMonth && !values.endYear) errors.push({ field: 'end-day', message: 'Enter the date access should end' });
  else if ([d, m, y].some(Number.isNaN) || y < 2000 || y > 2200) errors.push({ field: 'end-day', message: 'The end date must be a real date, for example 15 3 2027' });
  else {
    const at = new Date(Date.UTC(y, m - 1, d, 23, 59, 59));
    if (at.getUTCDate() !== d || at.getUTCMonth() !== m - 1) errors.push({ field: 'end-day', message: 'The end date must be a real date, for example 15 3 2027' });
    else if (at.getTime() <= Date.now()) errors.push({ field: 'end-day', message: 'The end date must be in the future' });
    else end = at.toISOString();
  }
  return { values, access, end, errors };
}

function valuesOf(record: ConsentRecord): AccessValues {
  const end = record.period.end ? new Date(record.period.end) : undefined;
  return {
    scopes: record.access.scopes,
    level: record.access.level !== undefined ? String(record.access.level) : undefined,
    endDay: end ? String(end.getUTCDate()) : undefined,
    endMonth: end ? String(end.getUTCMonth() + 1) : undefined,
    endYear: end ? String(end.getUTCFullYear()) : undefined,
  };
}

/** Where a service refusal belongs on a form. */
function fieldFor(err: DelegationError, fallback: string): string {
  if (/end date|period|last at most|days/i.test(err.message)) return 'end-day';
  if (/access level|scope|access/i.test(err.message)) return 'level-none';
  return fallback;
}

export function pageRoutes(app: AccountContext, sessions: AccountSessions): Router {
  const router = new Router();
  const { delegation, accounts, ledger } = app.deps;
  const allowedLevels = app.deps.allowedLevels ?? DEFAULT_LEVELS;

  /** Runs a page action; a tampered record is recorded and shown as such, never as a 500. */
  async function guarded<T>(ctx: Context, caller: ApiCaller, consentId: string | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof DelegationError && err.code === 'tampered') {
        await app.reportTampered(ctx, caller.accountId, consentId, err);
        throw new TamperedPageError();
      }
      throw err;
    }
  }

  function idParam(ctx: RouterContext): string {
    const parsed = consentIdSchema.safeParse(ctx.params.id);
    if (!parsed.success) throw new NotFoundError();
    return parsed.data;
  }

  async function load(ctx: Context, caller: ApiCaller, id: string): Promise<{ record: ConsentRecord; relation: Relation }> {
    const record = await guarded(ctx, caller, id, async () => {
      try {
        return (await delegation.get(id)).record;
      } catch (err) {
        if (err instanceof DelegationError && err.code === 'not-found') throw new NotFoundError('There is no such delegation.');
        throw err;
      }
    });
    const relation: Relation | undefined = record.grantor === caller.accountId ? 'patient' : record.grantee === caller.accountId ? 'grantee' : isStaff(caller, app.staffRules) ? 'staff' : undefined;
    // Not a party: the same answer as for an id that does not exist.
    if (!relation) throw new NotFoundError('There is no such delegation.');
    return { record, relation };
  }

  async function renderDelegation(ctx: Context, caller: ApiCaller, csrf: string, record: ConsentRecord, relation: Relation, extra: { values?: AccessValues; reason?: string; text?: string; errors?: FieldError[]; status?: number } = {}): Promise<void> {
    html(
      ctx,
      delegationPage({
        csrf,
        view: await viewOf(record, nameLookup(accounts)),
        relation,
        reasons: deactivationReasons().filter((r) => relation === 'staff' || !['ROLE_DEACTIVATED_PROXY_REQUEST', 'ROLE_DEACTIVATED_END_DATE_REACHED'].includes(r)),
        values: extra.values ?? valuesOf(record),
        reason: extra.reason,
        text: extra.text,
        allowedLevels,
        errors: extra.errors ?? [],
        done: typeof ctx.query.done === 'string' ? ctx.query.done : undefined,
      }),
      extra.status,
    );
  }

  router.get('/account', async (ctx) => {
    const signed = await sessions.requirePage(ctx, 'delegation.read');
    if (!signed) return;
    const { caller, session } = signed;
    const names = nameLookup(accounts);
    const [asPatient, asGrantee] = await guarded(ctx, caller, undefined, () => Promise.all([delegation.listForPatient(caller.accountId), delegation.listForGrantee(caller.accountId)]));
    html(
      ctx,
      dashboardPage({
        name: session.name,
        csrf: sessions.csrfFor(session),
        asPatient: await Promise.all(asPatient.map((r) => viewOf(r, names))),
        asGrantee: await Promise.all(asGrantee.map((r) => viewOf(r, names))),
        staff: isStaff(caller, app.staffRules),
        done: typeof ctx.query.done === 'string' ? ctx.query.done : undefined,
      }),
    );
  });

  router.post('/account/logout', async (ctx) => {
    const form = await readForm(ctx);
    // A session that already ended has nothing to protect: signing out again is harmless.
    const session = sessions.read(ctx);
    if (session) sessions.checkCsrf(session, form);
    await sessions.logout(ctx);
  });

  router.get('/account/invite', async (ctx) => {
    const signed = await sessions.requirePage(ctx, 'delegation.write');
    if (!signed) return;
    html(ctx, invitePage({ csrf: sessions.csrfFor(signed.session), values: { scopes: [] }, allowedLevels, errors: [] }));
  });

  router.post('/account/invite', async (ctx) => {
    const form = await readForm(ctx);
    const { caller, session } = await sessions.requirePost(ctx, 'delegation.write', form);
    const csrf = sessions.csrfFor(session);
    const { values, access, end, errors } = readAccessForm(form, allowedLevels);
    if (errors.length || !access || !end) return html(ctx, invitePage({ csrf, values, allowedLevels, errors }), 400);
    try {
      const { record, code } = await delegation.invite(actorOf(caller), { access, period: { end } });
      html(ctx, invitationCreatedPage({ code, acceptUrl: app.acceptUrl(code), expiresAt: record.invitation?.expiresAt ?? record.updatedAt, id: record.id }), 201);
    } catch (err) {
      if (!(err instanceof DelegationError)) throw err;
      html(ctx, invitePage({ csrf, values, allowedLevels, errors: [{ field: fieldFor(err, 'level-none'), message: err.message }] }), HTTP_STATUS[err.code]);
    }
  });

  router.get('/account/invitations/accept', async (ctx) => {
    const signed = await sessions.requirePage(ctx, 'delegation.write');
    if (!signed) return;
    const code = typeof ctx.query.code === 'string' && ctx.query.code.length <= 100 ? ctx.query.code : '';
    html(ctx, acceptPage({ csrf: sessions.csrfFor(signed.session), code, errors: [] }));
  });

  router.post('/account/invitations/accept', async (ctx) => {
    const form = await readForm(ctx);
    const { caller, session } = await sessions.requirePost(ctx, 'delegation.write', form);
    const csrf = sessions.csrfFor(session);
    const rawCode = (form.get('code') ?? '').trim();
    const answer = form.getAll('answer');
    const code = invitationCodeSchema.safeParse(rawCode);
    if (!code.success || answer.length !== 1 || (answer[0] !== 'accept' && answer[0] !== 'decline')) {
      return html(ctx, acceptPage({ csrf, code: rawCode.slice(0, 100), errors: [{ field: 'code', message: rawCode ? 'This is not a valid invitation code' : 'Enter the invitation code' }] }), 400);
    }
    try {
      const record = await guarded(ctx, caller, undefined, () => delegation.respond(actorOf(caller), code.data, answer[0] as 'accept' | 'decline'));
      ctx.status = 303;
      ctx.redirect(answer[0] === 'accept' ? `/account/delegations/${record.id}?done=accepted` : '/account?done=declined');
    } catch (err) {
      if (!(err instanceof DelegationError)) throw err;
      html(ctx, acceptPage({ csrf, code: rawCode.slice(0, 100), errors: [{ field: 'code', message: err.message }] }), HTTP_STATUS[err.code]);
    }
  });

  router.get('/account/delegations/:id', async (ctx) => {
    const signed = await sessions.requirePage(ctx, 'delegation.read');
    if (!signed) return;
    const { record, relation } = await load(ctx, signed.caller, idParam(ctx));
    await renderDelegation(ctx, signed.caller, sessions.csrfFor(signed.session), record, relation);
  });

  router.get('/account/delegations/:id/history', async (ctx) => {
    const signed = await sessions.requirePage(ctx, 'delegation.read');
    if (!signed) return;
    const id = idParam(ctx);
    const { record } = await load(ctx, signed.caller, id);
    const versions = await guarded(ctx, signed.caller, id, () => delegation.history(id));
    const names = nameLookup(accounts);
    html(ctx, historyPage({ view: await viewOf(record, names), versions: await Promise.all(versions.map(async (r) => ({ ...(await viewOf(r, names)), prev: r.prev }))) }));
  });

  router.post('/account/delegations/:id/change', async (ctx) => {
    const form = await readForm(ctx);
    const { caller, session } = await sessions.requirePost(ctx, 'delegation.write', form);
    const id = idParam(ctx);
    const { record, relation } = await load(ctx, caller, id);
    const csrf = sessions.csrfFor(session);
    const { values, access, end, errors } = readAccessForm(form, allowedLevels);
    if (errors.length || !access || !end) return renderDelegation(ctx, caller, csrf, record, relation, { values, errors, status: 400 });
    try {
      await guarded(ctx, caller, id, () => delegation.change(actorOf(caller), id, { access, period: { start: record.period.start, end } }));
      ctx.status = 303;
      ctx.redirect(`/account/delegations/${id}?done=changed`);
    } catch (err) {
      if (!(err instanceof DelegationError)) throw err;
      await renderDelegation(ctx, caller, csrf, record, relation, { values, errors: [{ field: fieldFor(err, 'level-none'), message: err.message }], status: HTTP_STATUS[err.code] });
    }
  });

  router.post('/account/delegations/:id/end', async (ctx) => {
    const form = await readForm(ctx);
    const { caller, session } = await sessions.requirePost(ctx, 'delegation.write', form);
    const id = idParam(ctx);
    const { record, relation } = await load(ctx, caller, id);
    const csrf = sessions.csrfFor(session);
    const reasons = form.getAll('reason');
    const text = (form.get('text') ?? '').trim().slice(0, 500) || undefined;
    if (reasons.length !== 1 || !/^[A-Z][A-Z_]{2,79}$/.test(reasons[0])) {
      return renderDelegation(ctx, caller, csrf, record, relation, { text, errors: [{ field: 'reason-0', message: 'Choose why you are stopping it' }], status: 400 });
    }
    const reason = reasons[0];
    try {
      await guarded(ctx, caller, id, () => delegation.end(actorOf(caller), id, reason, text));
      ctx.status = 303;
      ctx.redirect(`/account/delegations/${id}?done=${reason === 'APPLICATION_WITHDRAWN' ? 'withdrawn' : 'ended'}`);
    } catch (err) {
      if (!(err instanceof DelegationError)) throw err;
      const field = /OTHER needs/.test(err.message) ? 'text' : 'reason-0';
      await renderDelegation(ctx, caller, csrf, record, relation, { reason, text, errors: [{ field, message: field === 'text' ? 'Explain why you are stopping it' : err.message }], status: HTTP_STATUS[err.code] });
    }
  });

  router.get('/account/who-acted-for-me', async (ctx) => {
    const signed = await sessions.requirePage(ctx, 'audit.read');
    if (!signed) return;
    html(ctx, actedForMePage({ rows: await actedForMe(ledger, signed.caller.accountId, nameLookup(accounts)) }));
  });

  // Staff -----------------------------------------------------------------------------------------------

  function requireStaff(caller: ApiCaller): void {
    if (!isStaff(caller, app.staffRules)) throw new ForbiddenError(`Recording a relationship needs a staff sign-in with a smartcard (AAL${app.staffRules.staffMinimumAal}) and a role that allows it.`);
  }

  router.get('/account/staff/record', async (ctx) => {
    const signed = await sessions.requirePage(ctx, 'delegation.staff');
    if (!signed) return;
    requireStaff(signed.caller);
    html(ctx, staffRecordPage({ csrf: sessions.csrfFor(signed.session), values: { scopes: [] }, allowedLevels, legalBases: [...LEGAL_BASES], errors: [] }));
  });

  router.post('/account/staff/record', async (ctx) => {
    const form = await readForm(ctx);
    const { caller, session } = await sessions.requirePost(ctx, 'delegation.staff', form);
    requireStaff(caller);
    const csrf = sessions.csrfFor(session);
    const access = readAccessForm(form, allowedLevels);
    const values: StaffValues = { ...access.values, patient: form.get('patient')?.trim().slice(0, 100), grantee: form.get('grantee')?.trim().slice(0, 100), legalBasis: form.get('legalBasis') ?? undefined, evidence: form.get('evidence')?.trim().slice(0, 2000) };
    const errors = [...access.errors];
    const partyOf = (value: string | undefined, field: string, label: string): PartyIdentifier | undefined => {
      if (!value) errors.push({ field, message: `Enter the ${label}’s account id or NHS number` });
      else if (/^\d{10}$/.test(value.replace(/\s/g, ''))) {
        const nhs = value.replace(/\s/g, '');
        if (isValidNhsNumber(nhs)) return { kind: 'nhs-number', value: nhs };
        errors.push({ field, message: `The ${label}’s NHS number is not valid` });
      } else if (/^[A-Za-z0-9-]{1,100}$/.test(value)) return { kind: 'account', value };
      else errors.push({ field, message: `Enter the ${label}’s account id or NHS number` });
      return undefined;
    };
    const patient = partyOf(values.patient, 'patient', 'patient');
    const grantee = partyOf(values.grantee, 'grantee', 'person acting');
    const legalBasis = LEGAL_BASES.find((b) => b === values.legalBasis);
    if (!legalBasis) errors.push({ field: 'basis-0', message: 'Choose the legal basis' });
    const render = (errs: FieldError[], status: number) => html(ctx, staffRecordPage({ csrf, values, allowedLevels, legalBases: [...LEGAL_BASES], errors: errs }), status);
    if (errors.length || !patient || !grantee || !legalBasis || !access.access || !access.end) return render(errors, 400);
    let grantor: string;
    let granteeId: string;
    try {
      grantor = await app.resolveParty(patient, 'patient');
    } catch (err) {
      if (err instanceof DelegationError) return render([{ field: 'patient', message: err.message }], 422);
      throw err;
    }
    try {
      granteeId = await app.resolveParty(grantee, 'person acting');
    } catch (err) {
      if (err instanceof DelegationError) return render([{ field: 'grantee', message: err.message }], 422);
      throw err;
    }
    try {
      const record = await guarded(ctx, caller, undefined, () =>
        app.recordVerified(ctx, caller, { grantor, grantee: granteeId, legalBasis, access: access.access!, period: { end: access.end! }, evidence: values.evidence || undefined }),
      );
      ctx.status = 303;
      ctx.redirect(`/account/delegations/${record.id}?done=recorded`);
    } catch (err) {
      if (!(err instanceof DelegationError)) throw err;
      render([{ field: fieldFor(err, 'patient'), message: err.message }], HTTP_STATUS[err.code]);
    }
  });

  return router;
}
