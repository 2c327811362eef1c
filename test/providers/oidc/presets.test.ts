import { describe, it, expect } from 'vitest';
import { oidcUpstreamSchema } from '../../../src/config/upstream-oidc.ts';
import type { LoginRequest } from '../../../src/identity/upstream.ts';
import { presetFor } from '../../../providers/oidc/presets/index.ts';

// The presets as data: what each asks its upstream for, given the login's needs, and how each reads
// assurance back. Pure functions; the end-to-end tests show the same against the fakes.

const config = (preset: 'cis2' | 'nhs-login' | 'generic', extra: Record<string, unknown> = {}) =>
  oidcUpstreamSchema.parse({ id: preset, displayName: preset, type: 'oidc', preset, issuer: 'https://op.example', client_id: 'c', client_secret: 's'.repeat(20), ...(preset === 'nhs-login' && { token_endpoint_auth_method: 'private_key_jwt', client_secret: undefined, private_key_file: '/k.pem' }), ...extra });
const req = (r: Partial<LoginRequest> = {}): LoginRequest => ({ callbackUrl: 'https://broker/cb', transactionId: 't', ...r });

describe('CIS2 preset', () => {
  const p = presetFor('cis2');
  it('maps the minimum AAL to CIS2 acr_values and expects it back', () => {
    expect(p.plan(req({ minimumAssurance: { aal: 3 } }), config('cis2'))).toEqual({ params: { acr_values: 'AAL3_ANY' }, expect: { minAal: 3 } });
    expect(p.plan(req({ minimumAssurance: { aal: 2 } }), config('cis2'))).toEqual({ params: { acr_values: 'AAL2_OR_AAL3_ANY' }, expect: { minAal: 2 } });
    expect(p.plan(req({ minimumAssurance: { aal: 1 } }), config('cis2')).params).toEqual({});
  });
  it('passes only CIS2 values of the client\'s acr_values; falls back to the configured ones', () => {
    expect(p.plan(req({ acrValues: ['P9.Cp.Cd', 'AAL3_SMARTCARD'] }), config('cis2')).params.acr_values).toBe('AAL3_SMARTCARD');
    expect(p.plan(req({ acrValues: ['P9.Cp.Cd'] }), config('cis2', { acr_values: ['AAL2_OR_AAL3_ANY'] })).params.acr_values).toBe('AAL2_OR_AAL3_ANY');
    expect(p.plan(req(), config('cis2')).params).toEqual({});
  });
  it('reads aal from "3", 3, or the acr; refuses a malformed level', () => {
    expect(p.assurance({ acr: 'AAL3_ANY', authentication_assurance_level: '2' })).toMatchObject({ aal: 2 });
    expect(p.assurance({ authentication_assurance_level: 3 })).toMatchObject({ aal: 3 });
    expect(p.assurance({ acr: 'AAL2_OR_AAL3_ANY' })).toMatchObject({ aal: 2 });
    expect(p.readClaims('1', { authentication_assurance_level: 'high' })).toEqual({ refused: 'authentication_assurance_level is not 1, 2 or 3' });
    expect(p.readClaims('1', { nhsid_useruid: '2' })).toEqual({ refused: 'nhsid_useruid differs from sub' });
    expect('refused' in p.readClaims('1', { nhsid_nrbac_roles: [{ person_roleid: 'r' }] })).toBe(true);
  });
});

describe('NHS login preset', () => {
  const p = presetFor('nhs-login');
  it('always sends an explicit vtr (default: NHS login\'s own P9 default) and expects vot among it', () => {
    expect(p.plan(req(), config('nhs-login'))).toEqual({ params: { vtr: '["P9.Cp.Cd","P9.Cp.Ck","P9.Cm"]' }, expect: { vtr: ['P9.Cp.Cd', 'P9.Cp.Ck', 'P9.Cm'], minProofing: 'P9' } });
    expect(p.plan(req({ minimumAssurance: { proofing: 'P5' } }), config('nhs-login')).params.vtr).toBe('["P5.Cp.Cd","P5.Cp.Ck","P5.Cm"]');
    expect(p.plan(req(), config('nhs-login', { vtr: ['P5.Cp', 'P5.Cp.Cd'] })).params.vtr).toBe('["P5.Cp","P5.Cp.Cd"]');
    // A minimum AAL drops the password-only vectors.
    expect(p.plan(req({ minimumAssurance: { aal: 2 } }), config('nhs-login', { vtr: ['P5.Cp', 'P5.Cp.Cd'] })).params.vtr).toBe('["P5.Cp.Cd"]');
  });
  it('client vectors in acr_values become vtr; acr_values never go to NHS login', () => {
    const plan = p.plan(req({ acrValues: ['AAL3_ANY', 'P5.Cm'] }), config('nhs-login'));
    expect(plan.params).toEqual({ vtr: '["P5.Cm"]' });
  });
  it('reads the vector: P0 with a password only is AAL1', () => {
    expect(p.assurance({ vot: 'P0.Cp', identity_proofing_level: 'P0' })).toEqual({ acr: 'P0.Cp', vot: 'P0.Cp', proofing: 'P0', aal: 1 });
    expect(p.assurance({ vot: 'P9.Cm', identity_proofing_level: 'P9' })).toMatchObject({ aal: 2, proofing: 'P9' });
  });
});

describe('generic preset', () => {
  const p = presetFor('generic');
  it('passes the client\'s acr_values, max_age, prompt=login and login_hint as they are', () => {
    expect(p.plan(req({ acrValues: ['urn:x:gold'], maxAge: 0, prompt: 'login', loginHint: 'a@b' }), config('generic'))).toEqual({
      params: { acr_values: 'urn:x:gold', max_age: '0', prompt: 'login', login_hint: 'a@b' },
      expect: {},
    });
  });
});
