// The exchange policy on its own (src/exchange is pure): every check with an allow and a deny case,
// the pipeline's choice of rule, explain output, the CLI's decode-only explain, and start-up validation
// of the policy's references.
import { describe, it, expect } from 'vitest';
import { SignJWT, generateKeyPair } from 'jose';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { exchangeConfigProblems } from '../../src/config/exchange.ts';
import { RULE_CHECKS, REQUEST_CHECKS, actDepth, compilePolicy, evaluate, explain, explainExchange, innermostActor, innermostActorOf, parseActClaim, type ExchangeRequest, type PresentedToken } from '../../src/exchange/index.ts';

const ISSUER = 'https://broker.test';
const A = 'https://a.test';
const B = 'https://b.test';
const C = 'https://c.test';
const NOW = 1_800_000_000;
const key = { kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' };
const TE = 'urn:ietf:params:oauth:grant-type:token-exchange' as const;

function input(rules: RuleInput[], extra: Partial<NonNullable<ConfigInput['exchange']>> = {}): ConfigInput {
  const svc = (client_id: string, resources: string[]) => ({ client_id, token_endpoint_auth_method: 'private_key_jwt' as const, jwks: { keys: [key] }, grant_types: [TE], resources });
  return {
    issuer: ISSUER,
    trustProxy: true,
    resources: [
      { identifier: A, scopes: ['a.read', 'a.write', 'shared'], accessTokenTTL: 900 },
      { identifier: B, scopes: ['b.read', 'shared'], accessTokenTTL: 60 },
      { identifier: C, scopes: ['c.read'] },
    ],
    clients: [
      svc('svc', [A, B, C]),
      svc('svc-x', [A]),
      svc('norules', [A]),
      { client_id: 'web', client_secret: 'web-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: ['https://web.test/cb'], resources: [A] },
      { client_id: 'pub', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], redirect_uris: ['https://app.test/cb'] },
    ],
    exchange: {
      issuers: [{ id: 'cis2', kind: 'cis2', issuer: 'https://cis2.test', jwks: { keys: [key] }, audiences: ['rp'], algorithms: ['ES256'] }],
      ...extra,
      rules,
    },
  };
}

type RuleInput = NonNullable<NonNullable<ConfigInput['exchange']>['rules']>[number];

const base: RuleInput = { id: 'r1', clients: ['svc'], subjectIssuers: ['self', 'cis2'], subjectTokenTypes: ['access_token' as const, 'id_token' as const], resources: [A, B], scopes: ['a.read', 'a.write', 'b.read', 'shared'] };

function policyOf(rules: RuleInput[] = [base], extra: Partial<NonNullable<ConfigInput['exchange']>> = {}) {
  return compilePolicy(parseConfig(input(rules, extra), {}));
}

const request = (overrides: Partial<ExchangeRequest> = {}): ExchangeRequest => ({ clientId: 'svc', brokerIssuer: ISSUER, subjectTokenType: 'access_token', resources: [A], audiences: [], ...overrides });

const token = (overrides: Partial<PresentedToken> = {}): PresentedToken => ({
  issuer: 'self',
  issuerUrl: ISSUER,
  kind: 'self',
  tokenType: 'access_token',
  sub: 'user-1',
  clientId: 'web',
  audiences: [A],
  scopes: ['a.read', 'a.write', 'shared'],
  exp: NOW + 600,
  iat: NOW - 10,
  ref: 'ref',
  assurance: { aal: 2, proofing: 'P9' },
  carried: { acr: 'P9.Cp.Cd' },
  verified: true,
  hasAct: false,
  ...overrides,
});

function decide(req: Partial<ExchangeRequest>, subject: Partial<PresentedToken> = {}, rules: RuleInput[] = [base], actor?: Partial<PresentedToken>, extra: Partial<NonNullable<ConfigInput['exchange']>> = {}) {
  return evaluate(request(req), token(subject), actor ? token({ ...actor }) : undefined, policyOf(rules, extra), NOW);
}

function denied(d: ReturnType<typeof decide>, check: string, error?: string): void {
  expect(d.decision, JSON.stringify(d)).toBe('deny');
  if (d.decision === 'deny') {
    expect(d.check).toBe(check);
    if (error) expect(d.error).toBe(error);
    expect(d.error_description).toContain(`check ${check}`);
  }
}

function allowed(d: ReturnType<typeof decide>) {
  expect(d.decision, JSON.stringify(d)).toBe('allow');
  if (d.decision !== 'allow') throw new Error('denied');
  return d.token;
}

describe('request checks', () => {
  it('client: a client with rules passes; no rules → unauthorized_client; public → invalid_client', () => {
    allowed(decide({}));
    denied(decide({ clientId: 'norules' }), 'client', 'unauthorized_client');
    denied(decide({ clientId: 'pub' }), 'client', 'invalid_client');
  });
  it('requested_token_type: access token allowed; refresh token and others refused', () => {
    allowed(decide({ requestedTokenType: 'urn:ietf:params:oauth:token-type:access_token' }));
    denied(decide({ requestedTokenType: 'urn:ietf:params:oauth:token-type:refresh_token' }), 'requested_token_type', 'invalid_request');
    denied(decide({ requestedTokenType: 'urn:ietf:params:oauth:token-type:jwt' }), 'requested_token_type');
  });
});

describe('rule checks: one allow and one deny each', () => {
  it('subject_issuer', () => {
    allowed(decide({}, { issuer: 'cis2', kind: 'cis2', tokenType: 'id_token', scopes: undefined }));
    denied(decide({}, { issuer: 'nhs-login' }), 'subject_issuer', 'invalid_request');
  });
  it('subject_token_type', () => {
    allowed(decide({}, { tokenType: 'access_token' }));
    denied(decide({}, { tokenType: 'jwt' }), 'subject_token_type');
  });
  it('subject_client (broker tokens only)', () => {
    const rules = [{ ...base, subjectClients: ['web'] }];
    allowed(decide({}, { clientId: 'web' }, rules));
    denied(decide({}, { clientId: 'svc-x' }, rules), 'subject_client');
    allowed(decide({}, { issuer: 'cis2', kind: 'cis2', clientId: 'rp', tokenType: 'id_token', scopes: undefined }, rules));
  });
  it('subject_audience (broker tokens only)', () => {
    const rules = [{ ...base, subjectAudiences: [A] }];
    allowed(decide({}, { audiences: [A] }, rules));
    denied(decide({}, { audiences: [B] }, rules), 'subject_audience');
    allowed(decide({}, { issuer: 'cis2', kind: 'cis2', audiences: ['rp'], tokenType: 'id_token', scopes: undefined }, rules));
  });
  it('tenant', () => {
    const tenants = { tenants: [{ id: 't1', clients: ['svc', 'web'], resources: [A] }, { id: 't2', clients: ['svc-x'], resources: [B], issuers: ['cis2'] }] };
    allowed(decide({}, { clientId: 'web' }, [base], undefined, tenants));
    denied(decide({}, { clientId: 'svc-x' }, [base], undefined, tenants), 'tenant');
    denied(decide({}, { issuer: 'cis2', kind: 'cis2', tokenType: 'id_token', scopes: undefined }, [base], undefined, tenants), 'tenant');
    denied(decide({ resources: [B] }, { clientId: 'web' }, [base], undefined, tenants), 'target', 'invalid_target');
  });
  it('delegation: forbid (default) / allow / require', () => {
    denied(decide({}, { consentId: 'c1', act: { sub: 'carer' } }), 'delegation');
    allowed(decide({}, { consentId: 'c1', act: { sub: 'carer' } }, [{ ...base, delegated: 'allow' }]));
    allowed(decide({}, { consentId: 'c1', act: { sub: 'carer' } }, [{ ...base, delegated: 'require' }]));
    denied(decide({}, {}, [{ ...base, delegated: 'require' }]), 'delegation');
  });
  it('assurance: aal and proofing minimums', () => {
    allowed(decide({}, { assurance: { aal: 3 } }, [{ ...base, minimumAssurance: { aal: 3 } }]));
    denied(decide({}, { assurance: { aal: 2 } }, [{ ...base, minimumAssurance: { aal: 3 } }]), 'assurance');
    allowed(decide({}, { assurance: { proofing: 'P9' } }, [{ ...base, minimumAssurance: { proofing: 'P9' } }]));
    denied(decide({}, { assurance: { proofing: 'P5' } }, [{ ...base, minimumAssurance: { proofing: 'P9' } }]), 'assurance');
    denied(decide({}, { assurance: {} }, [{ ...base, minimumAssurance: { proofing: 'P5' } }]), 'assurance');
  });
  it('actor: forbidden (default), optional, required; issuer and type of the actor; an actor token with its own act', () => {
    const actor = { sub: 'staff-1', clientId: 'web' };
    denied(decide({}, {}, [base], actor), 'actor');
    const optional = [{ ...base, actor: 'optional' as const, actorWithoutMayAct: true }];
    allowed(decide({}, {}, optional));
    allowed(decide({}, {}, optional, actor));
    denied(decide({}, {}, [{ ...base, actor: 'required' as const, actorWithoutMayAct: true }]), 'actor');
    denied(decide({}, {}, [{ ...optional[0], actorIssuers: ['cis2'] }], actor), 'actor');
    denied(decide({}, {}, [{ ...optional[0], actorTokenTypes: ['id_token' as const] }], actor), 'actor');
    denied(decide({}, {}, optional, { ...actor, hasAct: true, act: { sub: 'admin' } }), 'actor');
  });
  it('may_act: names the caller or the actor; an actor token needs may_act unless the rule says otherwise', () => {
    allowed(decide({}, { mayAct: { sub: 'svc', iss: ISSUER } }));
    denied(decide({}, { mayAct: { sub: 'svc-x' } }), 'may_act');
    denied(decide({}, { mayAct: { sub: 'svc', iss: 'https://elsewhere.test' } }), 'may_act');
    const rule = [{ ...base, actor: 'optional' as const }];
    denied(decide({}, {}, rule, { sub: 'staff-1' }), 'may_act');
    allowed(decide({}, { mayAct: { sub: 'staff-1', iss: ISSUER } }, rule, { sub: 'staff-1' }));
    allowed(decide({}, {}, [{ ...rule[0], actorWithoutMayAct: true }], { sub: 'staff-1' }));
  });
  it('target: one allowed resource (resource or audience); every repeated value checked; default when the rule has one', () => {
    expect(allowed(decide({ resources: [], audiences: [B] })).resource).toBe(B);
    denied(decide({ resources: [C] }), 'target', 'invalid_target');
    denied(decide({ resources: [A, B] }), 'target', 'invalid_target');
    denied(decide({ resources: [A], audiences: [C] }), 'target', 'invalid_target');
    denied(decide({ resources: ['https://unknown.test'] }), 'target', 'invalid_target');
    denied(decide({ resources: [] }), 'target', 'invalid_target');
    expect(allowed(decide({ resources: [] }, {}, [{ ...base, resources: [A], scopes: ['a.read'] }])).resource).toBe(A);
    expect(allowed(decide({ resources: [A], audiences: [A] })).resource).toBe(A);
  });
  it('scope: request ∩ rule ∩ resource ∩ subject; wider is invalid_scope; nothing left is invalid_scope', () => {
    expect(allowed(decide({})).scopes.sort()).toEqual(['a.read', 'a.write', 'shared']);
    expect(allowed(decide({ scopes: ['a.read'] })).scopes).toEqual(['a.read']);
    denied(decide({ scopes: ['c.read'] }), 'scope', 'invalid_scope');
    denied(decide({ resources: [B], scopes: ['a.read'] }), 'scope', 'invalid_scope');
    denied(decide({ scopes: ['a.read'] }, { scopes: ['shared'] }), 'scope', 'invalid_scope');
    denied(decide({ resources: [B] }, { scopes: ['a.read'] }), 'scope', 'invalid_scope');
    // ID tokens carry no scope: the rule alone caps them.
    expect(allowed(decide({ resources: [B] }, { issuer: 'cis2', kind: 'cis2', tokenType: 'id_token', scopes: undefined })).scopes.sort()).toEqual(['b.read', 'shared']);
  });
  it('downscopeOnly: false lets the rule grant what the subject token lacks', () => {
    denied(decide({ scopes: ['a.write'] }, { scopes: ['a.read'] }), 'scope');
    expect(allowed(decide({ scopes: ['a.write'] }, { scopes: ['a.read'] }, [{ ...base, downscopeOnly: false }])).scopes).toEqual(['a.write']);
  });
  it('act_depth: the caller in front of the subject chain, capped', () => {
    expect(allowed(decide({}, { act: { sub: 'carer' }, consentId: 'c', }, [{ ...base, delegated: 'allow' }])).act).toEqual({ sub: 'svc', act: { sub: 'carer' } });
    denied(decide({}, { act: { sub: 'x', act: { sub: 'y' } } }, [{ ...base, maxActDepth: 2 }]), 'act_depth');
    expect(allowed(decide({}, { act: { sub: 'x' } }, [{ ...base, maxActDepth: 2 }])).act).toEqual({ sub: 'svc', act: { sub: 'x' } });
    const withActor = allowed(decide({}, { mayAct: { sub: 'staff', iss: 'https://cis2.test' } }, [{ ...base, actor: 'optional' as const, actorIssuers: ['cis2'], actorTokenTypes: ['id_token' as const] }], { sub: 'staff', issuer: 'cis2', issuerUrl: 'https://cis2.test', kind: 'cis2', tokenType: 'id_token' }));
    expect(withActor.act).toEqual({ sub: 'staff', iss: 'https://cis2.test', act: { sub: 'svc' } });
  });
  it('lifetime: the smallest of rule, resource, subject, actor and the delegation cap', () => {
    expect(allowed(decide({})).lifetime).toBe(300);
    expect(allowed(decide({ resources: [B] })).lifetime).toBe(60);
    expect(allowed(decide({}, { exp: NOW + 42 })).lifetime).toBe(42);
    expect(allowed(decide({}, { consentId: 'c', act: { sub: 'carer' } }, [{ ...base, delegated: 'allow', tokenLifetime: 3600 }])).lifetime).toBe(300);
    expect(allowed(decide({}, {}, [{ ...base, tokenLifetime: 30 }])).lifetime).toBe(30);
    denied(decide({}, { exp: NOW }), 'lifetime');
  });
  it('every check is listed in the pipeline, once', () => {
    const names = [...REQUEST_CHECKS, ...RULE_CHECKS].map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(['client', 'requested_token_type', 'subject_issuer', 'subject_token_type', 'tenant', 'subject_client', 'subject_audience', 'delegation', 'assurance', 'actor', 'may_act', 'target', 'scope', 'act_depth', 'lifetime']);
  });
});

describe('pipeline', () => {
  const r2: RuleInput = { ...base, id: 'r2', resources: [C], scopes: ['c.read'], downscopeOnly: false };
  it('the first rule that allows wins; claims carried: assurance, consent, origin grant, subject issuer', () => {
    const t = allowed(decide({ resources: [C] }, { originGrantId: 'g1' }, [base, r2]));
    expect(t).toMatchObject({ rule: 'r2', resource: C, sub: 'user-1', claims: { acr: 'P9.Cp.Cd', origin_grant_id: 'g1' } });
    expect(allowed(decide({}, { issuer: 'cis2', kind: 'cis2', issuerUrl: 'https://cis2.test', tokenType: 'id_token', scopes: undefined }, [base])).claims.subject_issuer).toBe('https://cis2.test');
  });
  it('denied by every rule: the failure of the rule that got furthest is reported', () => {
    const d = decide({ resources: [C], scopes: ['a.read'] }, {}, [base, r2]);
    denied(d, 'scope', 'invalid_scope');
    expect(d.decision === 'deny' && d.rule).toBe('r2');
  });
  it('explain lists every rule with every check; allRules goes on after the allowing rule', () => {
    const e = explain(request({ resources: [A] }), token(), undefined, policyOf([base, r2]), { now: NOW, allRules: true });
    expect(e.decision.decision).toBe('allow');
    expect(e.request.map((c) => c.outcome)).toEqual(['pass', 'pass']);
    expect(e.rules.map((r) => [r.rule, r.outcome])).toEqual([['r1', 'allow'], ['r2', 'deny']]);
    expect(e.rules[1].checks.find((c) => c.outcome === 'fail')).toMatchObject({ check: 'target', error: 'invalid_target' });
    expect(e.rules[1].checks.at(-1)).toEqual({ check: 'lifetime', outcome: 'not evaluated' });
    expect(e.rules[0].checks.every((c) => c.outcome === 'pass' && typeof c.reason === 'string')).toBe(true);
    expect(explain(request({ resources: [A] }), token(), undefined, policyOf([base, r2]), { now: NOW }).rules).toHaveLength(1);
  });
});

describe('act chains', () => {
  it('parse, depth, innermost actor; malformed or too deep chains are invalid', () => {
    const chain = { sub: 'svc2', act: { sub: 'svc', act: { sub: 'carer', extra: 'dropped' } } };
    expect(parseActClaim(chain)).toEqual({ sub: 'svc2', act: { sub: 'svc', act: { sub: 'carer' } } });
    expect(actDepth({ sub: 'a', act: { sub: 'b' } })).toBe(2);
    expect(innermostActor({ sub: 'a', act: { sub: 'b' } })).toBe('b');
    expect(innermostActorOf(chain)).toBe('carer');
    expect(innermostActorOf({ sub: 1 })).toBeUndefined();
    expect(parseActClaim({ act: { sub: 'x' } })).toBe('invalid');
    let deep: Record<string, unknown> = { sub: 'x' };
    for (let i = 0; i < 20; i++) deep = { sub: `x${i}`, act: deep };
    expect(parseActClaim(deep)).toBe('invalid');
  });
});

describe('configuration', () => {
  const problems = (cfg: ConfigInput): string[] => {
    try {
      const parsed = parseConfig(cfg, {});
      return exchangeConfigProblems(parsed, {});
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
  };
  it('a valid policy has no problems; the defaults are safe', () => {
    expect(problems(input([base]))).toEqual([]);
    const rule = parseConfig(input([base]), {}).exchange.rules[0];
    expect(rule).toMatchObject({ delegated: 'forbid', actor: 'forbidden', downscopeOnly: true, maxActDepth: 3, tokenLifetime: 300, actorWithoutMayAct: false });
    expect(parseConfig({}, {}).exchange).toMatchObject({ rules: [], issuers: [], allowInsecureJwksUris: false });
  });
  it('unknown clients, resources, scopes and issuers are errors naming the path', () => {
    expect(problems(input([{ ...base, clients: ['svc', 'ghost'] }]))).toContain('exchange.rules[0].clients[1]: unknown client ghost');
    expect(problems(input([{ ...base, resources: [A, 'https://ghost.test'] }]))).toContain('exchange.rules[0].resources[1]: unknown resource https://ghost.test');
    expect(problems(input([{ ...base, scopes: ['a.read', 'c.read'] }]))).toContain("exchange.rules[0].scopes[1]: c.read is not a scope of any of the rule's resources");
    expect(problems(input([{ ...base, subjectAudiences: ['https://ghost.test'] }]))).toContain('exchange.rules[0].subjectAudiences[0]: unknown resource https://ghost.test');
    expect(problems(input([{ ...base, subjectIssuers: ['self', 'ghost'] }]))).toContain('exchange.rules[0].subjectIssuers[1]: unknown issuer ghost');
    expect(problems(input([{ ...base, clients: ['svc-x'] }]))).toContain('exchange.rules[0].resources[1]: https://b.test is not among the resources of client svc-x');
    expect(problems(input([{ ...base, clients: ['pub'] }])).join('\n')).toMatch(/exchange.rules\[0\].clients\[0\]: client pub does not list .*token-exchange|client pub is public/);
    expect(problems(input([base, { ...base }]))).toContain('exchange.rules[1].id: duplicate rule id r1');
    expect(problems(input([base], { tenants: [{ id: 't', clients: ['ghost'], resources: [], issuers: [] }] }))).toContain('exchange.tenants[0].clients[0]: unknown client ghost');
  });
  it('issuers: https JWKS only unless the test switch is on, and never with NODE_ENV=production', () => {
    const http = { issuers: [{ id: 'x', kind: 'generic' as const, issuer: 'https://x.test', jwks_uri: 'http://127.0.0.1:1/jwks', audiences: ['rp'] }] };
    const selfOnly = [{ ...base, subjectIssuers: ['self'] }];
    expect(problems(input(selfOnly, http))).toContain('exchange.issuers[0].jwks_uri: must be https (allowInsecureJwksUris is for tests only)');
    const allowed = parseConfig(input(selfOnly, { ...http, allowInsecureJwksUris: true }), {});
    expect(exchangeConfigProblems(allowed, {})).toEqual([]);
    expect(exchangeConfigProblems(allowed, { NODE_ENV: 'production' })).toContain('exchange.allowInsecureJwksUris: is for tests only and cannot be set with NODE_ENV=production');
    expect(problems(input(selfOnly, { issuers: [{ id: 'self', kind: 'generic', issuer: 'https://y.test', jwks: { keys: [key] }, audiences: ['rp'] }] })).join('\n')).toMatch(/reserved/);
    expect(problems(input(selfOnly, { issuers: [{ id: 'y', kind: 'generic', issuer: 'https://y.test', audiences: ['rp'] }] })).join('\n')).toMatch(/exactly one of jwks_uri and jwks/);
  });
});

describe('explainExchange (the CLI function: decode-only)', () => {
  it('explains a CIS2 ID token against the policy without verifying it, and says so', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const id = await new SignJWT({ iss: 'https://cis2.test', aud: 'rp', sub: 'staff-1', authentication_assurance_level: '3' }).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' }).setIssuedAt().setExpirationTime('5m').sign(privateKey);
    const config = parseConfig(input([{ ...base, minimumAssurance: { aal: 3 } }]), {});
    const out = await explainExchange(config, { subject_token: id, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token', resource: B }, 'svc');
    expect(out).toMatchObject({ client: 'svc', verified: false, decision: 'allow', rule: 'r1', token: { resource: B, act: ['svc'] }, subject: { issuer: 'cis2', assurance: { aal: 3 } } });
    expect(JSON.stringify(out)).not.toContain('staff-1');
    const expired = await new SignJWT({ iss: 'https://cis2.test', aud: 'rp', sub: 'staff-1' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuedAt(NOW - 4000).setExpirationTime(NOW - 3000).sign(privateKey);
    expect(await explainExchange(config, { subject_token: expired, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token', resource: B }, 'svc')).toMatchObject({ decision: 'deny', check: 'expiry', error: 'invalid_request' });
    expect(await explainExchange(config, { subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' }, 'svc')).toMatchObject({ decision: 'deny', check: 'params', error_description: 'Missing subject_token (check params)' });
    expect(await explainExchange(config, { subject_token: id, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token', resource: B }, 'norules')).toMatchObject({ decision: 'deny', check: 'client', error: 'unauthorized_client' });
  });
});
