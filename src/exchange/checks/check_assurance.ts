import { meetsAssurance } from '../../identity/assurance.ts';
import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

// The upstream login behind the subject token must be strong enough (for example AAL3 for clinical
// writes, P9 for patient data). Missing claims count as the lowest level.
export const checkAssurance: Check = {
  name: 'assurance',
  run({ subject, rule }) {
    const min = rule.minimumAssurance;
    if (!min || (min.aal === undefined && min.proofing === undefined)) return pass('the rule sets no minimum assurance');
    const have = `AAL ${subject.assurance.aal ?? 'unknown'}, proofing ${subject.assurance.proofing ?? 'unknown'}`;
    const need = [min.aal !== undefined ? `AAL${min.aal}` : undefined, min.proofing].filter(Boolean).join(' and ');
    if (meetsAssurance(subject.assurance, min)) return pass(`subject assurance (${have}) meets ${need}`);
    return fail('invalid_request', `subject_token assurance (${have}) is below the ${need} that rule ${rule.id} requires`);
  },
};
