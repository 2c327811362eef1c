import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

// A subject token that acts for a patient under a consent (consent_id) is exchanged only where a rule
// says so; the consent itself was checked live when the token was verified.
export const checkDelegation: Check = {
  name: 'delegation',
  run({ subject, rule }) {
    const delegated = subject.consentId !== undefined;
    if (rule.delegated === 'forbid' && delegated) return fail('invalid_request', `subject_token acts under a consent, which rule ${rule.id} does not accept`);
    if (rule.delegated === 'require' && !delegated) return fail('invalid_request', `rule ${rule.id} accepts only subject tokens that act under a consent`);
    return pass(delegated ? 'delegated subject token accepted' : 'subject token is not delegated');
  },
};
