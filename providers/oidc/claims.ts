import { z } from 'zod';

// Verified upstream claims, parsed at the edge and reduced to what describes the person.

/** The ID token claims the connector relies on, after openid-client has verified the token. */
export const idTokenClaims = z.looseObject({
  sub: z.string().min(1).max(255),
  iat: z.number(),
  auth_time: z.number().int().nonnegative().optional(),
  sid: z.string().min(1).max(255).optional(),
});

export const userinfoClaims = z.looseObject({ sub: z.string().min(1).max(255) });

/**
 * Claims about the token rather than the person. `sub` goes too: it is the link key, and a local
 * profile must never carry an upstream `sub` that could stand in for the broker's own. acr and amr
 * travel in `assurance`, auth_time in `authTime`, sid in `sessionIndex`.
 */
const PROTOCOL_CLAIMS = ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'nonce', 'azp', 'at_hash', 'c_hash', 's_hash', 'auth_time', 'sid', 'acr', 'amr', 'events', 'cnf'];

/** Userinfo adds to the ID token; where both carry a claim, the signed ID token wins. */
export function mergeClaims(idToken: Record<string, unknown>, userinfo: Record<string, unknown> | undefined, drop: readonly string[]): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...(userinfo ?? {}), ...idToken };
  for (const k of [...PROTOCOL_CLAIMS, ...drop]) delete merged[k];
  return merged;
}
