import type { Assurance } from '../../src/identity/upstream.ts';

// Personas of the demo upstream. Claim shapes follow the real systems (see
// ../shared/reference/nhs-interfaces.md): CIS2 roles for the nurse, NHS login P9 for patient and carer.

export interface Persona {
  id: string;
  label: string;
  description: string;
  subject: string;
  claims: Record<string, unknown>;
  assurance: Assurance;
}

export const PERSONAS: Persona[] = [
  {
    id: 'nurse',
    label: 'Flo Nurse (staff, smartcard)',
    description: 'CIS2-style staff login at AAL3 with two roles in two organisations.',
    subject: '555057896106',
    claims: {
      name: 'Flo Nurse',
      given_name: 'Flo',
      family_name: 'Nurse',
      email: 'nurse.flo@example.nhs.uk',
      nhsid_useruid: '555057896106',
      nhsid_nrbac_roles: [
        { person_orgid: '555057897107', person_roleid: '555057898108', org_code: 'X26', role_code: 'S8002:G8003:R0001', role_name: '"Admin and Clerical":"Admin and Clerical":"Privacy Officer"' },
        { person_orgid: '555057995106', person_roleid: '555057996107', org_code: 'Y51', role_code: 'S8000:G8000:R8001', role_name: '"Clinical":"Clinical Provision":"Nurse Access Role"' },
      ],
    },
    assurance: { acr: 'AAL3_ANY', amr: ['sc', 'N3_SMARTCARD'], aal: 3 },
  },
  {
    id: 'patient',
    label: 'Pat Patient (patient, P9)',
    description: 'NHS login-style patient, fully verified (P9), with an NHS number.',
    subject: 'patient-0b7c6a1e',
    claims: { name: 'Pat Patient', given_name: 'Pat', family_name: 'Patient', nhs_number: '9000000009', birthdate: '1950-01-01', identity_proofing_level: 'P9' },
    assurance: { acr: 'P9.Cp.Cd', amr: ['pwd', 'otp'], aal: 2, vot: 'P9.Cp.Cd', proofing: 'P9' },
  },
  {
    id: 'carer',
    label: 'Cara Carer (carer, P9)',
    description: 'NHS login-style carer, fully verified (P9).',
    subject: 'carer-5d2f9e07',
    claims: { name: 'Cara Carer', given_name: 'Cara', family_name: 'Carer', nhs_number: '9000000017', birthdate: '1975-06-15', identity_proofing_level: 'P9' },
    assurance: { acr: 'P9.Cp.Cd', amr: ['pwd', 'otp'], aal: 2, vot: 'P9.Cp.Cd', proofing: 'P9' },
  },
];
