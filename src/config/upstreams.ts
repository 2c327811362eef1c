import { z } from 'zod';
import { oidcUpstreamSchema } from './upstream-oidc.ts';
import { samlUpstreamSchema } from './upstream-saml.ts';
import { smartcardUpstreamSchema } from './upstream-smartcard.ts';

// Upstream identity providers: the common identity settings (upstream-common.ts) plus the settings
// of each connector type, in its own file.
export const upstreamSchema = z.discriminatedUnion('type', [oidcUpstreamSchema, samlUpstreamSchema, smartcardUpstreamSchema]);
export type UpstreamConfig = z.infer<typeof upstreamSchema>;
export type { MappingConfig, LinkableConfig } from './upstream-common.ts';
