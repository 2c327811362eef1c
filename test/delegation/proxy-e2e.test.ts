import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oc from 'openid-client';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import type { BrowserContext, Page } from 'playwright-core';
import { chromiumAvailable, launchChromium } from '../peers/chromium.ts';
import { API } from '../helpers/broker.ts';
import { introspect, startDelegationBroker, type DelegationBroker } from './helpers.ts';

// nhs-interfaces.md 7.4, end to end in Chromium: the patient signs in to /account and invites; the
// carer (another browser) accepts; the carer signs in to a client asking for patient/Patient.rs and
// picks the patient on the "act as" page; the client gets a delegated token (sub = patient, act.sub =
// carer, consent_id); a FHIR resource server built here serves the patient's data and refuses another
// patient's; the patient revokes in the browser, and within one second introspection says inactive,
// refresh fails with invalid_grant and the resource server refuses.


async function launch(name: string): Promise<BrowserContext> {
  const context = await launchChromium(name);
  // A step that cannot happen fails with its own message, well inside the test's timeout.
  context.setDefaultTimeout(10_000);
  return context;
}

/**
 * A sample FHIR resource server (PXY-1..4 of nhs-interfaces.md 2.9): verifies the JWT against the
 * broker's JWKS, asks the broker's introspection whether it is still active (a revoked consent is not),
 * serves only the token's patient, and records who acted for whom.
 */
async function startResourceServer(base: string): Promise<{ url: string; server: Server; seen: Array<{ patient: string; actor?: string; consent?: string }> }> {
  const jwks = createRemoteJWKSet(new URL('/jwks', base));
  const seen: Array<{ patient: string; actor?: string; consent?: string }> = [];
  const outcome = (code: string, diagnostics: string) => JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] });
  const server = createServer(async (req, res) => {
    const send = (status: number, body: string) => {
      res.writeHead(status, { 'content-type': 'application/fhir+json' });
      res.end(body);
    };
    try {
      const m = /^\/Patient\/([A-Za-z0-9-]+)$/.exec(req.url ?? '');
      if (req.method !== 'GET' || !m) return send(404, outcome('not-found', 'no such resource'));
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (!token) return send(401, outcome('login', 'bearer token required'));
      let claims;
      try {
        ({ payload: claims } = await jwtVerify(token, jwks, { issuer: base, audience: API, typ: 'at+jwt' }));
      } catch {
        return send(401, outcome('login', 'invalid token'));
      }
      // The signature says who and what; only the broker knows whether the consent still stands.
      const live = await introspect({ base }, token);
      if (live.active !== true) return send(401, outcome('login', 'token no longer active'));
      const scopes = String(claims.scope ?? '').split(' ');
      if (!scopes.includes('patient/Patient.rs') && !scopes.includes('patient/*.rs')) return send(403, outcome('forbidden', 'scope does not cover Patient'));
      if (m[1] !== claims.sub) return send(403, outcome('forbidden', 'a token may only read its own patient'));
      const actor = (claims.act as { sub?: string } | undefined)?.sub;
      seen.push({ patient: String(claims.sub), actor, consent: typeof claims.consent_id === 'string' ? claims.consent_id : undefined });
      send(200, JSON.stringify({ resourceType: 'Patient', id: m[1], meta: { tag: actor ? [{ code: 'proxy-access', display: `read by ${actor}` }] : [] } }));
    } catch (err) {
      send(500, outcome('exception', String(err)));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, seen };
}

describe.skipIf(!chromiumAvailable)('carer proxy access in Chromium (nhs-interfaces.md 7.4)', () => {
  let t: DelegationBroker;
  let rs: Awaited<ReturnType<typeof startResourceServer>>;
  let patientBrowser: BrowserContext;
  let carerBrowser: BrowserContext;

  beforeAll(async () => {
    t = await startDelegationBroker();
    rs = await startResourceServer(t.base);
    [patientBrowser, carerBrowser] = await Promise.all([launch('patient'), launch('carer')]);
  });
  afterAll(async () => {
    await patientBrowser?.close();
    await carerBrowser?.close();
    rs?.server.close();
    await t?.close();
  });

  async function signInWithDemo(page: Page, persona: string): Promise<void> {
    await page.waitForSelector('[data-testid="continue"]');
    await page.check('#upstream-demo');
    await page.click('[data-testid="continue"]');
    await page.waitForSelector('[data-testid="demo-sign-in"]');
    await page.check(`#persona-${persona}`);
    await page.click('[data-testid="demo-sign-in"]');
  }

  const read = (token: string, id: string) => fetch(`${rs.url}/Patient/${id}`, { headers: { authorization: `Bearer ${token}` } });

  it('invite, accept, act as, read, revoke: the revocation bites within a second', { timeout: 90_000 }, async () => {
    // 1. The patient signs in to the account pages and invites someone, for their personal details.
    const pat = await patientBrowser.newPage();
    await pat.goto(`${t.base}/account`);
    await signInWithDemo(pat, 'patient');
    await pat.waitForURL(`${t.base}/account`);
    expect(await pat.textContent('[data-testid="signed-in-as"]')).toContain('Pat Patient');
    await pat.click('[data-testid="invite"]');
    await pat.waitForURL(`${t.base}/account/invite`);
    await pat.check('input[name="scopes"][value="patient/Patient.rs"]');
    await pat.fill('#end-day', '1');
    await pat.fill('#end-month', '6');
    await pat.fill('#end-year', String(new Date().getUTCFullYear() + 1));
    await pat.click('[data-testid="create-invitation"]');
    const code = (await pat.textContent('[data-testid="invitation-code"]'))!.trim();
    const link = (await pat.getAttribute('[data-testid="invitation-link"]', 'href'))!;
    expect(link).toBe(`${t.base}/account/invitations/accept?code=${code}`);

    // 2. The carer opens the link in their own browser, signs in with their own identity, and accepts.
    const car = await carerBrowser.newPage();
    await car.goto(link);
    await signInWithDemo(car, 'carer');
    await car.waitForURL(link);
    expect(await car.inputValue('#code')).toBe(code);
    await car.click('[data-testid="accept"]');
    await car.waitForURL(/\/account\/delegations\/[^?]+\?done=accepted$/);
    const consentId = /\/account\/delegations\/([^?]+)/.exec(car.url())![1];
    const { record } = await t.broker.delegation.get(consentId);
    expect(record).toMatchObject({ status: 'active', access: { scopes: ['patient/Patient.rs'] } });
    const patientId = record.grantor;
    const carerId = record.grantee!;
    expect(await car.textContent('h1')).toContain('Acting for Pat Patient');

    // The carer signs out of the account pages (ending the broker session too), so the next sign-in
    // is a fresh one. (With the broker session still alive the login is silent and, today, skips the
    // "act as" choice; prompt=login loops: both reported to the lead.)
    await car.goto(`${t.base}/account`);
    await car.click('[data-testid="sign-out"]');
    await car.click('[data-testid="logout-yes"]');
    await car.waitForSelector('[data-testid="continue"]');

    // 3. The carer signs in to a client that asks for patient data, and picks the patient.
    const verifier = oc.randomPKCECodeVerifier();
    const state = oc.randomState();
    const auth = oc.buildAuthorizationUrl(t.web, { redirect_uri: 'https://client.test/cb', scope: 'openid offline_access patient/Patient.rs', resource: API, prompt: 'consent', state, code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    let landed: string | undefined;
    await carerBrowser.route('https://client.test/**', async (route) => {
      landed = route.request().url();
      await route.fulfill({ status: 200, contentType: 'text/html', body: '<!DOCTYPE html><title>client</title><p>signed in</p>' });
    });
    await car.goto(auth.href);
    await signInWithDemo(car, 'carer');
    await car.waitForSelector('[data-testid="act-as"]');
    expect(await car.textContent('label[for="acting-' + consentId + '"]')).toContain('Pat Patient');
    await car.check(`#acting-${consentId}`);
    await car.click('[data-testid="act-as"]');
    await car.waitForURL((u) => u.href.startsWith('https://client.test/cb')).catch(async (err: unknown) => {
      throw new Error(`stuck at ${car.url()}: ${(await car.content()).replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').slice(0, 600)}`, { cause: err });
    });
    expect(landed).toBeDefined();
    const tokens = await oc.authorizationCodeGrant(t.web, new URL(landed!), { pkceCodeVerifier: verifier, expectedState: state });

    // 4. A delegated token: about the patient, naming the carer as actor and the consent.
    const access = decodeJwt(tokens.access_token);
    expect(access).toMatchObject({ sub: patientId, act: { sub: carerId }, consent_id: consentId, aud: API });
    expect(String(access.scope).split(' ')).toEqual(['patient/Patient.rs']);
    expect((access.exp as number) - (access.iat as number)).toBeLessThanOrEqual(300);
    expect(tokens.refresh_token).toBeDefined();
    expect(await introspect(t, tokens.access_token)).toMatchObject({ active: true, sub: patientId, act: { sub: carerId }, consent_id: consentId });

    // 5. The resource server serves the patient's record, and refuses another patient's.
    const own = await read(tokens.access_token, patientId);
    expect(own.status).toBe(200);
    expect(await own.json()).toMatchObject({ resourceType: 'Patient', id: patientId });
    expect((await read(tokens.access_token, carerId)).status).toBe(403);
    expect((await read(tokens.access_token, '00000000-0000-0000-0000-000000000000')).status).toBe(403);
    expect(rs.seen).toEqual([{ patient: patientId, actor: carerId, consent: consentId }]);

    // 6. The patient sees who acted for them, then revokes in the browser.
    await pat.goto(`${t.base}/account/who-acted-for-me`);
    const activity = (await pat.textContent('[data-testid="acted-for-me"]'))!;
    expect(activity).toContain('Cara Carer');
    expect(activity).toContain('web');
    expect(activity).toContain('patient/Patient.rs');
    await pat.goto(`${t.base}/account`);
    await pat.click('[data-testid="acting-for-me"] [data-testid="delegation-link"]');
    await pat.waitForURL(`${t.base}/account/delegations/${consentId}`);
    await pat.check('input[name="reason"][value="ROLE_DEACTIVATED_PATIENT_REQUEST"]');
    const [revoked] = await Promise.all([pat.waitForResponse((r) => r.url().endsWith(`/account/delegations/${consentId}/end`) && r.request().method() === 'POST'), pat.click('[data-testid="revoke"]')]);
    const revokedAt = Date.now();
    expect(revoked.status()).toBe(303);

    // 7. Within one second: introspection inactive, refresh invalid_grant, the resource server refuses.
    let inactiveAfter = Number.POSITIVE_INFINITY;
    while (Date.now() - revokedAt < 1000) {
      if ((await introspect(t, tokens.access_token)).active === false) {
        inactiveAfter = Date.now() - revokedAt;
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(inactiveAfter).toBeLessThan(1000);
    expect(await introspect(t, tokens.access_token)).toEqual({ active: false });
    await expect(oc.refreshTokenGrant(t.web, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect((await read(tokens.access_token, patientId)).status).toBe(401);
    // All three refusals observed inside the second after the revocation answered.
    expect(Date.now() - revokedAt).toBeLessThan(1000);
    if (process.env.DELEGATION_E2E_TIMINGS) console.info(`introspection inactive ${inactiveAfter} ms after revocation; all checks done at ${Date.now() - revokedAt} ms`);

    await pat.waitForURL(`${t.base}/account/delegations/${consentId}?done=ended`);
    expect(await pat.textContent('[data-testid="done"]')).toContain('It has ended');
    expect(await pat.textContent('[data-testid="status-reason"]')).toContain('I no longer want them to act for me');

    // The carer's account pages no longer list the patient.
    await car.goto(`${t.base}/account`);
    await car.waitForURL(`${t.base}/account`);
    expect(await car.locator('[data-testid="i-act-for"]').count()).toBe(0);
    expect(await car.textContent('main')).toContain('You cannot act for anyone.');
  });
});
