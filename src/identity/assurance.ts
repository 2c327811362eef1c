// Authentication context values the broker passes through from its upstreams (nhs-interfaces.md
// 1.5 and 2.5): CIS2 authenticator assurance and NHS login vectors of trust. Advertised in discovery
// as acr_values_supported so clients can ask for them.
export const CIS2_ACR_VALUES = ['AAL3_ANY', 'AAL2_OR_AAL3_ANY', 'AAL2_ANY', 'AAL1_USERPASS', 'AAL3_SMARTCARD', 'AAL3_CIS2_SMARTCARD', 'AAL3_N3_SMARTCARD', 'AAL3_FIDO2', 'AAL3_IOS'];
export const NHS_LOGIN_VECTORS = ['P0.Cp.Cd', 'P0.Cp.Ck', 'P0.Cm', 'P5.Cp.Cd', 'P5.Cp.Ck', 'P5.Cm', 'P9.Cp.Cd', 'P9.Cp.Ck', 'P9.Cm'];
export const ACR_VALUES = [...CIS2_ACR_VALUES, ...NHS_LOGIN_VECTORS];
