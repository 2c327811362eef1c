// Catalogue section 5 (RFC 8693 token exchange and delegation) against the exchange fixture of
// test/exchange: openid-client's genericGrantRequest with private_key_jwt clients, broker and external
// subject tokens. Each refusal is the standard OAuth error AND leaves the store as it was (no token,
// grant, session or account row); each allowed exchange is audited with who, for whom, through whom,
// for what and with what scope.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { decodeJwt } from 'jose';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import type { TestBroker } from '../helpers/broker.ts';
import { clientKey, startTestBroker } from '../helpers/broker.ts';
import { DbCounter } from '../oidc/hostile/support.ts';
import { ADMIN_API, API, API2, API_B, AT, CIS2_AUD, IDT, JWT, TE, clientCredentialsToken, delegate, exchange, exchangeEntry, introspect, login, person, refused, signToken, startFixture, type Fixture, type Params } from '../exchange/helpers.ts';

let f: Fixture;
let db: DbCounter;
let patient: string;
let carer: string;
let webToken: string;

beforeAll(async () => {
  f = await startFixture();
  db = new DbCounter({ broker: f.broker } as unknown as TestBroker);
  const p = await login(f, 'tx-patient');
  patient = p.sub;
  webToken = p.access;
  carer = (await login(f, 'tx-carer')).sub;
}, 60_000);
afterAll(async () => {
  db?.close();
  await f?.close();
});

const claimsOf = (token: string) => decodeJwt(token) as Record<string, unknown>;
const now = () => Math.floor(Date.now() / 1000);
const partnerJwt = (claims: Record<string, unknown>) => signToken(f.keys.partner, { iss: f.host.issuer('partner'), aud: f.base, sub: 'partner-user', ...claims });

/** An exchange that must be refused with `error` and must change nothing in the store. */
async function refusedCleanly(clientId: string, params: Params, error: string, description?: RegExp) {
  const before = db.snapshot();
  const e = await refused(f, clientId, params);
  expect(e.error, `${JSON.stringify(params).slice(0, 200)}: ${e.error_description}`).toBe(error);
  if (description) expect(e.error_description).toMatch(description);
  expect(db.snapshot()).toEqual(before);
  return e;
}

describe('TX-01 scope: only down-scoping', () => {
  it('[P] TX-01 a narrower scope is granted exactly', async () => {
    const r = await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' });
    expect(r.scope).toBe('patient/Patient.rs');
    expect(claimsOf(r.access_token).scope).toBe('patient/Patient.rs');
  });

  it('TX-01 a scope wider than the subject token\'s, one the rule does not allow, or one the resource does not have: invalid_scope, nothing issued', async () => {
    const narrow = (await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' })).access_token;
    await refusedCleanly('svc', { subject_token: narrow, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs user/Patient.rs' }, 'invalid_scope', /wider than the subject token's scope/);
    await refusedCleanly('svc', { subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'user/Patient.cruds' }, 'invalid_scope');
    await refusedCleanly('svc', { subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs admin' }, 'invalid_scope');
    // A client-credentials token has no patient scope to narrow from.
    const cc = await clientCredentialsToken(f, 'svc', API);
    await refusedCleanly('svc', { subject_token: cc, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' }, 'invalid_scope');
  });
});

describe('TX-02 targets: every audience and resource is authorised', () => {
  it('TX-02 a forbidden target, alone or repeated beside an allowed one in either order and either parameter: invalid_target, nothing issued', async () => {
    const targets: Params[] = [
      { resource: ADMIN_API },
      { audience: ADMIN_API },
      { resource: [API2, ADMIN_API] },
      { resource: [ADMIN_API, API2] },
      { audience: [API2, ADMIN_API] },
      { resource: API2, audience: ADMIN_API },
      { audience: API2, resource: ADMIN_API },
      { resource: API_B },
      { resource: 'https://unknown.test' },
      { audience: 'admin-api' },
    ];
    for (const t of targets) await refusedCleanly('svc', { subject_token: webToken, subject_token_type: AT, ...t }, 'invalid_target');
  });

  it('[P] TX-02 an allowed target named in both parameters is one target', async () => {
    const r = await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2, audience: API2 });
    expect(claimsOf(r.access_token).aud).toBe(API2);
  });
});

describe('TX-04 public clients', () => {
  it('TX-04 a public client cannot be given the grant: the policy refuses it at start-up', () => {
    const key = { kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' };
    const attempt = () => parseConfig(
      {
        issuer: 'https://broker.test',
        trustProxy: true,
        resources: [{ identifier: API2, scopes: ['patient/Patient.rs'] }],
        clients: [
          { client_id: 'pub', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', TE], redirect_uris: ['https://app.test/cb'], resources: [API2] },
          { client_id: 'svc', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [key] }, grant_types: [TE], resources: [API2] },
        ],
        exchange: { rules: [{ id: 'r', clients: ['pub'], subjectIssuers: ['self'], subjectTokenTypes: ['access_token'], resources: [API2], scopes: ['patient/Patient.rs'] }] },
      },
      {},
    );
    expect(attempt).toThrow(ConfigError);
    try {
      attempt();
    } catch (err) {
      expect((err as ConfigError).problems.join('\n')).toMatch(/client pub is public/);
    }
  });

  it('TX-04 a public client calling the token endpoint with the grant gets an OAuth error and no token', async () => {
    const tb = await startTestBroker({ svcKey: await clientKey() });
    const counter = new DbCounter(tb);
    try {
      const before = counter.snapshot();
      const res = await fetch(`${tb.base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: TE, client_id: 'public-app', subject_token: webToken, subject_token_type: AT, resource: API }) });
      const body = (await res.json()) as Record<string, unknown>;
      // oidc-provider answers a grant the client is not registered for with invalid_request.
      expect(res.status).toBe(400);
      expect(['unauthorized_client', 'invalid_request'], JSON.stringify(body)).toContain(body.error);
      expect(body.error_description).toMatch(/grant type is not allowed for this client/);
      expect(body.access_token).toBeUndefined();
      expect(counter.snapshot()).toEqual(before);
    } finally {
      counter.close();
      await tb.close();
    }
  });
});

describe('TX-05 subject tokens that must not be accepted', () => {
  it('TX-05 revoked, expired, from an untrusted issuer, or of the wrong declared type: invalid_request or invalid_grant, nothing issued', async () => {
    const revoked = await login(f, 'tx-revoked');
    const { tokenRevocation } = await import('openid-client');
    await tokenRevocation(f.web, revoked.access);
    const cis2 = (claims: Record<string, unknown>, expiresIn?: number) => signToken(f.keys.cis2, { iss: f.host.issuer('cis2'), aud: CIS2_AUD, sub: '555057896106', authentication_assurance_level: '3', auth_time: now() - 60, ...claims }, { expiresIn });
    const cases: Array<[string, Params, RegExp]> = [
      ['revoked broker token', { subject_token: revoked.access, subject_token_type: AT }, /revoked/],
      ['expired CIS2 ID token', { subject_token: await cis2({}, -120), subject_token_type: IDT }, /expired/],
      ['untrusted issuer', { subject_token: await signToken(f.keys.cis2, { iss: 'https://evil.test', aud: CIS2_AUD, sub: 'x' }), subject_token_type: IDT }, /issuer is not trusted/],
      ['ID token declared as an access token', { subject_token: await cis2({}), subject_token_type: AT }, /not trusted for access_token/],
      ['broker access token declared as an ID token', { subject_token: webToken, subject_token_type: IDT }, /declared as id_token/],
      ['broker access token declared as a jwt', { subject_token: webToken, subject_token_type: JWT }, /as jwt/],
    ];
    for (const [name, params, message] of cases) {
      const before = db.snapshot();
      const e = await refused(f, 'svc', { resource: API2, ...params });
      expect(['invalid_request', 'invalid_grant'], `${name}: ${e.error_description}`).toContain(e.error);
      expect(e.error_description, name).toMatch(message);
      expect(db.snapshot(), name).toEqual(before);
    }
  });
});

describe('TX-07 actor tokens and may_act', () => {
  it('TX-07 an actor the subject token\'s may_act does not name, or a subject token without may_act: refused, nothing issued', async () => {
    const actor = await partnerJwt({ sub: 'partner-actor' });
    await refusedCleanly('svc', { subject_token: await partnerJwt({ may_act: { sub: 'someone-else' } }), subject_token_type: JWT, actor_token: actor, actor_token_type: JWT, resource: API2 }, 'invalid_request', /may_act does not name the actor/);
    await refusedCleanly('svc', { subject_token: await partnerJwt({}), subject_token_type: JWT, actor_token: actor, actor_token_type: JWT, resource: API2 }, 'invalid_request', /may_act/);
    // may_act naming the actor at another issuer is not the actor.
    await refusedCleanly('svc', { subject_token: await partnerJwt({ may_act: { sub: 'partner-actor', iss: 'https://elsewhere.test' } }), subject_token_type: JWT, actor_token: actor, actor_token_type: JWT, resource: API2 }, 'invalid_request', /may_act/);
  });

  it('[P] TX-07 may_act naming the actor (and its issuer) lets it act', async () => {
    const r = await exchange(f, 'svc', { subject_token: await partnerJwt({ may_act: { sub: 'partner-actor', iss: f.host.issuer('partner') } }), subject_token_type: JWT, actor_token: await partnerJwt({ sub: 'partner-actor' }), actor_token_type: JWT, resource: API2 });
    expect(claimsOf(r.access_token).act).toMatchObject({ sub: 'partner-actor' });
  });
});

describe('TX-08 the act chain is built by the broker', () => {
  it('TX-08 an act request parameter is ignored: the chain names only the authenticated caller', async () => {
    const r = await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2, act: JSON.stringify({ sub: 'admin', act: { sub: 'root' } }), actor: 'admin' });
    expect(claimsOf(r.access_token).act).toEqual({ sub: 'svc' });
  });

  it('TX-08 a broker token whose act chain was edited to add a privileged prior actor fails its signature: refused, nothing issued', async () => {
    const consent = await delegate(f, patient, carer, ['patient/Patient.rs']);
    const { access } = await login(f, 'tx-carer', consent.id);
    const [h, p, s] = access.split('.');
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    payload.act = { sub: (payload.act as { sub: string }).sub, act: { sub: 'privileged-admin' } };
    const forged = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`;
    await refusedCleanly('svc', { subject_token: forged, subject_token_type: AT, resource: API2 }, 'invalid_request', /signature/);
  });

  it('TX-08 an actor token carrying its own act chain is refused; the current actor is always the top-level act', async () => {
    await refusedCleanly('svc', { subject_token: await partnerJwt({ may_act: { sub: 'partner-actor' } }), subject_token_type: JWT, actor_token: await partnerJwt({ sub: 'partner-actor', act: { sub: 'privileged-admin' } }), actor_token_type: JWT, resource: API2 }, 'invalid_request', /must not carry an act claim/);
    const consent = await delegate(f, patient, carer, ['patient/Patient.rs']);
    const { access } = await login(f, 'tx-carer', consent.id);
    const once = await exchange(f, 'svc', { subject_token: access, subject_token_type: AT, resource: API2 });
    const twice = await exchange(f, 'svc2', { subject_token: once.access_token, subject_token_type: AT, resource: API2 }).catch(() => undefined);
    // svc2's rule forbids delegated tokens; svc's own second hop keeps the chain, newest actor first.
    expect(twice).toBeUndefined();
    const again = await exchange(f, 'svc', { subject_token: once.access_token, subject_token_type: AT, resource: API2 });
    expect(claimsOf(again.access_token).act).toEqual({ sub: 'svc', act: { sub: 'svc', act: { sub: carer } } });
  });
});

describe('TX-10 tenants', () => {
  it('TX-10 a tenant-B subject token for a tenant-A client or audience, and tenant B\'s issuer at tenant A: refused, nothing issued', async () => {
    const b = await clientCredentialsToken(f, 'cc-b', API_B);
    await refusedCleanly('svc', { subject_token: b, subject_token_type: AT, resource: API2 }, 'invalid_request', /tenant/);
    const fromIdpB = await signToken(f.keys.tenantB, { iss: 'https://idp-b.test', aud: f.base, sub: 'b-user' });
    await refusedCleanly('svc', { subject_token: fromIdpB, subject_token_type: JWT, resource: API2 }, 'invalid_request');
    // Tenant B's client asking for a tenant-A audience with its own token.
    await refusedCleanly('svc-b', { subject_token: b, subject_token_type: AT, resource: API2 }, 'invalid_target');
    // And tenant A's user token offered by tenant B's client.
    await refusedCleanly('svc-b', { subject_token: webToken, subject_token_type: AT, resource: API_B }, 'invalid_request', /tenant/);
  });
});

describe('TX-11 chained exchanges', () => {
  it('TX-11 each hop ends no later than the one before; the chain stops at the rule\'s depth', async () => {
    const { access } = await login(f, 'tx-chain');
    let token = access;
    let exp = claimsOf(access).exp as number;
    const chain: string[] = [];
    for (let depth = 1; depth <= 3; depth++) {
      const r = await exchange(f, 'svc', { subject_token: token, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' });
      const c = claimsOf(r.access_token);
      expect(c.exp as number, `hop ${depth}`).toBeLessThanOrEqual(exp);
      expect(r.expires_in).toBeLessThanOrEqual(exp - now() + 1);
      exp = c.exp as number;
      token = r.access_token;
      chain.push(JSON.stringify(c.act));
    }
    expect(chain.at(-1)).toBe(JSON.stringify({ sub: 'svc', act: { sub: 'svc', act: { sub: 'svc' } } }));
    await refusedCleanly('svc', { subject_token: token, subject_token_type: AT, resource: API2 }, 'invalid_request', /4 deep; rule svc-self allows 3.*check act_depth/);
  });

  it('TX-11 a subject token about to expire gives a token that expires with it, not later', async () => {
    const r = await exchange(f, 'svc', { subject_token: await partnerJwt({ may_act: { sub: 'partner-actor' } }), subject_token_type: JWT, actor_token: await signToken(f.keys.partner, { iss: f.host.issuer('partner'), aud: f.base, sub: 'partner-actor' }, { expiresIn: 20 }), actor_token_type: JWT, resource: API2 });
    expect(r.expires_in).toBeLessThanOrEqual(20);
    expect(claimsOf(r.access_token).exp as number).toBeLessThanOrEqual(now() + 20);
  });
});

describe('TX-13 consent revocation cascades', () => {
  it('TX-13 ending the consent makes the delegated token, its exchanged token and the exchange of that inactive; none can be exchanged again', async () => {
    const consent = await delegate(f, patient, carer, ['patient/Patient.rs']);
    const { access } = await login(f, 'tx-carer', consent.id);
    const first = await exchange(f, 'svc', { subject_token: access, subject_token_type: AT, resource: API2 });
    const second = await exchange(f, 'svc', { subject_token: first.access_token, subject_token_type: AT, resource: API2 });
    for (const t of [first.access_token, second.access_token]) expect(await introspect(f, t)).toMatchObject({ active: true, consent_id: consent.id });
    await f.broker.delegation.end(person(patient), consent.id, 'ROLE_DEACTIVATED_PATIENT_REQUEST');
    for (const t of [access, first.access_token, second.access_token]) {
      expect((await introspect(f, t)).active).toBe(false);
      await refusedCleanly('svc', { subject_token: t, subject_token_type: AT, resource: API2 }, 'invalid_grant', /consent/);
    }
  });

  it('TX-13 revoking the user\'s grant to the web client (its refresh token) ends the exchanged tokens too', async () => {
    const u = await login(f, 'tx-grant');
    const r = await exchange(f, 'svc', { subject_token: u.access, subject_token_type: AT, resource: API2 });
    const { tokenRevocation } = await import('openid-client');
    await tokenRevocation(f.web, u.tokens.refresh_token!);
    expect(await introspect(f, r.access_token)).toEqual({ active: false });
    await refusedCleanly('svc', { subject_token: r.access_token, subject_token_type: AT, resource: API2 }, 'invalid_grant');
  });
});

describe('TX-14 refresh tokens', () => {
  it('TX-14 requested_token_type refresh_token is refused (invalid_request), nothing issued; an exchange never returns one', async () => {
    await refusedCleanly('svc', { subject_token: webToken, subject_token_type: AT, resource: API2, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }, 'invalid_request', /refresh_token is not issued/);
    const r = await exchange(f, 'svc', { subject_token: webToken, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' });
    expect(r.refresh_token).toBeUndefined();
  });
});

describe('TX-17 every successful exchange', () => {
  it('[P] TX-17 issued_token_type is the access token type; the audit entry names client, subject, actor chain, consent, audience and scope', async () => {
    const consent = await delegate(f, patient, carer, ['patient/Patient.rs']);
    const { access } = await login(f, 'tx-carer', consent.id);
    const r = await exchange(f, 'svc', { subject_token: access, subject_token_type: AT, resource: API2, scope: 'patient/Patient.rs' });
    expect(r.issued_token_type).toBe(AT);
    expect(r.token_type).toBe('bearer');
    const entry = await exchangeEntry(f, (e) => e.consent === consent.id && e.details.decision === 'allow');
    const opened = f.broker.ledger.open(entry);
    expect(opened).toMatchObject({ type: 'token.exchanged', outcome: 'success', client: 'svc', subject: patient, actor: 'svc', consent: consent.id });
    expect(entry.details).toMatchObject({ aud: API2, scope: 'patient/Patient.rs', act: ['svc', carer], subject_token_type: 'access_token', refresh_token_issued: false });
    expect(entry.details.token_ref).toBeTruthy();
  });
});
