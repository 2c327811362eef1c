import type { Check } from '../types.ts';
import { fail, pass } from './result.ts';

// Tenants never mix (security-catalogue TX-10): the calling client, the subject token's client or
// issuer, the actor token's, and the target resource must not belong to different tenants. Members of
// no tenant are shared. The target resource is checked again by check_target once it is resolved.
export const checkTenant: Check = {
  name: 'tenant',
  run({ request, subject, actor, policy }) {
    const mine = policy.tenantOf.get(`client:${request.clientId}`);
    const others: Array<[string, string | undefined]> = [];
    for (const [label, token] of [['subject_token', subject], ['actor_token', actor]] as const) {
      if (!token) continue;
      if (token.issuer === 'self') {
        if (token.clientId !== undefined) others.push([`${label} client ${token.clientId}`, policy.tenantOf.get(`client:${token.clientId}`)]);
      } else {
        others.push([`${label} issuer ${token.issuer}`, policy.tenantOf.get(`issuer:${token.issuer}`)]);
      }
    }
    for (const [what, tenant] of others) {
      if (tenant !== undefined && mine !== undefined && tenant !== mine) return fail('invalid_request', `${what} belongs to tenant ${tenant}, not to the caller's tenant ${mine}`);
      if (tenant !== undefined && mine === undefined) return fail('invalid_request', `${what} belongs to tenant ${tenant}; the caller belongs to no tenant`);
    }
    return pass(mine ? `everything belongs to tenant ${mine} or to none` : 'no tenant involved');
  },
};
