import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { UserAgent, hiddenField, type Choices } from '../helpers/browser.ts';
import { safeReturn } from '../../src/web/account/session.ts';
import { apiToken, signIn, startDelegationBroker, type DelegationBroker } from './helpers.ts';

// The account pages without a browser: the sign-in as broker-account, the session cookie, CSRF on
// every form, error summaries, and basic accessibility structure (labels, one h1, headings in order).

const NURSE_R8001 = '555057996107';
const NURSE_R0001 = '555057898108';

/** Every visible input, select and textarea has a label; one h1; headings never skip a level after it. */
function checkAccessible(html: string): void {
  const ids = [...html.matchAll(/<(input|textarea|select)\b([^>]*)>/g)].filter(([, , attrs]) => !/type="hidden"/.test(attrs)).map(([, , attrs]) => /\bid="([^"]+)"/.exec(attrs)?.[1]);
  for (const id of ids) {
    expect(id, 'an input without an id').toBeDefined();
    expect(html, `no label for ${id}`).toContain(`for="${id}"`);
  }
  expect(html.match(/<h1\b/g)?.length ?? 0).toBe(1);
  const levels = [...html.slice(html.indexOf('<h1')).matchAll(/<h([1-6])\b/g)].map((m) => Number(m[1]));
  for (let i = 1; i < levels.length; i++) expect(levels[i] - levels[i - 1]).toBeLessThanOrEqual(1);
  expect(html).not.toMatch(/<script|style="/);
  expect(html).toContain('lang="en-GB"');
}

describe('account pages', () => {
  let t: DelegationBroker;
  beforeAll(async () => {
    t = await startDelegationBroker();
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Signs in to /account as a persona; returns the agent and the callback's Set-Cookie headers. */
  async function signInAccount(persona: string, choices: Choices = {}, returnTo = '/account') {
    const ua = new UserAgent();
    const start = await ua.get(`${t.base}${returnTo}`);
    expect(start.status).toBe(302);
    const login = new URL(start.headers.get('location')!, t.base).href;
    expect(login).toBe(`${t.base}/account/login?return=${encodeURIComponent(returnTo)}`);
    const callback = await signIn(ua, t, login, { persona }, `${t.base}/account/callback`, choices);
    const res = await ua.get(callback.href);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(returnTo);
    return { ua, cookies: res.headers.getSetCookie() };
  }

  const page = async (ua: UserAgent, path: string) => {
    const res = await ua.get(`${t.base}${path}`);
    return { status: res.status, html: await res.text(), res };
  };

  it('signs in through the broker; the session cookie is sealed, HttpOnly, SameSite=Lax, scoped to /account and short-lived', async () => {
    const { ua, cookies } = await signInAccount('patient');
    const session = cookies.find((c) => c.startsWith('account_session='))!;
    expect(session).toMatch(/path=\/account/i);
    expect(session).toMatch(/httponly/i);
    expect(session).toMatch(/samesite=lax/i);
    const expires = Date.parse(/expires=([^;]+)/i.exec(session)![1]);
    expect(expires - Date.now()).toBeLessThanOrEqual(300_000 + 1000);
    expect(session).not.toMatch(/eyJ/); // no readable token in the cookie
    const home = await page(ua, '/account');
    expect(home.status).toBe(200);
    expect(home.html).toContain('Signed in as Pat Patient');
    checkAccessible(home.html);
    // A cookie that fails to open is no session at all.
    ua.cookies.set('account_session', `${ua.cookies.get('account_session')!.slice(0, -4)}AAAA`);
    expect((await ua.get(`${t.base}/account`)).status).toBe(302);
  });

  it('only returns to the account app after sign-in (no open redirect)', () => {
    expect(safeReturn('/account/invitations/accept?code=abc_DEF-123')).toBe('/account/invitations/accept?code=abc_DEF-123');
    for (const bad of ['https://evil.example/', '//evil.example/account', '/account/../token', '/accountx', '/account\\evil', 42]) expect(safeReturn(bad)).toBe('/account');
  });

  it('invite, accept, change, revoke through the forms: CSRF required, errors summarised, history and activity shown', async () => {
    const { ua: pat } = await signInAccount('patient');
    const form = await page(pat, '/account/invite');
    checkAccessible(form.html);
    const csrf = hiddenField(form.html, 'csrf');
    const year = String(new Date().getUTCFullYear() + 1);

    expect((await pat.postForm(`${t.base}/account/invite`, { scopes: 'patient/Patient.rs', 'end-day': '1', 'end-month': '6', 'end-year': year })).status).toBe(403);
    expect((await pat.postForm(`${t.base}/account/invite`, { csrf: 'x'.repeat(43), scopes: 'patient/Patient.rs', 'end-day': '1', 'end-month': '6', 'end-year': year })).status).toBe(403);
    const invalid = await pat.postForm(`${t.base}/account/invite`, { csrf, 'end-day': '31', 'end-month': '2', 'end-year': year });
    expect(invalid.status).toBe(400);
    const invalidHtml = await invalid.text();
    expect(invalidHtml).toContain('There is a problem');
    expect(invalidHtml).toContain('href="#level-none"');
    expect(invalidHtml).toContain('The end date must be a real date');
    expect(invalidHtml).toMatch(/<title>Error: /);
    checkAccessible(invalidHtml);

    const created = await pat.postForm(`${t.base}/account/invite`, { csrf, scopes: 'patient/Patient.rs', level: '1', 'end-day': '1', 'end-month': '6', 'end-year': year });
    expect(created.status).toBe(201);
    const createdHtml = await created.text();
    const code = /data-testid="invitation-code">([^<]+)</.exec(createdHtml)![1];
    expect(createdHtml).toContain(`${t.base}/account/invitations/accept?code=${code}`);

    // The carer follows the link, signs in on the way, and accepts.
    const { ua: carer } = await signInAccount('carer', {}, `/account/invitations/accept?code=${code}`);
    const acceptForm = await page(carer, `/account/invitations/accept?code=${code}`);
    checkAccessible(acceptForm.html);
    expect(acceptForm.html).toContain(`value="${code}"`);
    const carerCsrf = hiddenField(acceptForm.html, 'csrf');
    expect(carerCsrf).not.toBe(csrf);
    // The patient's CSRF token is bound to the patient's session, not valid in the carer's.
    expect((await carer.postForm(`${t.base}/account/invitations/accept`, { csrf, code, answer: 'accept' })).status).toBe(403);
    const wrong = await carer.postForm(`${t.base}/account/invitations/accept`, { csrf: carerCsrf, code: 'abcdefghijklmnopqrst', answer: 'accept' });
    expect(wrong.status).toBe(404);
    expect(await wrong.text()).toContain('not valid');
    const accepted = await carer.postForm(`${t.base}/account/invitations/accept`, { csrf: carerCsrf, code, answer: 'accept' });
    expect(accepted.status).toBe(303);
    const detail = accepted.headers.get('location')!;
    const id = /\/account\/delegations\/([^?]+)\?done=accepted/.exec(detail)![1];
    const carerHome = await page(carer, '/account');
    expect(carerHome.html).toContain('People you can act for');
    expect(carerHome.html).toMatch(/data-testid="i-act-for"[\s\S]*Pat Patient/);

    // The patient sees Cara and changes the access.
    const patHome = await page(pat, '/account');
    expect(patHome.html).toMatch(/data-testid="acting-for-me"[\s\S]*Cara Carer/);
    const detailPage = await page(pat, `/account/delegations/${id}`);
    checkAccessible(detailPage.html);
    expect(detailPage.html).toContain('Cara Carer can act for you');
    const changed = await pat.postForm(`${t.base}/account/delegations/${id}/change`, { csrf, scopes: 'patient/Patient.rs', level: '', 'end-day': '1', 'end-month': '5', 'end-year': year });
    expect(changed.status).toBe(303);
    expect((await t.broker.delegation.get(id)).record.access).toEqual({ scopes: ['patient/Patient.rs'] });

    // The carer has no change form and cannot post one.
    const carerDetail = await page(carer, `/account/delegations/${id}`);
    expect(carerDetail.html).not.toContain(`/account/delegations/${id}/change`);
    const carerChange = await carer.postForm(`${t.base}/account/delegations/${id}/change`, { csrf: carerCsrf, scopes: 'patient/*.rs', level: '3', 'end-day': '1', 'end-month': '5', 'end-year': year });
    expect(carerChange.status).toBe(403);
    expect(await carerChange.text()).toContain('only the patient');

    // Revoking: OTHER needs text (error summary), then a proper reason.
    const noText = await pat.postForm(`${t.base}/account/delegations/${id}/end`, { csrf, reason: 'OTHER' });
    expect(noText.status).toBe(422);
    const noTextHtml = await noText.text();
    expect(noTextHtml).toContain('href="#text"');
    checkAccessible(noTextHtml);
    const ended = await pat.postForm(`${t.base}/account/delegations/${id}/end`, { csrf, reason: 'ROLE_DEACTIVATED_PATIENT_REQUEST' });
    expect(ended.status).toBe(303);
    expect((await t.broker.delegation.get(id)).record.status).toBe('inactive');

    const history = await page(carer, `/account/delegations/${id}/history`);
    checkAccessible(history.html);
    expect(history.html.match(/<tr class="nhsuk-table__row"><td/g)?.length).toBe(4);
    expect(history.html).toContain('I no longer want them to act for me');

    const activity = await page(pat, '/account/who-acted-for-me');
    expect(activity.status).toBe(200);
    checkAccessible(activity.html);
  });

  it('a stranger cannot open someone else’s delegation page', async () => {
    const { ua: pat } = await signInAccount('patient');
    const form = await page(pat, '/account/invite');
    const created = await pat.postForm(`${t.base}/account/invite`, { csrf: hiddenField(form.html, 'csrf'), level: '1', 'end-day': '1', 'end-month': '6', 'end-year': String(new Date().getUTCFullYear() + 1) });
    const id = /href="\/account\/delegations\/([^"]+)"/.exec(await created.text())![1];
    const { ua: clerk } = await signInAccount('nurse', { role: NURSE_R0001 });
    expect((await page(clerk, `/account/delegations/${id}`)).status).toBe(404);
    const staffForm = await page(clerk, '/account/staff/record');
    expect(staffForm.status).toBe(403);
  });

  it('staff with an allowed role record a verified relationship through the form', async () => {
    const { ua: nurse } = await signInAccount('nurse', { role: NURSE_R8001 });
    const home = await page(nurse, '/account');
    expect(home.html).toContain('data-testid="staff-record-link"');
    const form = await page(nurse, '/account/staff/record');
    expect(form.status).toBe(200);
    checkAccessible(form.html);
    const csrf = hiddenField(form.html, 'csrf');
    const bad = await nurse.postForm(`${t.base}/account/staff/record`, { csrf, patient: '9000000001', grantee: '', level: '2', 'end-day': '1', 'end-month': '1', 'end-year': String(new Date().getUTCFullYear() + 1) });
    expect(bad.status).toBe(400);
    const badHtml = await bad.text();
    expect(badHtml).toContain('NHS number is not valid');
    expect(badHtml).toContain('href="#grantee"');
    expect(badHtml).toContain('href="#basis-0"');
    checkAccessible(badHtml);

    const [patient, carer] = await Promise.all([apiToken(t, { persona: 'patient' }), apiToken(t, { persona: 'carer' })]);
    const ok = await nurse.postForm(`${t.base}/account/staff/record`, { csrf, patient: patient.accountId, grantee: carer.accountId, legalBasis: 'parental-responsibility', level: '2', 'end-day': '1', 'end-month': '1', 'end-year': String(new Date().getUTCFullYear() + 1), evidence: 'Birth certificate seen' });
    expect(ok.status).toBe(303);
    const id = /\/account\/delegations\/([^?]+)\?done=recorded/.exec(ok.headers.get('location')!)![1];
    expect((await t.broker.delegation.get(id)).record).toMatchObject({ status: 'active', grantor: patient.accountId, grantee: carer.accountId, legalBasis: 'parental-responsibility', evidence: 'Birth certificate seen', verifier: { orgCode: 'Y51' } });
    const shown = await page(nurse, `/account/delegations/${id}?done=recorded`);
    expect(shown.html).toContain('Verified by staff');
    expect(shown.html).toContain('The relationship has been recorded');
  });
});
