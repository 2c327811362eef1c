import type { CheckResult, OAuthErrorCode } from '../types.ts';

export const pass = (reason: string): CheckResult => ({ ok: true, reason });
export const fail = (error: OAuthErrorCode, reason: string): CheckResult => ({ ok: false, error, reason });
