import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

// The exchanged token never outlives what it came from (TX-11): the rule's lifetime, the resource's,
// the subject and actor tokens' remaining lives, and for a delegated token the delegation cap.
export const checkLifetime: Check = {
  name: 'lifetime',
  run({ subject, actor, rule, policy, now, draft }) {
    const caps: Array<[string, number]> = [
      ['rule', rule.tokenLifetime],
      ['subject token', subject.exp - now],
    ];
    if (draft.resource) caps.push(['resource', draft.resource.accessTokenTTL]);
    if (actor) caps.push(['actor token', actor.exp - now]);
    if (subject.consentId !== undefined) caps.push(['delegation', policy.delegatedTTL]);
    const [by, lifetime] = caps.reduce((a, b) => (b[1] < a[1] ? b : a));
    if (lifetime < 1) return fail('invalid_request', `the ${by} has expired`);
    draft.lifetime = lifetime;
    return pass(`${lifetime} s (capped by the ${by})`);
  },
};
