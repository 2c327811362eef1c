// Authentication context values the broker passes through from its upstreams (nhs-interfaces.md
// 1.5 and 2.5): CIS2 authenticator assurance and NHS login vectors of trust. Advertised in discovery
// as acr_values_supported so clients can ask for them.
export const CIS2_ACR_VALUES = ['AAL3_ANY', 'AAL2_OR_AAL3_ANY', 'AAL2_ANY', 'AAL1_USERPASS', 'AAL3_SMARTCARD', 'AAL3_CIS2_SMARTCARD', 'AAL3_N3_SMARTCARD', 'AAL3_FIDO2', 'AAL3_IOS'];
export const NHS_LOGIN_VECTORS = ['P0.Cp.Cd', 'P0.Cp.Ck', 'P0.Cm', 'P5.Cp.Cd', 'P5.Cp.Ck', 'P5.Cm', 'P9.Cp.Cd', 'P9.Cp.Ck', 'P9.Cm'];
export const ACR_VALUES = [...CIS2_ACR_VALUES, ...NHS_LOGIN_VECTORS];

export interface MinimumAssurance {
  aal?: number;
  proofing?: 'P0' | 'P5' | 'P9';
}

const PROOFING_RANK: Record<string, number> = { P0: 0, P5: 5, P9: 9 };

/** Whether a login's assurance reaches a minimum. Missing values count as the lowest level. */
export function meetsAssurance(assurance: { aal?: number; proofing?: string }, minimum: MinimumAssurance | undefined): boolean {
  if (!minimum) return true;
  if (minimum.aal !== undefined && (assurance.aal ?? 0) < minimum.aal) return false;
  if (minimum.proofing !== undefined && (PROOFING_RANK[assurance.proofing ?? 'P0'] ?? 0) < PROOFING_RANK[minimum.proofing]) return false;
  return true;
}
