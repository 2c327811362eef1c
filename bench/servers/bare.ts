import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import Provider, { errors, type ClientMetadata, type Configuration } from 'oidc-provider';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { openStore } from '../../src/store/open.ts';
import { adapterFactory, unavailable } from '../../src/oidc/adapter.ts';
import {
  ACCESS_TOKEN_TTL,
  BASIC_CLIENT,
  BASIC_SECRET,
  ISSUER,
  OPAQUE_RESOURCE,
  RESOURCE,
  RESOURCE_SCOPES,
  RS_CLIENT,
  RS_SECRET,
  clientMetadata,
  profilerCommands,
  readSpec,
  serve,
} from './common.ts';

// The baseline: a bare oidc-provider configured for the grants it shares with the broker - the same
// clients (svc: private_key_jwt ES256; svc-basic: client_secret_basic; rs: introspection), the same
// resources (JWT access tokens ES256, and opaque ones), an ES256 signing key, the same store-backed
// adapter over its own SQLite file or Redis database and the same atomic replay check - mounted
// directly on node:http with no Koa wrapper, so broker/bare measures what the broker adds around
// oidc-provider.

const spec = readSpec();
const store = openStore(spec.store);

const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const signingKey: JWK = { ...(await exportJWK(privateKey)), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

const resources: Record<string, { format: 'jwt' | 'opaque'; ttl: number }> = {
  [RESOURCE]: { format: 'jwt', ttl: ACCESS_TOKEN_TTL },
  [OPAQUE_RESOURCE]: { format: 'opaque', ttl: 3600 },
};

const clients: ClientMetadata[] = [
  { ...clientMetadata(spec) },
  { client_id: BASIC_CLIENT, client_secret: BASIC_SECRET, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: RESOURCE_SCOPES.join(' ') },
  { client_id: RS_CLIENT, client_secret: RS_SECRET, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], response_types: [], redirect_uris: [] },
];

const configuration: Configuration = {
  adapter: adapterFactory({ store, maxAccessTokenTTL: 3600, jwtLookup: async () => undefined }),
  clients,
  jwks: { keys: [signingKey] as NonNullable<Configuration['jwks']>['keys'] },
  // Only an ES256 key is held, so ES256 is every client's default (the broker does the same).
  clientDefaults: { grant_types: ['client_credentials'], response_types: [], token_endpoint_auth_method: 'private_key_jwt', id_token_signed_response_alg: 'ES256' },
  cookies: { keys: ['bench-cookie-key-0123456789abcdef'] },
  scopes: ['openid', ...RESOURCE_SCOPES],
  clockTolerance: 15,
  ttl: { ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // As the broker: the token's own client, or the resource server for the token's audience.
      allowedPolicy: async (_ctx, client, token) => {
        if (client.clientId === token.clientId) return true;
        const audiences = ([] as unknown[]).concat(('aud' in token ? token.aud : undefined) ?? []);
        return client.clientId === RS_CLIENT && audiences.some((a) => typeof a === 'string' && a in resources);
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        const r = resources[resourceIndicator];
        if (!r) throw new errors.InvalidTarget();
        return { scope: RESOURCE_SCOPES.join(' '), audience: resourceIndicator, accessTokenTTL: r.ttl, accessTokenFormat: r.format, ...(r.format === 'jwt' && { jwt: { sign: { alg: 'ES256' } } }) };
      },
    },
  },
  enabledJWA: {
    clientAuthSigningAlgValues: ['ES256', 'ES384', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA'],
  },
};

const provider = new Provider(ISSUER, configuration);
// The broker's atomic replay check (src/oidc/provider.ts), so both use one store write per assertion.
provider.ReplayDetection.unique = async (iss: string, jti: string, exp: number) => {
  const ttl = Math.max(1, exp - Math.floor(Date.now() / 1000));
  const key = `jti:${createHash('sha256').update(`${iss}\0${jti}`).digest('base64url')}`;
  try {
    return await store.replay.rememberOnce(key, ttl);
  } catch (err) {
    return unavailable(err);
  }
};

const server = createServer(provider.callback());
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
serve(server, async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await store.close();
}, profilerCommands());
