import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

// The exchanged token is bound to exactly one resource. `resource` and `audience` may repeat; every
// value must be allowed, not just the first (security-catalogue TX-02). An audience names a resource
// by its identifier. Without either, a rule with a single resource defaults to it.
export const checkTarget: Check = {
  name: 'target',
  run({ request, rule, policy, draft }) {
    const asked = [...new Set([...request.resources, ...request.audiences])];
    if (asked.length === 0) {
      if (rule.resources.length !== 1) return fail('invalid_target', `rule ${rule.id} allows several resources; name one with resource or audience`);
      asked.push(rule.resources[0]);
    }
    if (asked.length > 1) return fail('invalid_target', `an exchanged token is bound to one resource; ${asked.length} were requested`);
    const target = asked[0];
    const resource = policy.resources.get(target);
    if (!resource) return fail('invalid_target', `${target} is not a known resource`);
    if (!rule.resources.includes(target)) return fail('invalid_target', `${target} is not allowed by rule ${rule.id}`);
    if (!(policy.clientResources.get(request.clientId) ?? []).includes(target)) return fail('invalid_target', `${target} is not a resource of client ${request.clientId}`);
    const mine = policy.tenantOf.get(`client:${request.clientId}`);
    const theirs = policy.tenantOf.get(`resource:${target}`);
    if (theirs !== undefined && theirs !== mine) return fail('invalid_target', `${target} belongs to tenant ${theirs}, not to the caller's tenant ${mine ?? '(none)'}`);
    draft.resource = resource;
    return pass(`bound to ${target}`);
  },
};
