import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

// Which clients' broker tokens a service may present: a resource server exchanging the tokens it
// receives names the clients that call it.
export const checkSubjectClient: Check = {
  name: 'subject_client',
  run({ subject, rule }) {
    if (!rule.subjectClients) return pass('the rule does not restrict the subject token\'s client');
    if (subject.issuer !== 'self') return pass('not a broker token: its issuer and audience were checked instead');
    if (subject.clientId !== undefined && rule.subjectClients.includes(subject.clientId)) return pass(`subject token client ${subject.clientId} is allowed`);
    return fail('invalid_request', `subject_token was issued to client ${subject.clientId ?? '(none)'}, which rule ${rule.id} does not accept`);
  },
};
