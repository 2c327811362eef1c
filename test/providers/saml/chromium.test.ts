import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import type { BrowserContext } from 'playwright-core';
import { chromiumAvailable, launchChromium } from '../../peers/chromium.ts';
import { REDIRECT } from '../../helpers/broker.ts';
import { simpleSamlAvailable } from '../../peers/simplesamlphp.ts';
import { snapshot, startSamlEnv, type SamlEnv } from './harness.ts';

// The same SP-initiated login in a real browser: Chromium runs the IdP's auto-submitting form and
// applies cookie paths and SameSite to the broker's cookies when the IdP (another site: 127.0.0.1 vs
// localhost) posts back to the ACS.


describe.skipIf(!simpleSamlAvailable || !chromiumAvailable)('SAML upstream in Chromium', () => {
  let env: SamlEnv;
  let context: BrowserContext;
  beforeAll(async () => {
    env = await startSamlEnv({ idpHost: process.env.SAML_IDP_HOST });
    context = await launchChromium('saml');
  });
  afterAll(async () => {
    await context?.close();
    await env?.close();
  });

  async function run(options: { carryInteractionCookie: boolean }): Promise<{ landed?: URL; stuckAt?: string; text?: string; verifier: string; state: string; nonce: string }> {
    const verifier = oc.randomPKCECodeVerifier();
    const state = oc.randomState();
    const nonce = oc.randomNonce();
    const auth = oc.buildAuthorizationUrl(env.web, { redirect_uri: REDIRECT, scope: 'openid profile', code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state, nonce });
    let landed: URL | undefined;
    // The client's redirect URI does not resolve; the request for it (the end of the broker's
    // redirect chain) is what the client would receive.
    const onRequest = (req: { url(): string }) => {
      if (req.url().startsWith('https://client.test/')) landed ??= new URL(req.url());
    };
    context.on('request', onRequest);
    const acs = `${env.base}/upstream/org/callback`;
    await context.clearCookies();
    const page = await context.newPage();
    try {
      await page.goto(auth.href);
      const uid = new URL(page.url()).pathname.split('/').pop() ?? '';
      if (options.carryInteractionCookie) {
        // Stand-in for the broker binding the ACS POST to the browser's interaction (see the note on
        // the expected failure below): the browser's own interaction cookies, scoped by oidc-provider
        // to /interaction/<uid>, are copied to the ACS path (SameSite=None; Secure works on localhost).
        const own = (await context.cookies(`${env.base}/interaction/${uid}`)).filter((c) => c.name.startsWith('_interaction'));
        await context.addCookies(own.map((c) => ({ name: c.name, value: c.value, domain: c.domain, path: '/upstream/org/callback', httpOnly: true, secure: true, sameSite: 'None' as const })));
      }
      await page.check('#upstream-org');
      await page.click('[data-testid="continue"]');
      await page.waitForURL((u) => u.href.startsWith(env.idp.baseUrl));
      await page.fill('input[name="username"]', 'alice');
      await page.fill('input[name="password"]', 'alice-password');
      await page.press('input[name="password"]', 'Enter');
      // The IdP's page submits itself (JavaScript) to the broker's ACS.
      // Until the client's redirect is requested, or the broker shows an error page at the ACS.
      for (const deadline = Date.now() + 15_000; !landed && Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
        if (page.url() !== acs) continue;
        const title = await page.title().catch(() => '');
        if (/problem|could not/i.test(title)) break;
      }
      if (landed) return { landed, verifier, state, nonce };
      return { stuckAt: page.url(), text: (await page.content()).replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' '), verifier, state, nonce };
    } finally {
      context.off('request', onRequest);
      await page.close();
    }
  }

  it('signs in through the chooser, the IdP login form and its auto-POST back to the ACS', async () => {
    const before = snapshot(env.db);
    // No help from the test: the browser's own cookies, scoped as oidc-provider sets them, must suffice.
    const r = await run({ carryInteractionCookie: false });
    expect(r.stuckAt, r.text).toBeUndefined();
    expect(r.landed?.searchParams.get('code')).toBeTruthy();
    const tokens = await oc.authorizationCodeGrant(env.web, r.landed!, { pkceCodeVerifier: r.verifier, expectedState: r.state, expectedNonce: r.nonce });
    expect(tokens.claims()?.sub).toBeTruthy();
    expect(snapshot(env.db).accounts).toBe(before.accounts + 1);
  });

});
