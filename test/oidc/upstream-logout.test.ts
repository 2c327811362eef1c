import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { clientKey, startTestBroker, API, REDIRECT, type TestBroker } from '../helpers/broker.ts';
import { UserAgent, loginThroughDemo, location } from '../helpers/browser.ts';
import { endAccountSessions } from '../../src/oidc/account-grants.ts';

// An upstream logout (back-channel or SAML) ends the broker session and every grant of the account:
// refresh fails, access tokens introspect inactive, and the browser must sign in again.

describe('upstream logout ends the broker session and its grants', () => {
  let tb: TestBroker;
  let web: oc.Configuration;
  beforeAll(async () => {
    tb = await startTestBroker({ svcKey: await clientKey() });
    web = await oc.discovery(new URL(tb.base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute: [oc.allowInsecureRequests] });
  });
  afterAll(async () => {
    await tb?.close();
  });

  it('after endAccountSessions: refresh invalid_grant, introspection inactive, SSO session gone', async () => {
    const verifier = oc.randomPKCECodeVerifier();
    const authUrl = (v: string) => oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid offline_access patient/Patient.rs', resource: API, prompt: 'consent', code_challenge: v, code_challenge_method: 'S256' }).href;
    const ua = new UserAgent();
    const back = await loginThroughDemo(ua, authUrl(await oc.calculatePKCECodeChallenge(verifier)), 'patient', tb.base);
    const tokens = await oc.authorizationCodeGrant(web, back, { pkceCodeVerifier: verifier });
    const accountId = tokens.claims()!.sub;

    // Before: the SSO session lets a second authorization go straight back to the client.
    const again = await ua.get(oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: await oc.calculatePKCECodeChallenge(oc.randomPKCECodeVerifier()), code_challenge_method: 'S256' }).href);
    expect(location(again, tb.base)).toMatch(/^https:\/\/client\.test\/cb\?code=/);

    expect(await endAccountSessions(tb.broker.store, accountId, 3600)).toBeGreaterThanOrEqual(1);

    await expect(oc.refreshTokenGrant(web, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    const intro = await fetch(`${tb.base}/token/introspection`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from('rs:rs-secret-0123456789ab').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: tokens.access_token }) });
    expect(await intro.json()).toEqual({ active: false });
    // After: the same browser is sent to sign in again.
    const after = await ua.get(oc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: await oc.calculatePKCECodeChallenge(oc.randomPKCECodeVerifier()), code_challenge_method: 'S256' }).href);
    expect(location(after, tb.base)).toMatch(/\/interaction\//);
  });
});
