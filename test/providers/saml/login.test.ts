import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { simpleSamlAvailable } from '../../peers/simplesamlphp.ts';
import { followToClient, loginAtIdp, snapshot, startLogin, startSamlEnv, type SamlEnv } from './harness.ts';

describe.skipIf(!simpleSamlAvailable)('SAML upstream against SimpleSAMLphp: SP-initiated login', () => {
  let env: SamlEnv;
  beforeAll(async () => {
    env = await startSamlEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('signs in end to end (headless): chooser -> IdP form -> auto-POST to the ACS -> the client gets a code', async () => {
    const before = snapshot(env.db);
    const login = await startLogin(env, 'org');
    const sso = new URL(login.ssoRedirect);
    expect(sso.origin).toBe(env.idp.baseUrl);
    expect(sso.searchParams.get('SigAlg')).toBe('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
    expect(sso.searchParams.get('Signature')).toBeTruthy();
    const answer = await loginAtIdp(login.browser, login.ssoRedirect, 'alice', 'alice-password');
    expect(answer.acs).toBe(`${env.base}/upstream/org/callback`);
    const res = await login.browser.postForm(answer.acs, { SAMLResponse: answer.SAMLResponse, RelayState: answer.RelayState });
    const back = await followToClient(env, login.browser, res, answer.acs);
    expect(back.searchParams.get('code')).toBeTruthy();
    const tokens = await oc.authorizationCodeGrant(env.web, back, { pkceCodeVerifier: login.verifier, expectedState: login.state, expectedNonce: login.nonce });
    expect(tokens.claims()?.sub).toBeTruthy();
    const after = snapshot(env.db);
    expect(after.accounts).toBe(before.accounts + 1);
    expect(after.links).toBe(before.links + 1);
  });
});
