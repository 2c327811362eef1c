import { parseConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { createBroker } from '../../src/server.ts';
import { ACCESS_TOKEN_TTL, BENCH_KEK, CLIENT_ID, ISSUER, RESOURCE, RESOURCE_SCOPES, readSpec, serve } from './common.ts';

// The broker under test: the real composition root (src/server.ts) with a production-shaped
// configuration (profile none, one private_key_jwt service client, one JWT resource), listening on a
// free loopback port. Signing keys (ES256 + PS256) are generated into the store by ensureKeys.

const spec = readSpec();
const config = parseConfig(
  {
    port: 0,
    host: '127.0.0.1',
    issuer: ISSUER,
    store: spec.store,
    profile: 'none',
    logLevel: spec.logLevel as 'silent',
    secrets: { keyEncryptionKey: BENCH_KEK },
    resources: [{ identifier: RESOURCE, scopes: RESOURCE_SCOPES, format: 'jwt', accessTokenTTL: ACCESS_TOKEN_TTL, signingAlg: 'ES256' }],
    clients: [
      {
        client_id: CLIENT_ID,
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [spec.clientJwk as { kty: string }] },
        grant_types: ['client_credentials'],
        resources: [RESOURCE],
        scope: RESOURCE_SCOPES.join(' '),
      },
    ],
  },
  {},
);
// As src/main.ts does: pino at the configured level (silent by default in the benchmark; with
// BENCH_LOG_LEVEL=info the access log is serialised and written to /dev/null).
const broker = await createBroker(config, { log: createLogger(config.logLevel), env: {} });
const server = await broker.listen(0, '127.0.0.1');
serve(server, () => broker.close());
