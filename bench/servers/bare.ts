import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import Provider, { errors, type Configuration } from 'oidc-provider';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { openStore } from '../../src/store/open.ts';
import { adapterFactory, unavailable } from '../../src/oidc/adapter.ts';
import { ACCESS_TOKEN_TTL, CLIENT_ID, ISSUER, RESOURCE, RESOURCE_SCOPES, clientMetadata, readSpec, serve } from './common.ts';

// The baseline: a bare oidc-provider configured for the same grant as the broker - same client
// (private_key_jwt, ES256), same resource (JWT access tokens, ES256), an ES256 signing key, the same
// store-backed adapter over its own SQLite file and the same atomic replay check - mounted directly on
// node:http with no Koa wrapper, so broker/bare measures what the broker adds around oidc-provider.

const spec = readSpec();
const store = openStore(spec.store);

const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const signingKey: JWK = { ...(await exportJWK(privateKey)), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

const configuration: Configuration = {
  adapter: adapterFactory({ store, maxAccessTokenTTL: ACCESS_TOKEN_TTL, jwtLookup: async () => undefined }),
  clients: [clientMetadata(spec)],
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
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) throw new errors.InvalidTarget();
        return { scope: RESOURCE_SCOPES.join(' '), audience: RESOURCE, accessTokenTTL: ACCESS_TOKEN_TTL, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
      },
    },
  },
  enabledJWA: {
    clientAuthSigningAlgValues: ['ES256', 'ES384', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA'],
  },
};

const provider = new Provider(ISSUER, configuration);
// The broker's atomic replay check (src/oidc/provider.ts), so both use one INSERT per assertion.
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
});
