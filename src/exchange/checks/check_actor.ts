import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

// Whether an actor_token may or must be sent, and which ones. An actor token never brings its own
// chain: a token that carries `act` could smuggle earlier "actors" into the new token.
export const checkActor: Check = {
  name: 'actor',
  run({ actor, rule }) {
    if (!actor) {
      if (rule.actor === 'required') return fail('invalid_request', `rule ${rule.id} requires an actor_token`);
      return pass('no actor_token');
    }
    if (rule.actor === 'forbidden') return fail('invalid_request', `rule ${rule.id} does not accept an actor_token`);
    if (actor.hasAct) return fail('invalid_request', 'actor_token must not carry an act claim');
    if (!rule.actorIssuers.includes(actor.issuer)) return fail('invalid_request', `actor_token issuer ${actor.issuer} is not allowed by rule ${rule.id} (allowed: ${rule.actorIssuers.join(', ')})`);
    if (!rule.actorTokenTypes.includes(actor.tokenType)) return fail('invalid_request', `actor_token_type ${actor.tokenType} is not allowed by rule ${rule.id} (allowed: ${rule.actorTokenTypes.join(', ')})`);
    return pass(`actor ${actor.sub} from ${actor.issuer} accepted`);
  },
};
