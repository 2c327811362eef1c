import { createServer } from 'node:http';
import { parseConfig } from '../../src/config/load.ts';
import { createSealer, parseDataKey } from '../../src/crypto/seal.ts';
import { openStore } from '../../src/store/open.ts';
import { ensureKeys, privateJwks, publicJwks } from '../../src/oidc/keys.ts';
import { buildProvider } from '../../src/oidc/provider.ts';
import { renderError, logoutSource, postLogoutSuccessSource } from '../../src/web/views/provider-pages.ts';
import { BENCH_KEK, profilerCommands, readSpec, serve, type BrokerSpec } from './common.ts';
import { brokerConfigInput } from './config.ts';

// Diagnostic, not a target: the broker's own oidc-provider (buildProvider, with every feature and
// hook the broker configures) mounted directly on node:http, without the broker's Koa app around it.
// broker/provider isolates the Koa wrapper; provider/bare isolates the provider configuration.

const spec = readSpec<BrokerSpec>();
const config = parseConfig(brokerConfigInput({ ...spec, port: 0 }), {});
const store = openStore(config.store);
const sealer = createSealer([parseDataKey(BENCH_KEK)]);
const keys = await ensureKeys(store.keys, sealer, ['ES256', 'PS256']);
const provider = buildProvider({
  config,
  store,
  jwks: privateJwks(keys, sealer) as Parameters<typeof buildProvider>[0]['jwks'],
  publicJwks: () => publicJwks(keys),
  cookieKeys: ['bench-cookie-key-0123456789abcdef'],
  findAccount: async () => undefined,
  // No delegated tokens in the client_credentials scenarios it serves.
  delegation: { accessTokenTTL: 300, tokenClaims: async () => ({}), stillActive: async () => false, canActForOthers: async () => false },
  pages: { renderError, logoutSource, postLogoutSuccessSource },
});

const server = createServer(provider.callback());
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
serve(server, async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await store.close();
}, profilerCommands());
