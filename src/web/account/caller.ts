import type { Context } from 'koa';
import type { Actor } from '../../delegation/service.ts';
import type { ApiCaller } from '../api-auth.ts';

// Who is calling, in the terms the delegation service understands, and whether they count as staff.

/** Staff rules (config.delegation): AAL and CIS2 job-role codes that may manage others' delegations. */
export interface StaffRules {
  staffRoleCodes: string[];
  staffMinimumAal: number;
}

/** The schema defaults (config/schema.ts), used when the composition root passes no rules. */
export const DEFAULT_STAFF_RULES: StaffRules = { staffRoleCodes: ['R8000', 'R8001', 'R8003', 'R0260', 'R0270'], staffMinimumAal: 3 };

export function actorOf(caller: ApiCaller): Actor {
  const actor: Actor = { accountId: caller.accountId, assurance: caller.assurance };
  if (caller.role) actor.role = caller.role;
  return actor;
}

/**
 * Staff for the account app: the token carries delegation.staff, a selected role whose job-role code
 * is allowed, and the AAL staff need. The service checks the same again on every staff action; this
 * only decides what to show and who may read others' records.
 */
export function isStaff(caller: ApiCaller, rules: StaffRules): boolean {
  if (!caller.scopes.has('delegation.staff') || !caller.role) return false;
  const jobRole = caller.role.roleCode.split(':').pop() ?? '';
  return (caller.assurance.aal ?? 0) >= rules.staffMinimumAal && rules.staffRoleCodes.includes(jobRole);
}

/**
 * A view of the request that presents `token` as its bearer token, so the pages authorise from their
 * session's access token with exactly the checks the JSON API applies.
 */
export function withBearer(ctx: Context, token: string): Context {
  return new Proxy(ctx, {
    get(target, prop, receiver) {
      if (prop === 'get') return (field: string) => (field.toLowerCase() === 'authorization' ? `Bearer ${token}` : target.get(field));
      return Reflect.get(target, prop, receiver);
    },
  });
}
