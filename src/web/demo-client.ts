import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { h, layout } from './html.ts';
import { BadRequestError } from './errors.ts';

// The demo profile's web client: a relying party served by the broker itself, so a newcomer can run a
// full authorization-code flow in a browser and see the tokens. It talks to the broker over HTTP with
// openid-client, exactly as an external client would. Only mounted in the demo profile.

const COOKIE = 'demo_client_tx';

export function demoClientRoutes(options: { issuer: string; clientId: string; clientSecret: string; resource: string; scope: string; key: Buffer; secureCookies: boolean }): Router {
  const router = new Router();
  const redirectUri = new URL('/demo/client/callback', options.issuer).href;
  let config: client.Configuration | undefined;

  async function rp(): Promise<client.Configuration> {
    if (!config) {
      config = await client.discovery(new URL(options.issuer), options.clientId, undefined, client.ClientSecretBasic(options.clientSecret), {
        execute: options.issuer.startsWith('http:') ? [client.allowInsecureRequests] : [],
      });
    }
    return config;
  }

  const sign = (v: string) => `${v}.${createHmac('sha256', options.key).update(v).digest('base64url')}`;
  function unsign(signed: string | undefined): string | undefined {
    if (!signed) return undefined;
    const i = signed.lastIndexOf('.');
    const v = signed.slice(0, i);
    const a = Buffer.from(signed.slice(i + 1));
    const b = Buffer.from(createHmac('sha256', options.key).update(v).digest('base64url'));
    return a.length === b.length && timingSafeEqual(a, b) ? v : undefined;
  }

  router.get('/demo/client', async (ctx) => {
    ctx.type = 'html';
    ctx.body = layout(
      'Demo client',
      h`<h1 class="nhsuk-heading-l">Demo client</h1>
<p class="nhsuk-body">This page is a relying party of the broker. Signing in runs an authorization-code flow with PKCE, through the broker's login chooser and the demo identity provider, and shows the tokens the broker issued.</p>
<a class="nhsuk-button" href="/demo/client/login" data-testid="demo-start">Sign in through the broker</a>`,
    );
  });

  router.get('/demo/client/login', async (ctx: Context) => {
    const verifier = client.randomPKCECodeVerifier();
    const state = randomBytes(16).toString('base64url');
    const nonce = randomBytes(16).toString('base64url');
    ctx.cookies.set(COOKIE, sign(Buffer.from(JSON.stringify({ verifier, state, nonce })).toString('base64url')), { httpOnly: true, sameSite: 'lax', secure: options.secureCookies, maxAge: 600_000, signed: false });
    const url = client.buildAuthorizationUrl(await rp(), {
      redirect_uri: redirectUri,
      scope: options.scope,
      resource: options.resource,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      prompt: 'consent',
    });
    ctx.redirect(url.href);
  });

  router.get('/demo/client/callback', async (ctx: Context) => {
    const raw = unsign(ctx.cookies.get(COOKIE));
    if (!raw) throw new BadRequestError('This sign-in was not started here, or it has expired.');
    ctx.cookies.set(COOKIE, null);
    const tx = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as { verifier: string; state: string; nonce: string };
    const current = new URL(ctx.originalUrl, options.issuer);
    let tokens;
    try {
      tokens = await client.authorizationCodeGrant(await rp(), current, { pkceCodeVerifier: tx.verifier, expectedState: tx.state, expectedNonce: tx.nonce, idTokenExpected: true });
    } catch (err) {
      throw new BadRequestError(`The sign-in did not complete: ${err instanceof Error ? err.message : 'unknown error'}`);
    }
    const decode = (t: string | undefined) => (t && t.split('.').length === 3 ? JSON.stringify(decodeJwt(t), null, 2) : '(opaque)');
    ctx.type = 'html';
    ctx.body = layout(
      'Tokens received',
      h`<h1 class="nhsuk-heading-l" data-testid="tokens-heading">Tokens received</h1>
<p class="nhsuk-body">Demo only: a real client never shows its tokens.</p>
<h2 class="nhsuk-heading-m">ID token claims</h2><pre data-testid="id-token">${decode(tokens.id_token)}</pre>
<h2 class="nhsuk-heading-m">Access token (for ${options.resource})</h2><pre data-testid="access-token">${decode(tokens.access_token)}</pre>
<p class="nhsuk-body">Refresh token issued: ${tokens.refresh_token ? 'yes' : 'no'} · expires in ${tokens.expires_in ?? '?'} s</p>
<a class="nhsuk-button nhsuk-button--secondary" href="/demo/client">Start again</a>`,
    );
  });
  return router;
}
