import type { OidcUpstreamConfig } from '../../../src/config/upstream-oidc.ts';
import type { OidcPreset } from './types.ts';
import { cis2Preset } from './cis2.ts';
import { nhsLoginPreset } from './nhs-login.ts';
import { genericPreset } from './generic.ts';

export type { OidcPreset, AuthorizationPlan, Expectations } from './types.ts';

const PRESETS: Record<OidcUpstreamConfig['preset'], OidcPreset> = {
  cis2: cis2Preset,
  'nhs-login': nhsLoginPreset,
  generic: genericPreset,
};

export function presetFor(name: OidcUpstreamConfig['preset']): OidcPreset {
  return PRESETS[name];
}
