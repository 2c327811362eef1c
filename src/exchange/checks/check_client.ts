import type { RequestCheck } from '../types.ts';
import { fail, pass } from './result.ts';

// Token exchange is for authenticated clients named by a rule; everything else stops here
// (security-catalogue TX-04: never a public client).
export const checkClient: RequestCheck = {
  name: 'client',
  run({ request, policy }) {
    if (policy.publicClients.has(request.clientId)) return fail('invalid_client', `client ${request.clientId} is public; token exchange needs an authenticated client`);
    const rules = policy.rulesByClient.get(request.clientId) ?? [];
    if (rules.length === 0) return fail('unauthorized_client', `no exchange rule names client ${request.clientId}`);
    return pass(`rules for ${request.clientId}: ${rules.map((r) => r.id).join(', ')}`);
  },
};
