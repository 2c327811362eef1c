import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

export const checkSubjectTokenType: Check = {
  name: 'subject_token_type',
  run({ subject, rule }) {
    if (rule.subjectTokenTypes.includes(subject.tokenType)) return pass(`subject token type ${subject.tokenType} is allowed`);
    return fail('invalid_request', `subject_token_type ${subject.tokenType} is not allowed by rule ${rule.id} (allowed: ${rule.subjectTokenTypes.join(', ')})`);
  },
};
