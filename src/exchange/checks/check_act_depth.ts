import { actDepth, extendAct } from '../act.ts';
import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

// The new act chain: the current actor (the actor token's subject, else the calling client) in front
// of the subject token's own chain, which is kept whole: re-exchanging a delegated token cannot drop
// the carer. The nesting is capped so chained exchanges cannot grow it without bound (TX-11).
export const checkActDepth: Check = {
  name: 'act_depth',
  run({ request, subject, actor, rule, draft }) {
    const current = actor ? (actor.issuer === 'self' ? { sub: actor.sub } : { sub: actor.sub, iss: actor.issuerUrl }) : { sub: request.clientId };
    // An actor token's subject acts through the calling client: the client stays in the chain.
    const previous = actor ? extendAct({ sub: request.clientId }, subject.act) : subject.act;
    const act = extendAct(current, previous);
    const depth = actDepth(act);
    if (depth > rule.maxActDepth) return fail('invalid_request', `the act chain would be ${depth} deep; rule ${rule.id} allows ${rule.maxActDepth}`);
    draft.act = act;
    return pass(`act chain depth ${depth} of at most ${rule.maxActDepth}`);
  },
};
