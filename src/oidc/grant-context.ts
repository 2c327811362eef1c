import type { Store } from '../store/contracts.ts';
import type { SelectedRole } from '../identity/roles.ts';
import type { Assurance } from '../identity/upstream.ts';

// What the broker knows about a grant beyond oidc-provider's model: the staff role chosen at login and
// the upstream assurance (AAL, proofing, vector of trust). Keyed by grant id, so every token minted
// from the grant (code, refresh, later exchange) carries the same context.

const MODEL = 'GrantContext';

export interface GrantContext {
  role?: SelectedRole;
  /** A carer acting for a patient under a consent (delegation). */
  actAs?: { patient: string; consentId: string };
  assurance?: Pick<Assurance, 'aal' | 'vot' | 'proofing'>;
  upstream?: string;
}

export async function saveGrantContext(store: Store, grantId: string, context: GrantContext, ttl: number): Promise<void> {
  await store.oidc.upsert(MODEL, grantId, { ...context }, ttl);
}

export async function loadGrantContext(store: Store, grantId: string | undefined): Promise<GrantContext | undefined> {
  if (!grantId) return undefined;
  return (await store.oidc.find(MODEL, grantId)) as GrantContext | undefined;
}

/** Claims the context adds to access tokens and ID tokens. */
export function contextClaims(context: GrantContext | undefined): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  if (context?.role) {
    claims.selected_roleid = context.role.roleId;
    claims.selected_role_code = context.role.roleCode;
    claims.selected_org_code = context.role.orgCode;
  }
  if (context?.assurance?.aal !== undefined) claims.authentication_assurance_level = String(context.assurance.aal);
  if (context?.assurance?.proofing) claims.identity_proofing_level = context.assurance.proofing;
  if (context?.assurance?.vot) claims.vot = context.assurance.vot;
  return claims;
}
