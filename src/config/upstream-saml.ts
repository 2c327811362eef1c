import { z } from 'zod';
import { commonUpstreamFields } from './upstream-common.ts';

// Settings of an upstream SAML 2.0 IdP (providers/saml). Owned by the SAML connector work.
export const samlUpstreamSchema = z.strictObject({
  ...commonUpstreamFields,
  type: z.literal('saml'),
  entityId: z.string().min(1),
});
