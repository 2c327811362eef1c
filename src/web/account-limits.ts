import type { ApiAuthenticator } from './api-auth.ts';
import { matches, RateLimitedError, type Limiter } from './rate-limit.ts';

// Per-account limits on the account app and the delegation API (catalogue WS-08). The broker holds no
// passwords; what an account can be abused for here is guessing invitation codes and churning consent
// records. The account is the subject of a verified access token, so the count starts only after
// authentication: nobody can spend another person's allowance by naming them. The check runs before
// the route reads its body or looks anything up, so a refused attempt changes nothing (a real
// invitation code sent over the limit is not used up).

export interface AccountRule {
  /** Counter name (one counter per rule and account). */
  name: string;
  /** Path prefixes (default: every route that authenticates). */
  paths?: string[];
  /** Methods (default: all). */
  methods?: string[];
  limit: number;
  windowSeconds: number;
}

export function limitPerAccount(authenticate: ApiAuthenticator, hit: Limiter, rules: AccountRule[], onLimited?: (name: string) => void): ApiAuthenticator {
  return async (ctx, needed) => {
    const caller = await authenticate(ctx, needed);
    for (const rule of rules) {
      if (rule.limit <= 0) continue;
      if (!matches(rule, ctx)) continue;
      const name = `${rule.name}|account:${caller.accountId}`;
      const verdict = await hit(name, rule.limit, rule.windowSeconds);
      if (verdict.limited) {
        if (verdict.first) onLimited?.(name);
        throw new RateLimitedError(verdict.retryAfter);
      }
    }
    return caller;
  };
}
