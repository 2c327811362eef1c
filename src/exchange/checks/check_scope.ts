import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

// Scope = request ∩ policy ∩ resource, and with downscopeOnly ∩ the subject token's scope when it
// carries one (ID tokens carry none: the policy alone caps them). A request for more is an error, not
// a silent trim (security-catalogue TX-01); an empty result is an error too.
export const checkScope: Check = {
  name: 'scope',
  run({ request, subject, rule, draft }) {
    const resource = draft.resource;
    if (!resource) return fail('invalid_target', 'no resource resolved');
    const allowed = rule.scopes.filter((s) => resource.scopes.includes(s));
    const held = rule.downscopeOnly && subject.scopes !== undefined ? new Set(subject.scopes) : undefined;
    if (request.scopes !== undefined) {
      const outside = request.scopes.filter((s) => !allowed.includes(s));
      if (outside.length) return fail('invalid_scope', `${outside.join(' ')} not allowed by rule ${rule.id} for ${resource.identifier}`);
      const wider = held ? request.scopes.filter((s) => !held.has(s)) : [];
      if (wider.length) return fail('invalid_scope', `${wider.join(' ')} is wider than the subject token's scope (downscope only)`);
    }
    const granted = (request.scopes ?? allowed).filter((s) => !held || held.has(s));
    if (granted.length === 0) return fail('invalid_scope', held ? `the subject token holds none of the scopes rule ${rule.id} allows` : 'no scope requested or allowed');
    draft.scopes = [...new Set(granted)];
    return pass(`scope ${draft.scopes.join(' ')}`);
  },
};
