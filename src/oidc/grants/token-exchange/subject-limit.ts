import type { Limiter, Verdict } from '../../../web/rate-limit.ts';
import { tokenRef } from './verify.ts';

// Catalogue TX-16: one subject token exchanged over and over (a stolen token fanned out into many
// fresh ones, or a runaway caller) is limited per token, across instances. The counter is named by a
// hash of the token, never the token: the store must not hold a usable credential. The count comes
// before any verification, so a flood of one token costs a store hit, not a signature check each.

const WINDOW_SECONDS = 60;

export function subjectTokenLimit(hit: Limiter, perMinute: number) {
  return async (subjectToken: string): Promise<Verdict | undefined> => {
    if (perMinute <= 0) return undefined;
    return hit(`exchange-subject|${tokenRef(subjectToken)}`, perMinute, WINDOW_SECONDS);
  };
}
