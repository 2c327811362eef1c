import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

// A service exchanges the tokens it was sent: a broker subject token must have been issued for one of
// the resources the rule names (usually the caller's own API), not picked up elsewhere. External
// tokens had their audience checked against the issuer's expected values already.
export const checkSubjectAudience: Check = {
  name: 'subject_audience',
  run({ subject, rule }) {
    if (!rule.subjectAudiences) return pass('the rule does not restrict the subject token\'s audience');
    if (subject.issuer !== 'self') return pass('not a broker token: its audience was checked against the issuer\'s expected values');
    const hit = subject.audiences.find((a) => rule.subjectAudiences!.includes(a));
    if (hit) return pass(`subject token audience ${hit} is allowed`);
    return fail('invalid_request', `subject_token was issued for ${subject.audiences.join(', ') || 'no audience'}, not for a resource rule ${rule.id} accepts`);
  },
};
