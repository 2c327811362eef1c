import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

// RFC 8693 4.4: when the subject token names who may act for it (may_act), the acting party must be
// that one: the actor token's subject, else the calling client. An actor token for a subject token
// without may_act is refused unless the rule says otherwise (security-catalogue TX-07).
export const checkMayAct: Check = {
  name: 'may_act',
  run({ request, subject, actor, rule }) {
    const who = actor ? { sub: actor.sub, iss: actor.issuerUrl } : { sub: request.clientId, iss: request.brokerIssuer };
    const may = subject.mayAct;
    if (!may) {
      if (actor && !rule.actorWithoutMayAct) return fail('invalid_request', `subject_token has no may_act claim naming actor ${actor.sub}, and rule ${rule.id} requires one for an actor_token`);
      return pass('subject token has no may_act claim');
    }
    if (may.sub !== who.sub) return fail('invalid_request', `subject_token may_act does not name ${actor ? 'the actor' : 'the calling client'} ${who.sub}`);
    if (may.iss !== undefined && may.iss !== who.iss) return fail('invalid_request', `subject_token may_act names issuer ${may.iss}, not ${who.iss}`);
    return pass(`may_act names ${who.sub}`);
  },
};
