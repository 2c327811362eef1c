import type { LoginRequest } from '../../../src/identity/upstream.ts';

// The assurance vocabularies of the NHS upstreams (nhs-interfaces.md 1.5 and 2.5), shared by presets.

/** CIS2 authenticator assurance: "3" or 3 (real CIS2 sends strings, APIM's mocks numbers). */
export function parseAal(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^[1-3]$/.test(value) ? Number(value) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= 3 ? n : undefined;
}

/** The AAL a CIS2 acr value guarantees: AAL3_ANY -> 3, AAL2_OR_AAL3_ANY -> 2. */
export function aalOfAcr(acr: string | undefined): number | undefined {
  const m = acr ? /^AAL([1-3])_/.exec(acr) : null;
  return m ? Number(m[1]) : undefined;
}

export const CIS2_ACR_PATTERN = /^AAL[1-3]_[A-Z0-9_]+$/;
export const VECTOR_PATTERN = /^(P\d)(\.C[a-z])*$|^C[a-z](\.C[a-z])*$/;

/** P0 < P5 < P9 (the trustmark also knows P3, P6, P7). */
export function proofingRank(level: string | undefined): number | undefined {
  const m = level ? /^P(\d)$/.exec(level) : null;
  return m ? Number(m[1]) : undefined;
}

export interface Vector {
  proofing?: string;
  credentials: string[];
}

export function parseVector(vector: string): Vector | undefined {
  if (!VECTOR_PATTERN.test(vector)) return undefined;
  const parts = vector.split('.');
  const proofing = parts[0].startsWith('P') ? parts[0] : undefined;
  return { proofing, credentials: proofing ? parts.slice(1) : parts };
}

/**
 * The authenticator assurance a vector implies: a password alone is one factor (AAL1); a password
 * with a registered device or shared key, or a device-bound asymmetric key, is two (AAL2).
 */
export function aalOfVector(vector: Vector): number | undefined {
  const c = new Set(vector.credentials);
  if (c.has('Cm') || (c.has('Cp') && (c.has('Cd') || c.has('Ck')))) return 2;
  if (c.size > 0) return 1;
  return undefined;
}

/** NHS login's default when `vtr` is omitted, and what a P9 login asks for. */
export function vectorsFor(proofing: 'P0' | 'P5' | 'P9'): string[] {
  return [`${proofing}.Cp.Cd`, `${proofing}.Cp.Ck`, `${proofing}.Cm`];
}

/** Only "login" travels upstream: the broker's own consent or account prompts are not the upstream's business. */
export function upstreamPrompt(request: LoginRequest): string | undefined {
  return request.prompt?.split(' ').includes('login') ? 'login' : undefined;
}
