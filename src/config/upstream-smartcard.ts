import { z } from 'zod';
import { commonUpstreamFields } from './upstream-common.ts';

// Settings of a smartcard / client-certificate upstream (providers/smartcard). Owned by the smartcard work.
export const smartcardUpstreamSchema = z.strictObject({
  ...commonUpstreamFields,
  type: z.literal('smartcard'),
});
