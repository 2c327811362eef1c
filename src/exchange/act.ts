import type { ActClaim } from './types.ts';

// RFC 8693 4.1 act chains: the outermost member is the current actor, nested members the earlier
// ones. The broker builds chains only from tokens it verified and from the authenticated client;
// nothing in a request can add, drop or reorder a member.

/** Hard ceiling on nesting accepted from any token, whatever a rule allows (keeps parsing bounded). */
export const MAX_PARSED_ACT_DEPTH = 16;

export function actDepth(act: ActClaim | undefined): number {
  let depth = 0;
  for (let a = act; a; a = a.act) depth++;
  return depth;
}

/** The first actor in the chain: for a delegated token, the carer the consent names. */
export function innermostActor(act: ActClaim | undefined): string | undefined {
  let last: ActClaim | undefined;
  for (let a = act; a; a = a.act) last = a;
  return last?.sub;
}

/** Every actor, outermost first (for audit details). */
export function actChain(act: ActClaim | undefined): string[] {
  const out: string[] = [];
  for (let a = act; a; a = a.act) out.push(a.sub);
  return out;
}

export function extendAct(current: ActClaim, previous: ActClaim | undefined): ActClaim {
  return previous ? { ...current, act: previous } : { ...current };
}

/**
 * An `act` claim from a verified token, reduced to sub/iss/act. Anything else in it is dropped; a
 * member without a string `sub`, or nesting beyond MAX_PARSED_ACT_DEPTH, makes the claim invalid.
 */
export function parseActClaim(raw: unknown, depth = 0): ActClaim | undefined | 'invalid' {
  if (raw === undefined) return undefined;
  if (depth >= MAX_PARSED_ACT_DEPTH || raw === null || typeof raw !== 'object' || Array.isArray(raw)) return 'invalid';
  const { sub, iss, act } = raw as Record<string, unknown>;
  if (typeof sub !== 'string' || sub === '' || sub.length > 512) return 'invalid';
  if (iss !== undefined && typeof iss !== 'string') return 'invalid';
  const nested = parseActClaim(act, depth + 1);
  if (nested === 'invalid') return 'invalid';
  const out: ActClaim = { sub };
  if (iss !== undefined) out.iss = iss;
  if (nested) out.act = nested;
  return out;
}

/** Loosely typed chain (as found in token claims) → its innermost actor, for the introspection hook. */
export function innermostActorOf(raw: unknown): string | undefined {
  const parsed = parseActClaim(raw);
  return parsed === 'invalid' ? undefined : innermostActor(parsed);
}
