import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';
import { UpstreamAuthError, type Connector, type LoginTransaction, type UpstreamIdentity } from '../../src/identity/upstream.ts';
import { h, layout } from '../../src/web/html.ts';
import { readForm, single } from '../../src/web/form.ts';
import { PERSONAS } from './personas.ts';

// A stand-in upstream identity provider for the demo profile: a page to pick a persona. It behaves
// like a real upstream (state and a per-transaction secret round-trip through the browser) so the
// broker's login machinery is exercised exactly as with CIS2 or NHS login. Never in production.

export const DEMO_CONNECTOR_ID = 'demo';

export function createDemoConnector(options: { env?: string } = {}): Connector {
  if ((options.env ?? process.env.NODE_ENV) === 'production') {
    throw new Error('the demo identity provider refuses to run when NODE_ENV=production');
  }
  const base = `/upstream/${DEMO_CONNECTOR_ID}`;

  async function authorizePage(ctx: Context): Promise<void> {
    const tx = typeof ctx.query.state === 'string' ? ctx.query.state : '';
    const secret = typeof ctx.query.secret === 'string' ? ctx.query.secret : '';
    ctx.type = 'html';
    ctx.body = layout(
      'Demo identity provider',
      h`<h1 class="nhsuk-heading-l">Demo identity provider</h1>
<div class="nhsuk-warning-callout"><h2 class="nhsuk-warning-callout__label">Not for real use</h2><p>This demo upstream signs you in as a made-up person. It is switched off in production.</p></div>
<form method="post" action="${base}/callback" novalidate>
<input type="hidden" name="state" value="${tx}">
<input type="hidden" name="secret" value="${secret}">
<div class="nhsuk-form-group"><fieldset class="nhsuk-fieldset"><legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--m">Who do you want to sign in as?</legend>
<div class="nhsuk-radios">
${PERSONAS.map((p, i) => h`<div class="nhsuk-radios__item"><input class="nhsuk-radios__input" id="persona-${p.id}" name="persona" type="radio" value="${p.id}"${i === 0 ? h` checked` : ''}><label class="nhsuk-label nhsuk-radios__label" for="persona-${p.id}">${p.label}</label><div class="nhsuk-hint nhsuk-radios__hint">${p.description}</div></div>`)}
</div></fieldset></div>
<button class="nhsuk-button" type="submit" data-testid="demo-sign-in">Sign in</button>
</form>`,
    );
  }

  return {
    id: DEMO_CONNECTOR_ID,
    displayName: 'Demo identity provider (personas)',
    kind: 'demo',
    async begin(ctx, request) {
      const secret = randomBytes(16).toString('base64url');
      const url = new URL(`${base}/authorize`, 'http://placeholder');
      url.searchParams.set('state', request.transactionId);
      url.searchParams.set('secret', secret);
      ctx.redirect(url.pathname + url.search);
      return { secret };
    },
    async complete(ctx, tx: LoginTransaction): Promise<UpstreamIdentity> {
      const form = (ctx.state as { form?: URLSearchParams }).form ?? (await readForm(ctx));
      const secret = Buffer.from(single(form, 'secret'));
      const expected = Buffer.from(tx.state.secret ?? '');
      if (secret.length !== expected.length || !timingSafeEqual(secret, expected)) throw new UpstreamAuthError('demo: transaction secret mismatch');
      const persona = PERSONAS.find((p) => p.id === single(form, 'persona'));
      if (!persona) throw new UpstreamAuthError('demo: unknown persona');
      return {
        provider: DEMO_CONNECTOR_ID,
        subject: persona.subject,
        claims: structuredClone(persona.claims),
        assurance: { ...persona.assurance },
        authTime: Math.floor(Date.now() / 1000),
      };
    },
    routes: [{ method: 'GET', path: `${base}/authorize`, handler: authorizePage }],
  };
}
