import type { MappingConfig } from '../config/upstream-common.ts';
import type { UpstreamIdentity } from './upstream.ts';

// Declarative claim mapping per upstream: which verified claims become which local attributes, which
// must be present, and which values are allowed. A failed rule refuses the login (an upstream may not
// assert attributes it is not trusted for).

export class MappingError extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(reason);
    this.name = 'MappingError';
    this.reason = reason;
  }
}

function at(claims: Record<string, unknown>, path: string): unknown {
  let cur: unknown = claims;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** The local profile for this identity. Without a mapping, every verified claim is kept. */
export function mapIdentity(identity: UpstreamIdentity, mapping: MappingConfig | undefined): Record<string, unknown> {
  if (!mapping) return { ...identity.claims };
  for (const claim of mapping.required) {
    const v = at(identity.claims, claim);
    if (v === undefined || v === null || v === '') throw new MappingError(`${identity.provider}: required claim ${claim} missing`);
  }
  for (const [claim, allowed] of Object.entries(mapping.allowed)) {
    const v = at(identity.claims, claim);
    const values = Array.isArray(v) ? v : [v];
    if (v !== undefined && !values.every((x) => allowed.includes(String(x)))) throw new MappingError(`${identity.provider}: claim ${claim} has a value that is not allowed`);
  }
  if (Object.keys(mapping.claims).length === 0) return { ...identity.claims };
  const profile: Record<string, unknown> = {};
  for (const [local, upstream] of Object.entries(mapping.claims)) {
    const v = at(identity.claims, upstream);
    if (v !== undefined) profile[local] = v;
  }
  return profile;
}
