import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

export const checkSubjectIssuer: Check = {
  name: 'subject_issuer',
  run({ subject, rule }) {
    if (rule.subjectIssuers.includes(subject.issuer)) return pass(`subject issuer ${subject.issuer} is allowed`);
    return fail('invalid_request', `subject_token issuer ${subject.issuer} is not allowed by rule ${rule.id} (allowed: ${rule.subjectIssuers.join(', ')})`);
  },
};
