import { describe, it, expect } from 'vitest';
import { FhirMappingError, fromVrsConsent, isValidNhsNumber, toFhirConsent, vrsConsentSchema } from '../../src/delegation/fhir.ts';
import type { ConsentRecord } from '../../src/delegation/model.ts';

// The FHIR mapping on its own: the VRS example from nhs-interfaces.md 4.2 (no provision.actor.role)
// imports; an exported record imports back to the same parties, basis, period and access.

const options = { accountSystem: 'http://localhost/fhir/Id/account' };

/**
 * nhs-interfaces.md 4.2, parent_child_proxy_creation.yaml, as JSON, except the child's NHS number: the
 * example's 9000000012 fails the modulus-11 check (as do the sandbox's 9000000010 and 9000000019), so a
 * valid sandbox-style number stands in; the original is refused in its own test below.
 */
const VRS_PARENT_CHILD = {
  resourceType: 'Consent',
  status: 'active',
  scope: { coding: [{ system: 'https://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
  category: [{ coding: [{ system: 'https://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'INFA', display: 'information access' }] }],
  patient: { type: 'Patient', identifier: { system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9000000017' } },
  dateTime: '2025-02-11T14:30:00Z',
  performer: [{ identifier: { system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9000000009' } }],
  policyRule: { coding: [{ system: 'https://fhir.nhs.uk/England/CodeSystem/England-NHSProxyLegalBasis', code: 'parental-responsibility' }] },
  provision: {
    type: 'permit',
    period: { start: '2025-02-11T14:30:00Z', end: '2029-02-11T14:30:00Z' },
    actor: [{ reference: { type: 'RelatedPerson', identifier: { system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9000000009' } } }],
  },
  extension: [
    { url: 'https://fhir.nhs.uk/England/StructureDefinition/Extension-England-Consent-Status-Reason', valueCodeableConcept: { coding: [{ system: 'https://fhir.nhs.uk/England/CodeSystem/England-ConsentStatusReason', code: 'ROLE_CREATED' }] } },
    { url: 'https://hl7.org/fhir/5.0/StructureDefinition/extension-Consent.grantor', valueReference: { identifier: { system: 'https://fhir.nhs.uk/Id/ods-organization-code', value: 'G8101234' } } },
  ],
};

describe('FHIR Consent mapping', () => {
  it('checks NHS numbers with the modulus-11 digit', () => {
    for (const ok of ['9000000009', '9000000017', '9000000025', '9000000033']) expect(isValidNhsNumber(ok), ok).toBe(true);
    for (const bad of ['9000000001', '9000000012', '9000000019', '900000000', '90000000090', 'abcdefghij', '']) expect(isValidNhsNumber(bad), bad).toBe(false);
  });

  it('imports the VRS parent-child example, tolerating the missing provision.actor.role', () => {
    expect(fromVrsConsent(VRS_PARENT_CHILD, options)).toEqual({
      status: 'active',
      patient: { kind: 'nhs-number', value: '9000000017' },
      proxy: { kind: 'nhs-number', value: '9000000009' },
      legalBasis: 'parental-responsibility',
      period: { start: '2025-02-11T14:30:00.000Z', end: '2029-02-11T14:30:00.000Z' },
      statusReason: 'ROLE_CREATED',
      grantorOrg: 'G8101234',
    });
  });

  it('refuses an NHS number that fails its check digit (the VRS example\'s 9000000012) with INVALID_IDENTIFIER_VALUE', () => {
    const original = { ...VRS_PARENT_CHILD, patient: { type: 'Patient', identifier: { system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9000000012' } } };
    expect(() => fromVrsConsent(original, options)).toThrow(expect.objectContaining({ vrsCode: 'INVALID_IDENTIFIER_VALUE', status: 422 }));
  });

  it('maps every England-NHSProxyLegalBasis code, refuses UNK', () => {
    const basis = (code: string) => fromVrsConsent({ ...VRS_PARENT_CHILD, policyRule: { coding: [{ system: 'https://fhir.nhs.uk/England/CodeSystem/England-NHSProxyLegalBasis', code }] } }, options).legalBasis;
    expect(basis('consent')).toBe('consent');
    expect(basis('court-appointed-personal-welfare-deputy')).toBe('court-deputy');
    expect(basis('health-and-welfare-lasting-power-of-attorney')).toBe('lpa-health-welfare');
    expect(basis('best-interest')).toBe('best-interest');
    expect(() => basis('UNK')).toThrow(FhirMappingError);
  });

  it('exports a record that imports back to the same people, basis, period and access', () => {
    const record: ConsentRecord = {
      id: 'c-1',
      version: 3,
      status: 'active',
      statusReason: 'ROLE_CHANGED',
      grantor: 'acc-patient',
      grantee: 'acc-carer',
      legalBasis: 'lpa-health-welfare',
      access: { scopes: ['patient/Observation.rs'], level: 1 },
      period: { start: '2026-01-01T00:00:00.000Z', end: '2026-12-31T23:59:59.000Z' },
      verifier: { accountId: 'acc-nurse', roleId: 'r', orgCode: 'Y51' },
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-02-01T00:00:00.000Z',
      changedBy: 'acc-patient',
      prev: 'x',
    };
    const consent = toFhirConsent(record, { 'acc-patient': { nhsNumber: '9000000009', name: 'Pat Patient' }, 'acc-carer': { name: 'Cara Carer' } }, options);
    expect(vrsConsentSchema.safeParse(consent).success).toBe(true);
    expect(consent.provision.actor?.[0].role.coding[0]).toEqual({ system: 'http://hl7.org/fhir/consentperformer', code: 'delegatee', display: 'Delegatee' });
    expect(consent.performer?.[0]).toEqual({ type: 'RelatedPerson', identifier: { system: options.accountSystem, value: 'acc-carer' }, display: 'Cara Carer' });
    const back = fromVrsConsent(consent, options);
    expect(back).toMatchObject({
      patient: { kind: 'nhs-number', value: '9000000009' },
      proxy: { kind: 'account', value: 'acc-carer' },
      legalBasis: 'lpa-health-welfare',
      period: record.period,
      access: record.access,
      grantorOrg: 'Y51',
    });
  });
});
