import { checkActDepth } from './checks/check_act_depth.ts';
import { checkActor } from './checks/check_actor.ts';
import { checkAssurance } from './checks/check_assurance.ts';
import { checkClient } from './checks/check_client.ts';
import { checkDelegation } from './checks/check_delegation.ts';
import { checkLifetime } from './checks/check_lifetime.ts';
import { checkMayAct } from './checks/check_may_act.ts';
import { checkRequestedTokenType } from './checks/check_requested_token_type.ts';
import { checkScope } from './checks/check_scope.ts';
import { checkSubjectAudience } from './checks/check_subject_audience.ts';
import { checkSubjectClient } from './checks/check_subject_client.ts';
import { checkSubjectIssuer } from './checks/check_subject_issuer.ts';
import { checkSubjectTokenType } from './checks/check_subject_token_type.ts';
import { checkTarget } from './checks/check_target.ts';
import { checkTenant } from './checks/check_tenant.ts';
import type { Check, CheckTrace, CompiledPolicy, Decision, Denial, Draft, ExchangeRequest, Explanation, PresentedToken, RequestCheck, RuleTrace, TokenPlan } from './types.ts';

// The exchange policy as a pipeline, in the style of oidc-provider's check_*.js: request-level checks,
// then, for each rule naming the calling client (in configuration order), every check in turn until
// one fails. The first rule whose checks all pass allows the exchange. When none does, the failure
// reported is that of the rule that got furthest (ties: the earlier rule), since that is the rule the
// caller was most likely aiming for.

export const REQUEST_CHECKS: readonly RequestCheck[] = [checkClient, checkRequestedTokenType];

export const RULE_CHECKS: readonly Check[] = [
  checkSubjectIssuer,
  checkSubjectTokenType,
  checkTenant,
  checkSubjectClient,
  checkSubjectAudience,
  checkDelegation,
  checkAssurance,
  checkActor,
  checkMayAct,
  checkTarget,
  checkScope,
  checkActDepth,
  checkLifetime,
];

/** Claims of the subject token that travel into the exchanged token. */
function plannedClaims(subject: PresentedToken): Record<string, unknown> {
  const claims: Record<string, unknown> = { ...subject.carried };
  if (subject.consentId !== undefined) claims.consent_id = subject.consentId;
  if (subject.originGrantId !== undefined) claims.origin_grant_id = subject.originGrantId;
  if (subject.issuer !== 'self') claims.subject_issuer = subject.issuerUrl;
  return claims;
}

function deny(error: Denial['error'], description: string, rule: string, check: string): Denial {
  return { decision: 'deny', error, error_description: `${description} (check ${check}${rule.startsWith('(') ? '' : `, rule ${rule}`})`, rule, check };
}

/** The request-level checks alone (who may exchange at all), before any token is verified. */
export function checkRequest(request: ExchangeRequest, policy: CompiledPolicy): Denial | undefined {
  for (const check of REQUEST_CHECKS) {
    const result = check.run({ request, policy });
    if (!result.ok) return deny(result.error, result.reason, '(request)', check.name);
  }
  return undefined;
}

export interface EvaluateOptions {
  /** Epoch seconds (default: now). */
  now?: number;
  /** Go on through the rules after one allows (explain mode); the decision is still the first allow. */
  allRules?: boolean;
}

export function explain(request: ExchangeRequest, subject: PresentedToken, actor: PresentedToken | undefined, policy: CompiledPolicy, options: EvaluateOptions = {}): Explanation {
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const requestTrace: CheckTrace[] = [];
  for (const check of REQUEST_CHECKS) {
    const result = check.run({ request, policy });
    if (!result.ok) {
      requestTrace.push({ check: check.name, outcome: 'fail', reason: result.reason, error: result.error });
      for (const rest of REQUEST_CHECKS.slice(REQUEST_CHECKS.indexOf(check) + 1)) requestTrace.push({ check: rest.name, outcome: 'not evaluated' });
      return { decision: deny(result.error, result.reason, '(request)', check.name), request: requestTrace, rules: [] };
    }
    requestTrace.push({ check: check.name, outcome: 'pass', reason: result.reason });
  }

  const rules = policy.rulesByClient.get(request.clientId) ?? [];
  const traces: RuleTrace[] = [];
  let best: { passed: number; denial: Denial } | undefined;
  let allowed: Decision | undefined;
  for (const rule of rules) {
    if (allowed && !options.allRules) break;
    const draft: Draft = {};
    const checks: CheckTrace[] = [];
    let failed: Denial | undefined;
    let passed = 0;
    for (const check of RULE_CHECKS) {
      if (failed) {
        checks.push({ check: check.name, outcome: 'not evaluated' });
        continue;
      }
      const result = check.run({ request, subject, actor, rule, policy, now, draft });
      if (result.ok) {
        passed++;
        checks.push({ check: check.name, outcome: 'pass', reason: result.reason });
      } else {
        checks.push({ check: check.name, outcome: 'fail', reason: result.reason, error: result.error });
        failed = deny(result.error, result.reason, rule.id, check.name);
      }
    }
    traces.push({ rule: rule.id, index: rule.index, outcome: failed ? 'deny' : 'allow', checks });
    if (!failed) {
      const token: TokenPlan = {
        rule: rule.id,
        resource: draft.resource!.identifier,
        scopes: draft.scopes!,
        lifetime: draft.lifetime!,
        sub: subject.sub,
        act: draft.act!,
        claims: plannedClaims(subject),
        delegated: subject.consentId !== undefined,
      };
      allowed ??= { decision: 'allow', rule: rule.id, token };
      continue;
    }
    if (!best || passed > best.passed) best = { passed, denial: failed };
  }
  // checkClient guarantees at least one rule, so one of the two is set.
  return { decision: allowed ?? best!.denial, request: requestTrace, rules: traces };
}

/** The decision alone (what the grant uses). */
export function evaluate(request: ExchangeRequest, subject: PresentedToken, actor: PresentedToken | undefined, policy: CompiledPolicy, now?: number): Decision {
  return explain(request, subject, actor, policy, { now }).decision;
}
