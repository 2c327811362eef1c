import { h, layout, type SafeHtml } from '../html.ts';
import type { ActedForMeRow } from './present.ts';
import type { DelegationView } from './schemas.ts';

// The account pages (nhsuk-frontend markup, no script): headings in order, every input labelled,
// grouped choices in fieldsets with legends, and an error summary at the top of a form that failed.

export interface FieldError {
  /** The id of the input (or first input of a group) the summary links to. */
  field: string;
  message: string;
}

export const SCOPE_CHOICES: Array<[string, string]> = [
  ['patient/Patient.rs', 'Personal details (name, address, date of birth)'],
  ['patient/Appointment.cruds', 'Book, change and cancel appointments'],
  ['patient/MedicationRequest.crs', 'See and order repeat prescriptions'],
  ['patient/Observation.rs', 'Test results and measurements'],
  ['patient/Condition.rs', 'Conditions and diagnoses'],
  ['patient/AllergyIntolerance.rs', 'Allergies'],
  ['patient/Immunization.rs', 'Vaccinations'],
  ['patient/*.rs', 'Everything in the record (read only)'],
];

export const LEVEL_TEXT: Record<1 | 2 | 3, string> = {
  1: 'Level 1: appointments and repeat prescriptions',
  2: 'Level 2: level 1 and the coded record (conditions, test results, allergies, vaccinations)',
  3: 'Level 3: the full record',
};

const REASON_TEXT: Record<string, string> = {
  ROLE_DEACTIVATED_PATIENT_REQUEST: 'I no longer want them to act for me',
  ROLE_DEACTIVATED_PROXY_REQUEST: 'The person acting asked to stop',
  ROLE_DEACTIVATED_END_DATE_REACHED: 'The agreed end date has been reached',
  ROLE_DEACTIVATED_SAFEGUARDING: 'A safeguarding concern',
  ROLE_DEACTIVATED_INACTIVE_ROLE: 'They have not used it',
  ROLE_DEACTIVATED_PATIENT_DECEASED: 'The patient has died',
  ROLE_DEACTIVATED_PROXY_DECEASED: 'The person acting has died',
  ROLE_DEACTIVATED_FAMILIAL_REASON: 'A family reason',
  ROLE_DEACTIVATED_CHANGE_IN_RELATIONSHIP: 'Our relationship has changed',
  ROLE_DEACTIVATED_PROXY_LACKS_CAPACITY: 'They can no longer make decisions for someone else',
  ROLE_DEACTIVATED_SYSTEM_MISUSE: 'They misused the service',
  ROLE_SUSPENDED_PENDING_REVIEW: 'Suspend it while it is reviewed',
  OTHER: 'Another reason (explain below)',
};

const STATUS_TEXT: Record<string, [string, string]> = {
  proposed: ['Invitation sent', 'nhsuk-tag--blue'],
  active: ['Active', 'nhsuk-tag--green'],
  inactive: ['Ended', 'nhsuk-tag--grey'],
  rejected: ['Declined', 'nhsuk-tag--red'],
  'entered-in-error': ['Entered in error', 'nhsuk-tag--grey'],
};

const LEGAL_BASIS_TEXT: Record<string, string> = {
  consent: 'The patient’s consent',
  'parental-responsibility': 'Parental responsibility',
  'lpa-health-welfare': 'Lasting power of attorney (health and welfare)',
  'court-deputy': 'Court-appointed deputy',
  'best-interest': 'Best-interest decision',
};

export function reasonText(code: string): string {
  return REASON_TEXT[code] ?? code;
}

export function date(iso: string | undefined): string {
  if (!iso) return 'No end date';
  return new Date(iso).toLocaleDateString('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });
}

function dateTime(iso: string): string {
  return new Date(iso).toLocaleString('en-GB', { day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZone: 'UTC' }) + ' UTC';
}

function tag(status: string): SafeHtml {
  const [text, cls] = STATUS_TEXT[status] ?? [status, 'nhsuk-tag--grey'];
  return h`<strong class="nhsuk-tag ${cls}">${text}</strong>`;
}

function accessSummary(v: DelegationView): SafeHtml {
  const scopes = v.access.scopes.map((s) => SCOPE_CHOICES.find(([k]) => k === s)?.[1] ?? s);
  return h`${v.access.level ? h`<p class="nhsuk-body-s nhsuk-u-margin-bottom-1">${LEVEL_TEXT[v.access.level]}</p>` : ''}${scopes.length ? h`<ul class="nhsuk-list nhsuk-list--bullet nhsuk-body-s nhsuk-u-margin-bottom-0">${scopes.map((s) => h`<li>${s}</li>`)}</ul>` : ''}`;
}

function nameOf(p: { accountId: string; name?: string } | undefined, fallback: string): string {
  return p?.name ?? (p ? `Account ${p.accountId.slice(0, 8)}` : fallback);
}

export function errorSummary(errors: FieldError[]): SafeHtml | '' {
  if (errors.length === 0) return '';
  return h`<div class="nhsuk-error-summary" aria-labelledby="error-summary-title" role="alert" tabindex="-1" data-testid="error-summary">
<h2 class="nhsuk-error-summary__title" id="error-summary-title">There is a problem</h2>
<div class="nhsuk-error-summary__body"><ul class="nhsuk-list nhsuk-error-summary__list">
${errors.map((e) => h`<li><a href="#${e.field}">${e.message}</a></li>`)}
</ul></div></div>`;
}

function errorFor(errors: FieldError[], ...fields: string[]): FieldError | undefined {
  return errors.find((e) => fields.includes(e.field));
}

function errorMessage(id: string, e: FieldError | undefined): SafeHtml | '' {
  return e ? h`<span class="nhsuk-error-message" id="${id}-error"><span class="nhsuk-u-visually-hidden">Error:</span> ${e.message}</span>` : '';
}

function page(title: string, body: SafeHtml, errors: FieldError[] = []): string {
  return layout(title, h`<div class="nhsuk-grid-row"><div class="nhsuk-grid-column-two-thirds">
<a class="nhsuk-back-link" href="/account">Back to your account</a>
${errorSummary(errors)}
${body}
</div></div>`, errors.length ? { status: 'error' } : {});
}

function csrfField(csrf: string): SafeHtml {
  return h`<input type="hidden" name="csrf" value="${csrf}">`;
}

// Access and end date, shared by the invite, change and staff forms -----------------------------------

export interface AccessValues {
  scopes: string[];
  level?: string;
  endDay?: string;
  endMonth?: string;
  endYear?: string;
}

/** A fieldset heading at the level the surrounding page needs (h2 on its own page, h3 under a section). */
function legendHeading(level: 2 | 3, text: string): SafeHtml {
  return level === 2 ? h`<h2 class="nhsuk-fieldset__heading">${text}</h2>` : h`<h3 class="nhsuk-fieldset__heading">${text}</h3>`;
}

function accessFields(v: AccessValues, allowedLevels: number[], errors: FieldError[], level: 2 | 3 = 2): SafeHtml {
  const accessError = errorFor(errors, 'level-none', 'scope-0');
  const endError = errorFor(errors, 'end-day');
  return h`<div class="nhsuk-form-group${accessError ? ' nhsuk-form-group--error' : ''}">
<fieldset class="nhsuk-fieldset" aria-describedby="level-hint${accessError ? ' level-none-error' : ''}">
<legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--m">${legendHeading(level, 'Level of access')}</legend>
<div class="nhsuk-hint" id="level-hint">Levels are the ones GP practices use. You can choose a level, individual parts of the record below, or both.</div>
${errorMessage('level-none', accessError)}
<div class="nhsuk-radios">
<div class="nhsuk-radios__item"><input class="nhsuk-radios__input" id="level-none" name="level" type="radio" value=""${!v.level ? h` checked` : ''}><label class="nhsuk-label nhsuk-radios__label" for="level-none">No level, only what I tick below</label></div>
${allowedLevels.map((l) => h`<div class="nhsuk-radios__item"><input class="nhsuk-radios__input" id="level-${l}" name="level" type="radio" value="${l}"${v.level === String(l) ? h` checked` : ''}><label class="nhsuk-label nhsuk-radios__label" for="level-${l}">${LEVEL_TEXT[l as 1 | 2 | 3]}</label></div>`)}
</div></fieldset></div>
<div class="nhsuk-form-group">
<fieldset class="nhsuk-fieldset" aria-describedby="scopes-hint">
<legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--m">${legendHeading(level, 'Parts of the record')}</legend>
<div class="nhsuk-hint" id="scopes-hint">Select all that apply.</div>
<div class="nhsuk-checkboxes">
${SCOPE_CHOICES.map(([scope, label], i) => h`<div class="nhsuk-checkboxes__item"><input class="nhsuk-checkboxes__input" id="scope-${i}" name="scopes" type="checkbox" value="${scope}"${v.scopes.includes(scope) ? h` checked` : ''}><label class="nhsuk-label nhsuk-checkboxes__label" for="scope-${i}">${label}</label></div>`)}
</div></fieldset></div>
<div class="nhsuk-form-group${endError ? ' nhsuk-form-group--error' : ''}">
<fieldset class="nhsuk-fieldset" role="group" aria-describedby="end-hint${endError ? ' end-day-error' : ''}">
<legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--m">${legendHeading(level, 'Until when?')}</legend>
<div class="nhsuk-hint" id="end-hint">Access ends at the end of this day. For example, 15 3 2027</div>
${errorMessage('end-day', endError)}
<div class="nhsuk-date-input" id="end">
<div class="nhsuk-date-input__item"><div class="nhsuk-form-group"><label class="nhsuk-label nhsuk-date-input__label" for="end-day">Day</label><input class="nhsuk-input nhsuk-date-input__input nhsuk-input--width-2${endError ? ' nhsuk-input--error' : ''}" id="end-day" name="end-day" type="text" inputmode="numeric" value="${v.endDay ?? ''}"></div></div>
<div class="nhsuk-date-input__item"><div class="nhsuk-form-group"><label class="nhsuk-label nhsuk-date-input__label" for="end-month">Month</label><input class="nhsuk-input nhsuk-date-input__input nhsuk-input--width-2${endError ? ' nhsuk-input--error' : ''}" id="end-month" name="end-month" type="text" inputmode="numeric" value="${v.endMonth ?? ''}"></div></div>
<div class="nhsuk-date-input__item"><div class="nhsuk-form-group"><label class="nhsuk-label nhsuk-date-input__label" for="end-year">Year</label><input class="nhsuk-input nhsuk-date-input__input nhsuk-input--width-4${endError ? ' nhsuk-input--error' : ''}" id="end-year" name="end-year" type="text" inputmode="numeric" value="${v.endYear ?? ''}"></div></div>
</div></fieldset></div>`;
}

// Pages ------------------------------------------------------------------------------------------------

const DONE: Record<string, string> = {
  accepted: 'You can now act for this person. Services you sign in to will ask whom you are acting for.',
  declined: 'You declined the invitation.',
  changed: 'The access has been changed. Anything already signed in under the old access has stopped working.',
  ended: 'It has ended. Nobody can act under it any more, from now on.',
  withdrawn: 'The invitation has been withdrawn.',
  recorded: 'The relationship has been recorded and is active now.',
};

export function dashboardPage(v: { name?: string; csrf: string; asPatient: DelegationView[]; asGrantee: DelegationView[]; staff: boolean; done?: string }): string {
  const done = v.done ? DONE[v.done] : undefined;
  const current = (list: DelegationView[]) => list.filter((d) => d.status === 'active' || d.status === 'proposed');
  const past = (list: DelegationView[]) => list.filter((d) => d.status !== 'active' && d.status !== 'proposed');
  const table = (list: DelegationView[], who: 'grantee' | 'patient', caption: string, testid: string) =>
    h`<table class="nhsuk-table" data-testid="${testid}"><caption class="nhsuk-table__caption nhsuk-u-visually-hidden">${caption}</caption>
<thead class="nhsuk-table__head"><tr class="nhsuk-table__row"><th class="nhsuk-table__header" scope="col">Person</th><th class="nhsuk-table__header" scope="col">Status</th><th class="nhsuk-table__header" scope="col">Access</th><th class="nhsuk-table__header" scope="col">Until</th></tr></thead>
<tbody class="nhsuk-table__body">${list.map(
      (d) => h`<tr class="nhsuk-table__row"><td class="nhsuk-table__cell"><a href="/account/delegations/${d.id}" data-testid="delegation-link">${who === 'grantee' ? (d.grantee ? nameOf(d.grantee, '') : 'Not accepted yet') : nameOf(d.patient, '')}</a></td><td class="nhsuk-table__cell">${tag(d.status)}</td><td class="nhsuk-table__cell">${accessSummary(d)}</td><td class="nhsuk-table__cell">${date(d.period.end)}</td></tr>`,
    )}</tbody></table>`;
  const mine = current(v.asPatient);
  const theirs = current(v.asGrantee);
  const ended = [...past(v.asPatient), ...past(v.asGrantee)];
  return layout(
    'Your account',
    h`<div class="nhsuk-grid-row"><div class="nhsuk-grid-column-full">
${done ? h`<div class="nhsuk-inset-text" data-testid="done"><span class="nhsuk-u-visually-hidden">Information: </span><p>${done}</p></div>` : ''}
<h1 class="nhsuk-heading-l">Your account</h1>
${v.name ? h`<p class="nhsuk-body" data-testid="signed-in-as">Signed in as ${v.name}</p>` : ''}
<h2 class="nhsuk-heading-m">People who can act for you</h2>
${mine.length ? table(mine, 'grantee', 'People who can act for you', 'acting-for-me') : h`<p class="nhsuk-body">Nobody can act for you.</p>`}
<a class="nhsuk-button" href="/account/invite" data-testid="invite">Invite someone to act for you</a>
<h2 class="nhsuk-heading-m">People you can act for</h2>
${theirs.length ? table(theirs, 'patient', 'People you can act for', 'i-act-for') : h`<p class="nhsuk-body">You cannot act for anyone.</p>`}
<p class="nhsuk-body"><a href="/account/invitations/accept" data-testid="accept-link">Accept an invitation with a code</a></p>
<h2 class="nhsuk-heading-m">Ways you sign in</h2>
<p class="nhsuk-body"><a href="/account/links" data-testid="links-link">See and change the logins linked to your account</a></p>
<h2 class="nhsuk-heading-m">Activity</h2>
<p class="nhsuk-body"><a href="/account/who-acted-for-me" data-testid="who-acted-link">See who has acted for you</a></p>
${ended.length ? h`<details class="nhsuk-details"><summary class="nhsuk-details__summary"><span class="nhsuk-details__summary-text">Ended and declined (${ended.length})</span></summary><div class="nhsuk-details__text"><ul class="nhsuk-list">${ended.map((d) => h`<li><a href="/account/delegations/${d.id}">${nameOf(d.patient, '')} → ${d.grantee ? nameOf(d.grantee, '') : 'invitation'}</a> ${tag(d.status)}</li>`)}</ul></div></details>` : ''}
${v.staff ? h`<h2 class="nhsuk-heading-m">Staff</h2><p class="nhsuk-body"><a href="/account/staff/record" data-testid="staff-record-link">Record a verified relationship</a></p>` : ''}
<form method="post" action="/account/logout">${csrfField(v.csrf)}<button class="nhsuk-button nhsuk-button--secondary" type="submit" data-testid="sign-out">Sign out</button></form>
</div></div>`,
  );
}

export function invitePage(v: { csrf: string; values: AccessValues; allowedLevels: number[]; errors: FieldError[] }): string {
  return page(
    'Invite someone to act for you',
    h`<h1 class="nhsuk-heading-l">Invite someone to act for you</h1>
<p class="nhsuk-body">You will get a code to give to the person you trust. They sign in with their own NHS login and enter it. They can then see and do only what you choose here, until the date you set or until you stop it.</p>
<form method="post" action="/account/invite" novalidate>
${csrfField(v.csrf)}
${accessFields(v.values, v.allowedLevels, v.errors)}
<button class="nhsuk-button" type="submit" data-testid="create-invitation">Create invitation</button>
</form>`,
    v.errors,
  );
}

export function invitationCreatedPage(v: { code: string; acceptUrl: string; expiresAt: string; id: string }): string {
  return page(
    'Invitation created',
    h`<div class="nhsuk-card nhsuk-card--confirmation"><div class="nhsuk-card__content">
<h1 class="nhsuk-card__heading nhsuk-heading-l">Invitation created</h1>
<p class="nhsuk-body">Give this code to the person you want to act for you. It works once, until ${date(v.expiresAt)}.</p>
<p class="nhsuk-heading-m"><code data-testid="invitation-code">${v.code}</code></p>
<p class="nhsuk-body">Or send them this link: <a href="${v.acceptUrl}" data-testid="invitation-link">${v.acceptUrl}</a></p>
</div></div>
<p class="nhsuk-body">We will not show this code again. <a href="/account/delegations/${v.id}">See the invitation</a></p>`,
  );
}

export function acceptPage(v: { csrf: string; code: string; errors: FieldError[] }): string {
  const err = errorFor(v.errors, 'code');
  return page(
    'Accept an invitation',
    h`<form method="post" action="/account/invitations/accept" novalidate>
${csrfField(v.csrf)}
<h1 class="nhsuk-heading-l">Accept an invitation</h1>
<p class="nhsuk-body">Someone has invited you to act for them. Accepting lets you see and do what they chose, with your own login. Declining tells them you will not.</p>
<div class="nhsuk-form-group${err ? ' nhsuk-form-group--error' : ''}">
<label class="nhsuk-label nhsuk-label--m" for="code">Invitation code</label>
<div class="nhsuk-hint" id="code-hint">The code you were given, for example Xb3k9QmT2pLw7vRz</div>
${errorMessage('code', err)}
<input class="nhsuk-input${err ? ' nhsuk-input--error' : ''}" id="code" name="code" type="text" autocomplete="off" spellcheck="false" aria-describedby="code-hint${err ? ' code-error' : ''}" value="${v.code}">
</div>
<div class="nhsuk-button-group">
<button class="nhsuk-button" type="submit" name="answer" value="accept" data-testid="accept">Accept</button>
<button class="nhsuk-button nhsuk-button--secondary" type="submit" name="answer" value="decline" data-testid="decline">Decline</button>
</div>
</form>`,
    v.errors,
  );
}

export type Relation = 'patient' | 'grantee' | 'staff';

export function delegationPage(v: { csrf: string; view: DelegationView; relation: Relation; reasons: string[]; values: AccessValues; reason?: string; text?: string; allowedLevels: number[]; errors: FieldError[]; done?: string }): string {
  const d = v.view;
  const done = v.done ? DONE[v.done] : undefined;
  const reasonError = errorFor(v.errors, 'reason-0');
  const textError = errorFor(v.errors, 'text');
  const endable = d.status === 'active';
  const title = v.relation === 'grantee' ? `Acting for ${nameOf(d.patient, 'a patient')}` : d.grantee ? `${nameOf(d.grantee, '')} can act for ${v.relation === 'patient' ? 'you' : nameOf(d.patient, 'the patient')}` : 'Invitation';
  const row = (key: string, value: SafeHtml | string) => h`<div class="nhsuk-summary-list__row"><dt class="nhsuk-summary-list__key">${key}</dt><dd class="nhsuk-summary-list__value">${value}</dd></div>`;
  return page(
    title,
    h`${done ? h`<div class="nhsuk-inset-text" data-testid="done"><span class="nhsuk-u-visually-hidden">Information: </span><p>${done}</p></div>` : ''}
<h1 class="nhsuk-heading-l">${title}</h1>
<dl class="nhsuk-summary-list">
${row('Status', h`${tag(d.status)} <span class="nhsuk-body-s" data-testid="status-reason">${reasonText(d.statusReason)}</span>`)}
${row('Patient', nameOf(d.patient, ''))}
${row('Acting for them', d.grantee ? nameOf(d.grantee, '') : 'Nobody has accepted yet')}
${row('Legal basis', LEGAL_BASIS_TEXT[d.legalBasis] ?? d.legalBasis)}
${row('Access', accessSummary(d))}
${row('From', date(d.period.start))}
${row('Until', date(d.period.end))}
${d.invitationExpiresAt ? row('Invitation expires', date(d.invitationExpiresAt)) : ''}
${d.verifiedBy ? row('Verified by staff', d.verifiedBy.orgCode ? `Organisation ${d.verifiedBy.orgCode}` : 'Yes') : ''}
</dl>
<p class="nhsuk-body"><a href="/account/delegations/${d.id}/history" data-testid="history-link">See every change to this</a></p>
${
  v.relation === 'patient' && d.status === 'proposed'
    ? h`<h2 class="nhsuk-heading-m">Withdraw the invitation</h2>
<form method="post" action="/account/delegations/${d.id}/end">${csrfField(v.csrf)}<input type="hidden" name="reason" value="APPLICATION_WITHDRAWN"><button class="nhsuk-button nhsuk-button--warning" type="submit" data-testid="withdraw">Withdraw invitation</button></form>`
    : ''
}
${
  v.relation === 'patient' && endable
    ? h`<h2 class="nhsuk-heading-m">Change what they can see and do</h2>
<form method="post" action="/account/delegations/${d.id}/change" novalidate>${csrfField(v.csrf)}
${accessFields(v.values, v.allowedLevels, v.errors, 3)}
<button class="nhsuk-button nhsuk-button--secondary" type="submit" data-testid="change">Save changes</button></form>`
    : ''
}
${
  endable && v.relation !== 'grantee'
    ? h`<h2 class="nhsuk-heading-m">Stop them acting for ${v.relation === 'patient' ? 'you' : 'the patient'}</h2>
<form method="post" action="/account/delegations/${d.id}/end" novalidate>${csrfField(v.csrf)}
<div class="nhsuk-form-group${reasonError ? ' nhsuk-form-group--error' : ''}"><fieldset class="nhsuk-fieldset"${reasonError ? h` aria-describedby="reason-0-error"` : ''}>
<legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s">Why are you stopping it?</legend>
${errorMessage('reason-0', reasonError)}
<div class="nhsuk-radios">
${v.reasons.map((r, i) => h`<div class="nhsuk-radios__item"><input class="nhsuk-radios__input" id="reason-${i}" name="reason" type="radio" value="${r}"${v.reason === r ? h` checked` : ''}><label class="nhsuk-label nhsuk-radios__label" for="reason-${i}">${reasonText(r)}</label></div>`)}
</div></fieldset></div>
<div class="nhsuk-form-group${textError ? ' nhsuk-form-group--error' : ''}"><label class="nhsuk-label" for="text">Explain (needed if you chose another reason)</label>
${errorMessage('text', textError)}
<textarea class="nhsuk-textarea${textError ? ' nhsuk-textarea--error' : ''}" id="text" name="text" rows="3" maxlength="500">${v.text ?? ''}</textarea></div>
<button class="nhsuk-button nhsuk-button--warning" type="submit" data-testid="revoke">Stop access now</button></form>`
    : ''
}
${
  endable && v.relation === 'grantee'
    ? h`<h2 class="nhsuk-heading-m">Stop acting for them</h2>
<form method="post" action="/account/delegations/${d.id}/end">${csrfField(v.csrf)}<input type="hidden" name="reason" value="ROLE_DEACTIVATED_PROXY_REQUEST"><button class="nhsuk-button nhsuk-button--warning" type="submit" data-testid="stop-acting">Stop acting for them</button></form>`
    : ''
}`,
    v.errors,
  );
}

export function historyPage(v: { view: DelegationView; versions: Array<DelegationView & { prev: string | null }> }): string {
  return page(
    'History',
    h`<h1 class="nhsuk-heading-l">Every change</h1>
<p class="nhsuk-body">Each version is signed by the service and linked to the one before it, so none can be changed or removed unnoticed.</p>
<table class="nhsuk-table" data-testid="history"><caption class="nhsuk-table__caption">Versions, oldest first</caption>
<thead class="nhsuk-table__head"><tr class="nhsuk-table__row"><th class="nhsuk-table__header" scope="col">Version</th><th class="nhsuk-table__header" scope="col">When</th><th class="nhsuk-table__header" scope="col">Status</th><th class="nhsuk-table__header" scope="col">Why</th><th class="nhsuk-table__header" scope="col">Access</th></tr></thead>
<tbody class="nhsuk-table__body">${v.versions.map(
      (r) => h`<tr class="nhsuk-table__row"><td class="nhsuk-table__cell">${r.version}</td><td class="nhsuk-table__cell">${dateTime(r.updatedAt)}</td><td class="nhsuk-table__cell">${tag(r.status)}</td><td class="nhsuk-table__cell">${reasonText(r.statusReason)}${r.statusText ? h`<br><span class="nhsuk-body-s">${r.statusText}</span>` : ''}</td><td class="nhsuk-table__cell">${accessSummary(r)}</td></tr>`,
    )}</tbody></table>
<p class="nhsuk-body"><a href="/account/delegations/${v.view.id}">Back to the details</a></p>`,
  );
}

export function actedForMePage(v: { rows: ActedForMeRow[] }): string {
  return page(
    'Who acted for you',
    h`<h1 class="nhsuk-heading-l">Who acted for you</h1>
<p class="nhsuk-body">Every time someone you gave access to signed in to a service as you, or a service passed that access on, it is listed here, newest first.</p>
${
  v.rows.length === 0
    ? h`<p class="nhsuk-body" data-testid="nobody-acted">Nobody has acted for you yet.</p>`
    : h`<table class="nhsuk-table" data-testid="acted-for-me"><caption class="nhsuk-table__caption nhsuk-u-visually-hidden">Who acted for you</caption>
<thead class="nhsuk-table__head"><tr class="nhsuk-table__row"><th class="nhsuk-table__header" scope="col">When</th><th class="nhsuk-table__header" scope="col">Who</th><th class="nhsuk-table__header" scope="col">What happened</th><th class="nhsuk-table__header" scope="col">Service</th><th class="nhsuk-table__header" scope="col">Access</th></tr></thead>
<tbody class="nhsuk-table__body">${v.rows.map(
        (r) => h`<tr class="nhsuk-table__row"><td class="nhsuk-table__cell">${dateTime(r.time)}</td><td class="nhsuk-table__cell">${r.actors.map((a, i) => h`${i ? ', on behalf of ' : ''}${nameOf(a, '')}`)}</td><td class="nhsuk-table__cell">${r.type === 'token.exchanged' ? 'A service passed the access on' : 'Signed in to a service as you'}${r.outcome === 'failure' ? ' (refused)' : ''}</td><td class="nhsuk-table__cell">${r.client ?? 'Unknown'}${r.audience ? h`<br><span class="nhsuk-body-s">${r.audience}</span>` : ''}</td><td class="nhsuk-table__cell"><span class="nhsuk-body-s">${r.scope ?? ''}</span></td></tr>`,
      )}</tbody></table>`
}`,
  );
}

export interface StaffValues extends AccessValues {
  patient?: string;
  grantee?: string;
  legalBasis?: string;
  evidence?: string;
}

export function staffRecordPage(v: { csrf: string; values: StaffValues; allowedLevels: number[]; legalBases: string[]; errors: FieldError[] }): string {
  const person = (id: string, label: string) => {
    const err = errorFor(v.errors, id);
    return h`<div class="nhsuk-form-group${err ? ' nhsuk-form-group--error' : ''}"><label class="nhsuk-label nhsuk-label--s" for="${id}">${label}</label>
<div class="nhsuk-hint" id="${id}-hint">Their account id, or their 10-digit NHS number</div>
${errorMessage(id, err)}
<input class="nhsuk-input${err ? ' nhsuk-input--error' : ''}" id="${id}" name="${id}" type="text" autocomplete="off" spellcheck="false" aria-describedby="${id}-hint${err ? h` ${id}-error` : ''}" value="${id === 'patient' ? (v.values.patient ?? '') : (v.values.grantee ?? '')}"></div>`;
  };
  const basisError = errorFor(v.errors, 'basis-0');
  const evidenceError = errorFor(v.errors, 'evidence');
  return page(
    'Record a verified relationship',
    h`<h1 class="nhsuk-heading-l">Record a verified relationship</h1>
<p class="nhsuk-body">Use this when you have checked the relationship yourself, for example parental responsibility. It is active at once and names you and your organisation as the verifier.</p>
<form method="post" action="/account/staff/record" novalidate>
${csrfField(v.csrf)}
${person('patient', 'Patient')}
${person('grantee', 'Person who will act for them')}
<div class="nhsuk-form-group${basisError ? ' nhsuk-form-group--error' : ''}"><fieldset class="nhsuk-fieldset">
<legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--m"><h2 class="nhsuk-fieldset__heading">Legal basis</h2></legend>
${errorMessage('basis-0', basisError)}
<div class="nhsuk-radios">
${v.legalBases.map((b, i) => h`<div class="nhsuk-radios__item"><input class="nhsuk-radios__input" id="basis-${i}" name="legalBasis" type="radio" value="${b}"${v.values.legalBasis === b ? h` checked` : ''}><label class="nhsuk-label nhsuk-radios__label" for="basis-${i}">${LEGAL_BASIS_TEXT[b] ?? b}</label></div>`)}
</div></fieldset></div>
${accessFields(v.values, v.allowedLevels, v.errors)}
<div class="nhsuk-form-group${evidenceError ? ' nhsuk-form-group--error' : ''}"><label class="nhsuk-label nhsuk-label--s" for="evidence">Evidence you checked</label>
<div class="nhsuk-hint" id="evidence-hint">For example, birth certificate seen at the practice</div>
${errorMessage('evidence', evidenceError)}
<textarea class="nhsuk-textarea" id="evidence" name="evidence" rows="3" maxlength="2000" aria-describedby="evidence-hint">${v.values.evidence ?? ''}</textarea></div>
<button class="nhsuk-button" type="submit" data-testid="record">Record relationship</button>
</form>`,
    v.errors,
  );
}

// Linked logins ------------------------------------------------------------------------------------------

export interface LinkRow {
  provider: string;
  providerName: string;
  subject: string;
  evidence: string;
  linkedAt: string;
}

/** The evidence a link was made on, in plain words. */
export function evidenceText(evidence: string): string {
  if (evidence === 'jit') return 'Your account was created with this login';
  if (evidence === 'proved-in-session') return 'You added it, signed in with both logins';
  const [kind, level] = evidence.split(':');
  if (kind === 'nhs_number') return `Matched on your verified NHS number${level && level !== 'asserted' ? ` (${level})` : ''}`;
  if (kind === 'cis2_uid') return 'Matched on your verified NHS Care Identity user ID';
  if (kind === 'saml_persistent') return 'Matched on your organisation\u2019s persistent identifier';
  return `Matched on a verified identifier (${evidence})`;
}

const LINK_DONE: Record<string, string> = {
  linked: 'That login has been added. You can now sign in with it.',
  'already-linked': 'That login was already linked to your account. Nothing was changed.',
  removed: 'That login has been removed. It can no longer be used to sign in to your account.',
};

export function linksPage(v: { csrf: string; links: LinkRow[]; upstreams: ReadonlyArray<{ id: string; displayName: string }>; done?: string; errors: FieldError[] }): string {
  const done = v.done ? LINK_DONE[v.done] : undefined;
  const only = v.links.length <= 1;
  return page(
    'Ways you sign in',
    h`${done ? h`<div class="nhsuk-inset-text" data-testid="done"><span class="nhsuk-u-visually-hidden">Information: </span><p>${done}</p></div>` : ''}
<h1 class="nhsuk-heading-l">Ways you sign in</h1>
<p class="nhsuk-body">These logins all lead to this account.${only ? ' You cannot remove your only login.' : ''}</p>
<table class="nhsuk-table" id="links" data-testid="links"><caption class="nhsuk-table__caption nhsuk-u-visually-hidden">Logins linked to your account</caption>
<thead class="nhsuk-table__head"><tr class="nhsuk-table__row"><th class="nhsuk-table__header" scope="col">Login</th><th class="nhsuk-table__header" scope="col">How it was linked</th><th class="nhsuk-table__header" scope="col">Since</th><th class="nhsuk-table__header" scope="col"><span class="nhsuk-u-visually-hidden">Action</span></th></tr></thead>
<tbody class="nhsuk-table__body">${v.links.map(
      (l) => h`<tr class="nhsuk-table__row" data-testid="link-row"><td class="nhsuk-table__cell">${l.providerName}</td><td class="nhsuk-table__cell">${evidenceText(l.evidence)}</td><td class="nhsuk-table__cell">${date(l.linkedAt)}</td><td class="nhsuk-table__cell">${
        only
          ? ''
          : h`<form method="post" action="/account/links/remove">${csrfField(v.csrf)}<input type="hidden" name="provider" value="${l.provider}"><input type="hidden" name="subject" value="${l.subject}"><button class="nhsuk-button nhsuk-button--secondary nhsuk-u-margin-bottom-0" type="submit" data-testid="remove-link">Remove<span class="nhsuk-u-visually-hidden"> ${l.providerName}</span></button></form>`
      }</td></tr>`,
    )}</tbody></table>
<h2 class="nhsuk-heading-m">Add a way to sign in</h2>
<p class="nhsuk-body">You will be asked to sign in with the other login now. Once you have, it leads to this account too. A login that already belongs to another account cannot be added.</p>
${
  v.upstreams.length
    ? h`<form method="post" action="/account/links/add">${csrfField(v.csrf)}
<div class="nhsuk-form-group"><label class="nhsuk-label" for="upstream">Login to add</label>
<select class="nhsuk-select" id="upstream" name="upstream">${v.upstreams.map((u) => h`<option value="${u.id}">${u.displayName}</option>`)}</select></div>
<button class="nhsuk-button" type="submit" data-testid="add-link">Add a way to sign in</button></form>`
    : h`<p class="nhsuk-body">No other logins can be added on this service.</p>`
}`,
    v.errors,
  );
}

export function linkRefusedPage(v: { providerName: string }): string {
  return page(
    'This login cannot be added',
    h`<h1 class="nhsuk-heading-l">This login cannot be added</h1>
<p class="nhsuk-body" data-testid="link-refused">The ${v.providerName} login you just used already belongs to another account. It has not been added to this account, and nothing has been changed.</p>
<p class="nhsuk-body">If you did not expect this, sign in with that login and remove it there first, or contact the service desk.</p>
<p class="nhsuk-body"><a href="/account/links">Back to ways you sign in</a></p>`,
  );
}
