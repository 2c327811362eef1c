import type { KoaContextWithOIDC } from 'oidc-provider';
import { errorPage, h, layout, SafeHtml } from '../html.ts';

// Pages oidc-provider renders through the broker's templates: errors where redirecting back would
// be unsafe (unknown client, unregistered redirect URI), and RP-initiated logout.

export async function renderError(ctx: KoaContextWithOIDC, out: { error?: string; error_description?: string }): Promise<void> {
  ctx.type = 'html';
  const server = out.error === 'server_error' || out.error === 'temporarily_unavailable';
  ctx.body = errorPage(
    server ? 'Sorry, there is a problem with the service' : 'There is a problem with this sign-in request',
    server ? 'Please try again in a few seconds.' : 'The service that sent you here made a request we cannot accept. Go back to the service and try again.',
    out.error ? `${out.error}${out.error_description ? `: ${out.error_description}` : ''}` : undefined,
  );
}

export async function logoutSource(ctx: KoaContextWithOIDC, form: string): Promise<void> {
  // oidc-provider's form (trusted markup) carries its own xsrf token; the broker adds the visible controls and submits
  // it with a button (no inline script, so a strict CSP holds).
  const formId = 'op.logoutForm';
  ctx.type = 'html';
  ctx.body = layout(
    'Sign out',
    h`<h1 class="nhsuk-heading-l">Do you want to sign out?</h1>
${new SafeHtml(form)}
<button class="nhsuk-button" type="submit" form="${formId}" name="logout" value="yes" data-testid="logout-yes">Yes, sign out</button>
<button class="nhsuk-button nhsuk-button--secondary" type="submit" form="${formId}">No, stay signed in</button>`,
  );
}

export async function postLogoutSuccessSource(ctx: KoaContextWithOIDC): Promise<void> {
  ctx.type = 'html';
  ctx.body = layout('Signed out', h`<h1 class="nhsuk-heading-l">You have signed out</h1><p class="nhsuk-body">You can close this window.</p>`);
}
