import { createServer, type Server, type Socket } from 'node:net';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { createOidcConnector } from '../../../providers/oidc/index.ts';
import { CIS2_CLIENT_ID, CIS2_ISSUER_PATH } from '../../peers/fake-cis2.ts';
import { freePort } from '../../peers/ports.ts';
import { Browser, PATIENT_APP, STAFF_APP, startHarness, type Harness, type LoginOutcome } from './harness.ts';

// Whole logins THROUGH THE BROKER: a client at the broker, the broker's chooser, the fake upstream
// (a real oidc-provider), the broker's callback, the client's code exchange. Refusals must be the
// broker's generic 401 page, must not create an account, and must never hang.

const GENERIC = 'We could not verify your sign-in';

/** The upstream itself failed: the "not responding" page (503, Retry-After), not a refused login. */
function notResponding(outcome: LoginOutcome): void {
  expect(outcome.kind).toBe('page');
  if (outcome.kind !== 'page') return;
  expect(outcome.status).toBe(503);
  expect(outcome.html).toContain('is not responding; try again in a few minutes or choose another way to sign in');
}

function refused(outcome: LoginOutcome): void {
  expect(outcome.kind).toBe('page');
  if (outcome.kind !== 'page') return;
  expect(outcome.status).toBe(401);
  expect(outcome.html).toContain(GENERIC);
}

describe('upstream OIDC logins through the broker', () => {
  let h: Harness;
  let hole: Server;
  const holeSockets = new Set<Socket>();
  let deadPort: number;

  beforeAll(async () => {
    // A port nobody listens on, and one that accepts connections and never answers.
    deadPort = await freePort();
    hole = createServer((s) => {
      holeSockets.add(s);
      s.on('close', () => holeSockets.delete(s));
    });
    await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
    const holePort = (hole.address() as { port: number }).port;
    h = await startHarness({
      extra: async ({ cis2Config, deps }) => [
        await createOidcConnector(cis2Config({ id: 'cis2-down', displayName: 'CIS2 (down)', issuer: `http://127.0.0.1:${deadPort}${CIS2_ISSUER_PATH}` }), deps),
        await createOidcConnector(cis2Config({ id: 'cis2-hole', displayName: 'CIS2 (not answering)', issuer: `http://127.0.0.1:${holePort}${CIS2_ISSUER_PATH}`, timeoutMs: 800 }), deps),
      ],
    });
  });

  afterAll(async () => {
    await h?.close();
    for (const s of holeSockets) s.destroy();
    await new Promise<void>((r) => hole?.close(() => r()));
  });

  describe('staff via the CIS2-like upstream', () => {
    it('signs a nurse in: the client gets an ID token whose acr/amr are the upstream\'s', async () => {
      const { claims } = await h.fullLogin('cis2', 'nurse');
      expect(claims.acr).toBe('AAL3_ANY');
      expect(claims.amr).toEqual(['N3_SMARTCARD']);
      const profile = await h.accounts().getProfile(claims.sub);
      // Roles and the role picked at CIS2 reach the broker for its role selection.
      expect(profile?.nhsid_nrbac_roles).toHaveLength(2);
      expect(profile?.selected_roleid).toBe('555057996107');
      expect(profile?.nhsid_useruid).toBe('555057896106');
    });

    it('authenticated at the CIS2 token endpoint with private_key_jwt: RS512, aud = the token endpoint, iss = sub = client_id', () => {
      const last = h.cis2.received.token.at(-1)!;
      expect(last.authMethod).toBe('private_key_jwt');
      expect(last.assertionHeader).toMatchObject({ alg: 'RS512', kid: 'broker-cis2-1' });
      expect(last.assertionClaims).toMatchObject({ iss: CIS2_CLIENT_ID, sub: CIS2_CLIENT_ID, aud: `${h.cis2.issuer}/access_token` });
    });

    it('sent PKCE (S256), a nonce, the CIS2 scopes and state = the broker\'s login transaction', () => {
      const sent = h.cis2.received.authorize.at(-1)!;
      expect(sent.get('code_challenge_method')).toBe('S256');
      expect(sent.get('nonce')?.length).toBeGreaterThanOrEqual(43);
      expect(sent.get('state')?.length).toBeGreaterThanOrEqual(32);
      expect(sent.get('scope')?.split(' ')).toEqual(expect.arrayContaining(['openid', 'nationalrbacaccess', 'selectedrole', 'associatedorgs']));
      expect(sent.get('redirect_uri')).toBe(`${h.base}/upstream/cis2/callback`);
    });

    it('passes the client\'s CIS2 acr_values upstream', async () => {
      const { claims } = await h.fullLogin('cis2', 'gp', { acr_values: 'AAL3_ANY' });
      expect(h.cis2.received.authorize.at(-1)!.get('acr_values')).toBe('AAL3_ANY');
      expect(claims.acr).toBe('AAL3_ANY');
    });

    it('a client that needs AAL3: acr_values=AAL3_ANY goes upstream, and an AAL2-only user is refused', async () => {
      const { claims } = await h.fullLogin('cis2', 'gp', {}, STAFF_APP);
      expect(h.cis2.received.authorize.at(-1)!.get('acr_values')).toBe('AAL3_ANY');
      expect(claims.acr).toBe('AAL3_ANY');
      const before = await h.counts();
      const outcome = await h.attempt('cis2', 'admin', { clientId: STAFF_APP });
      expect(h.cis2.received.authorize.at(-1)!.get('acr_values')).toBe('AAL3_ANY');
      refused(outcome);
      expect(await h.counts()).toEqual(before);
    });
  });

  describe('patients via the NHS login-like upstream', () => {
    it('signs a P9 patient in: acr = the vector of trust, NHS number kept', async () => {
      const { claims } = await h.fullLogin('nhs-login', 'p9');
      expect(claims.acr).toBe('P9.Cp.Cd');
      expect(h.nhs.received.authorize.at(-1)!.get('vtr')).toBe('["P9.Cp.Cd","P9.Cp.Ck","P9.Cm"]');
      expect(h.nhs.received.authorize.at(-1)!.has('login_hint')).toBe(false);
      const profile = await h.accounts().getProfile(claims.sub);
      expect(profile?.nhs_number).toBe('9912003071');
    });

    it('authenticated with an RS512 private_key_jwt whose aud is the token URL', () => {
      const last = h.nhs.received.token.at(-1)!;
      expect(last.assertionHeader).toMatchObject({ alg: 'RS512' });
      expect(last.assertionClaims?.aud).toBe(`${h.nhs.issuer}/token`);
    });

    it('turns the client\'s vectors (acr_values) into vtr', async () => {
      const { claims } = await h.fullLogin('nhs-login', 'p5', { acr_values: 'P5.Cp.Cd' });
      expect(h.nhs.received.authorize.at(-1)!.get('vtr')).toBe('["P5.Cp.Cd"]');
      expect(claims.acr).toBe('P5.Cp.Cd');
    });

    it('a client that needs P9: vtr asks for P9, and a P5-only patient is refused', async () => {
      const ok = await h.fullLogin('nhs-login', 'mother', {}, PATIENT_APP);
      expect(ok.claims.acr).toBe('P9.Cp.Cd');
      expect(h.nhs.received.authorize.at(-1)!.get('vtr')).toBe('["P9.Cp.Cd","P9.Cp.Ck","P9.Cm"]');
      refused(await h.attempt('nhs-login', 'p5', { clientId: PATIENT_APP }));
    });
  });

  describe('a bad answer from the upstream is refused with the generic page and creates nothing', () => {
    // Each with the reason that reaches the log and audit (never the page).
    const cases: Array<[string, () => void, RegExp]> = [
      ['nonce mismatch', () => (h.cis2.tamper = { nonce: 'not-the-nonce-we-sent' }), /nonce/],
      ['iss mismatch', () => (h.cis2.tamper = { iss: 'https://am.nhsint.auth-ptl.cis2.spineservices.nhs.uk:443/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare' }), /"iss"/],
      ['wrong aud', () => (h.cis2.tamper = { aud: 'someone-else.apps.national' }), /"aud"/],
      ['aud with a second audience and a foreign azp', () => (h.cis2.tamper = { aud: [CIS2_CLIENT_ID, 'other.apps.national'], azp: 'other.apps.national' }), /"azp"/],
      ['expired ID token', () => (h.cis2.tamper = { exp: -3600, iat: -7200 }), /"exp"/],
      ['ID token expired just beyond the 30 s tolerance', () => (h.cis2.tamper = { exp: -45 }), /"exp"/],
      ['signature by a key not in the JWKS', () => (h.cis2.tamper = { sign: 'foreign' }), /signature/],
      ['forged signature under the current kid', () => (h.cis2.tamper = { sign: 'forged' }), /signature verification failed/],
      ['alg none', () => (h.cis2.tamper = { sign: 'none' }), /"alg"/],
      ['an algorithm other than the registered RS256', () => (h.cis2.tamper = { alg: 'RS512' }), /"alg"/],
      ['the upstream refuses the login', () => (h.cis2.defaultPersona = undefined), /access_denied/],
    ];
    for (const [name, arrange, reason] of cases) {
      it(name, async () => {
        const before = await h.counts();
        const mark = h.logs.length;
        arrange();
        const persona = name === 'the upstream refuses the login' ? 'nobody' : 'noRoles';
        const outcome = await h.attempt('cis2', persona);
        h.cis2.tamper = undefined;
        refused(outcome);
        expect(await h.counts()).toEqual(before);
        expect(h.reasons(mark).join(' | ')).toMatch(reason);
        if (outcome.kind === 'page') expect(outcome.html).not.toMatch(reason);
      });
    }

    it('state of no transaction (another state) on the callback', async () => {
      const before = await h.counts();
      const outcome = await h.attempt('cis2', 'noRoles', { onCallback: (u) => (u.searchParams.set('state', oc.randomState()), u) });
      refused(outcome);
      expect(await h.counts()).toEqual(before);
    });

    it('no state on the callback', async () => {
      const outcome = await h.attempt('cis2', 'noRoles', { onCallback: (u) => (u.searchParams.delete('state'), u) });
      refused(outcome);
    });

    it('code injection: the victim\'s code replayed into the attacker\'s login (PKCE and nonce are bound to the transaction)', async () => {
      const victim = await h.attempt('cis2', 'noRoles', { stopAtCallback: true });
      const stolen = new URL(victim.callback!).searchParams.get('code')!;
      const before = await h.counts();
      const outcome = await h.attempt('cis2', 'gp', { onCallback: (u) => (u.searchParams.set('code', stolen), u) });
      refused(outcome);
      expect(await h.counts()).toEqual(before);
    });

    it('a replayed callback (the transaction is single use)', async () => {
      const browser = new Browser();
      const first = await h.attempt('cis2', 'gp', { browser });
      expect(first.kind).toBe('client');
      const again = await browser.get(first.callback!);
      expect(again.status).toBe(401);
      expect(await again.text()).toContain(GENERIC);
    });
  });

  describe('key rotation at the upstream', () => {
    it('a key rotated in just before signing is fetched from the JWKS and the login succeeds', async () => {
      await h.fullLogin('cis2', 'gp');
      const fetches = h.cis2.received.jwks;
      const kid = await h.cis2.rotateKeys();
      const { claims } = await h.fullLogin('cis2', 'gp');
      expect(claims.acr).toBe('AAL3_ANY');
      expect(h.cis2.received.idTokenKids.at(-1)).toBe(kid);
      expect(h.cis2.received.jwks).toBe(fetches + 1);
      // The cached set now has the key: no further fetch.
      await h.fullLogin('cis2', 'gp');
      expect(h.cis2.received.jwks).toBe(fetches + 1);
      h.cis2.dropOldKeys();
      await h.fullLogin('cis2', 'gp');
    });

    it('NHS login rotation too (RS512)', async () => {
      await h.fullLogin('nhs-login', 'p9');
      const kid = await h.nhs.rotateKeys();
      await h.fullLogin('nhs-login', 'p9');
      expect(h.nhs.received.idTokenKids.at(-1)).toBe(kid);
    });
  });

  describe('an upstream that is down or slow: bounded time, an error page, never a hang', () => {
    it('token endpoint slower than the timeout -> 503 within the bound', async () => {
      h.cis2.tokenDelayMs = 10_000;
      try {
        const outcome = await h.attempt('cis2', 'gp');
        notResponding(outcome);
        expect(outcome.kind === 'page' && outcome.elapsedMs).toBeLessThan(4000);
      } finally {
        h.cis2.tokenDelayMs = 0;
      }
    });

    it('token endpoint answering 503 -> 503 page', async () => {
      h.cis2.tokenFailure = 503;
      try {
        notResponding(await h.attempt('cis2', 'gp'));
      } finally {
        h.cis2.tokenFailure = undefined;
      }
    });

    it('upstream gone between the redirect and the callback -> 503 at once', async () => {
      const outcome = await h.attempt('cis2', 'gp', {
        onCallback: async (u) => {
          await h.cis2.stop();
          return u;
        },
      });
      await h.cis2.restart();
      notResponding(outcome);
      expect(outcome.kind === 'page' && outcome.elapsedMs).toBeLessThan(2000);
      // Back up: logins work again.
      await h.fullLogin('cis2', 'gp');
    });

    it('upstream unreachable since start-up -> the broker started anyway; its logins get a 503 page', async () => {
      const outcome = await h.attempt('cis2-down', 'gp');
      expect(outcome.kind).toBe('page');
      if (outcome.kind === 'page') {
        expect(outcome.status).toBe(503);
        expect(outcome.html).toContain('not responding');
        expect(outcome.elapsedMs).toBeLessThan(2000);
      }
    });

    it('upstream that accepts connections and never answers -> 503 within the configured timeout', async () => {
      const outcome = await h.attempt('cis2-hole', 'gp');
      expect(outcome.kind === 'page' && outcome.status).toBe(503);
      expect(outcome.kind === 'page' && outcome.elapsedMs).toBeLessThan(3000);
    });
  });

  it('the ID token the client gets is the broker\'s, not the upstream\'s', async () => {
    const { claims } = await h.fullLogin('cis2', 'gp');
    expect(claims.iss).toBe(h.base);
    expect(claims.sub).not.toBe('555000000001');
  });
});
