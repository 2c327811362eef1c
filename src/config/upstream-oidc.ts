import { z } from 'zod';
import { commonUpstreamFields } from './upstream-common.ts';

// Settings of an upstream OpenID Provider (providers/oidc). Owned by the OIDC connector work.
export const oidcUpstreamSchema = z.strictObject({
  ...commonUpstreamFields,
  type: z.literal('oidc'),
  issuer: z.string().url(),
});
