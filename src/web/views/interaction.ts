import { h, layout } from '../html.ts';

export function chooserPage(v: { uid: string; csrf: string; clientName: string; connectors: Array<{ id: string; displayName: string; notResponding?: boolean }>; last?: string }): string {
  // An upstream whose circuit is open stays choosable (it may be back by the time the user clicks) but is
  // flagged, and never preselected, so nobody is sent into a wait they could have avoided.
  const working = v.connectors.filter((c) => !c.notResponding);
  const preferred = working.some((c) => c.id === v.last) ? v.last : working[0]?.id;
  return layout(
    'Choose how to sign in',
    h`<div class="nhsuk-grid-row"><div class="nhsuk-grid-column-two-thirds">
<form method="post" action="/interaction/${v.uid}/login" novalidate>
<input type="hidden" name="csrf" value="${v.csrf}">
<div class="nhsuk-form-group"><fieldset class="nhsuk-fieldset" aria-describedby="chooser-hint">
<legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--l"><h1 class="nhsuk-fieldset__heading">Choose how to sign in</h1></legend>
<div class="nhsuk-hint" id="chooser-hint">${v.clientName} wants you to sign in.</div>
<div class="nhsuk-radios">
${v.connectors.map((c) => h`<div class="nhsuk-radios__item"><input class="nhsuk-radios__input" id="upstream-${c.id}" name="upstream" type="radio" value="${c.id}"${c.id === preferred ? h` checked` : ''}><label class="nhsuk-label nhsuk-radios__label" for="upstream-${c.id}">${c.displayName}</label>${c.notResponding ? h`<div class="nhsuk-hint nhsuk-radios__hint" data-testid="not-responding-${c.id}">Not responding at the moment</div>` : ''}</div>`)}
</div></fieldset></div>
<button class="nhsuk-button" type="submit" data-testid="continue">Continue</button>
</form>
<form method="post" action="/interaction/${v.uid}/abort"><input type="hidden" name="csrf" value="${v.csrf}"><button class="nhsuk-button nhsuk-button--secondary" type="submit">Cancel</button></form>
</div></div>`,
  );
}

const SCOPE_TEXT: Record<string, string> = {
  openid: 'Know who you are',
  profile: 'Your name and date of birth',
  email: 'Your email address',
  nhs_number: 'Your NHS number',
  offline_access: 'Stay connected when you are not using it',
  roles: 'Your NHS roles and organisations',
};

export function consentPage(v: { uid: string; csrf: string; clientName: string; scopes: string[] }): string {
  return layout(
    'Allow access',
    h`<div class="nhsuk-grid-row"><div class="nhsuk-grid-column-two-thirds">
<h1 class="nhsuk-heading-l">Allow ${v.clientName} to access your information?</h1>
<p class="nhsuk-body">${v.clientName} is asking to:</p>
<ul class="nhsuk-list nhsuk-list--bullet">${v.scopes.map((s) => h`<li>${SCOPE_TEXT[s] ?? s}</li>`)}</ul>
<form method="post" action="/interaction/${v.uid}/confirm"><input type="hidden" name="csrf" value="${v.csrf}"><button class="nhsuk-button" type="submit" data-testid="allow">Allow</button></form>
<form method="post" action="/interaction/${v.uid}/abort"><input type="hidden" name="csrf" value="${v.csrf}"><button class="nhsuk-button nhsuk-button--secondary" type="submit">Do not allow</button></form>
</div></div>`,
  );
}

export function rolePage(v: { uid: string; csrf: string; roles: Array<{ person_roleid: string; org_code: string; role_code: string; role_name?: string }> }): string {
  return layout(
    'Choose your role',
    h`<div class="nhsuk-grid-row"><div class="nhsuk-grid-column-two-thirds">
<form method="post" action="/interaction/${v.uid}/role" novalidate>
<input type="hidden" name="csrf" value="${v.csrf}">
<div class="nhsuk-form-group"><fieldset class="nhsuk-fieldset">
<legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--l"><h1 class="nhsuk-fieldset__heading">Choose your role for this session</h1></legend>
<div class="nhsuk-radios">
${v.roles.map((r, i) => h`<div class="nhsuk-radios__item"><input class="nhsuk-radios__input" id="role-${r.person_roleid}" name="role" type="radio" value="${r.person_roleid}"${i === 0 ? h` checked` : ''}><label class="nhsuk-label nhsuk-radios__label" for="role-${r.person_roleid}">${(r.role_name ?? r.role_code).replace(/"/g, '')}</label><div class="nhsuk-hint nhsuk-radios__hint">Organisation ${r.org_code} · role ${r.role_code}</div></div>`)}
</div></fieldset></div>
<button class="nhsuk-button" type="submit" data-testid="choose-role">Continue</button>
</form>
</div></div>`,
  );
}

export function actAsPage(v: { uid: string; csrf: string; options: Array<{ consentId: string; label: string }> }): string {
  return layout(
    'Who are you acting for?',
    h`<div class="nhsuk-grid-row"><div class="nhsuk-grid-column-two-thirds">
<form method="post" action="/interaction/${v.uid}/act-as" novalidate>
<input type="hidden" name="csrf" value="${v.csrf}">
<div class="nhsuk-form-group"><fieldset class="nhsuk-fieldset" aria-describedby="acting-hint">
<legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--l"><h1 class="nhsuk-fieldset__heading">Who are you acting for?</h1></legend>
<div class="nhsuk-hint" id="acting-hint">You can act for people who have given you access. The service will see that you are acting for them.</div>
<div class="nhsuk-radios">
<div class="nhsuk-radios__item"><input class="nhsuk-radios__input" id="acting-self" name="acting" type="radio" value="self" checked><label class="nhsuk-label nhsuk-radios__label" for="acting-self">Myself</label></div>
${v.options.map((o) => h`<div class="nhsuk-radios__item"><input class="nhsuk-radios__input" id="acting-${o.consentId}" name="acting" type="radio" value="${o.consentId}"><label class="nhsuk-label nhsuk-radios__label" for="acting-${o.consentId}">${o.label}</label></div>`)}
</div></fieldset></div>
<button class="nhsuk-button" type="submit" data-testid="act-as">Continue</button>
</form>
</div></div>`,
  );
}
