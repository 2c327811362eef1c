import type { MappingConfig } from '../config/upstream-common.ts';
import type { UpstreamIdentity } from './upstream.ts';

// Claims that confer privilege downstream, and which upstreams may assert them (catalogue WS-25). Other
// verified claims are taken as the upstream sends them (its mapping decides what reaches the profile);
// these are different: a staff role believed from a patient identity provider makes a patient staff.
// Each upstream has an allow-list (mapping.privileged, defaulted from the OIDC preset); whatever else of
// these an upstream sends is dropped as its identity arrives, before mapping, linking or role choice.

/** CIS2 staff attributes: national RBAC roles, the role selected at CIS2, associated ODS organisations, the CIS2 user id. */
export const STAFF_CLAIMS = ['nhsid_nrbac_roles', 'selected_roleid', 'nhsid_user_orgs', 'nhsid_useruid'] as const;
/** Token claims the broker itself sets from the role chosen at sign-in: no upstream is entitled to them. */
export const BROKER_ROLE_CLAIMS = ['selected_role_code', 'selected_org_code'] as const;
export const PRIVILEGED_CLAIMS: readonly string[] = [...STAFF_CLAIMS, ...BROKER_ROLE_CLAIMS];

export type StaffClaim = (typeof STAFF_CLAIMS)[number];

/**
 * The staff claims an upstream may assert: its configured allow-list. A connector the broker has no
 * settings for is one it composed itself (the demo upstream, whose personas are the broker's own, or a
 * connector a test supplies): it keeps what it asserts, as its claims escape mapping too.
 */
export function entitledClaims(mapping: MappingConfig | undefined): readonly string[] {
  if (!mapping) return STAFF_CLAIMS;
  return mapping.privileged ?? [];
}

/** The identity without the privileged claims its upstream is not entitled to. */
export function keepEntitled(identity: UpstreamIdentity, entitled: readonly string[]): UpstreamIdentity {
  const dropped = PRIVILEGED_CLAIMS.filter((c) => c in identity.claims && !entitled.includes(c));
  if (dropped.length === 0) return identity;
  const claims = { ...identity.claims };
  for (const c of dropped) delete claims[c];
  return { ...identity, claims };
}

/** The first segment of a claim path ("nhsid_user_orgs.0.org_code" → "nhsid_user_orgs"). */
function claimOf(path: string): string {
  return path.split('.')[0];
}

/**
 * Where an upstream's settings rely on a privileged claim it is not entitled to (it would be dropped, so
 * the rule could never match): linking identifiers, required claims, allowed values, mapped attributes.
 * Returned as [path, claim] pairs for configuration errors.
 */
export function unentitledUses(settings: { mapping: MappingConfig; linkable: Array<{ claim: string }> }, entitled: readonly string[]): Array<[Array<string | number>, string]> {
  const uses: Array<[Array<string | number>, string]> = [];
  const check = (path: Array<string | number>, claim: string) => {
    if (PRIVILEGED_CLAIMS.includes(claim) && !entitled.includes(claim)) uses.push([path, claim]);
  };
  settings.linkable.forEach((l, i) => check(['linkable', i, 'claim'], claimOf(l.claim)));
  settings.mapping.required.forEach((r, i) => check(['mapping', 'required', i], claimOf(r)));
  for (const k of Object.keys(settings.mapping.allowed)) check(['mapping', 'allowed', k], claimOf(k));
  for (const [local, upstream] of Object.entries(settings.mapping.claims)) {
    check(['mapping', 'claims', local], claimOf(upstream));
    // Nor may a mapping write one under its own name: { selected_role_code: someAttribute } would put a
    // role into ID tokens from an upstream never entitled to assert one.
    check(['mapping', 'claims', local], local);
  }
  return uses;
}
