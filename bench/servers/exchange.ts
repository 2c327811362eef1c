import { parseConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { createBroker } from '../../src/server.ts';
import { ACCESS_TOKEN_TTL, BENCH_KEK, CLIENT_ID, ISSUER, RESOURCE, RESOURCE_SCOPES, serve } from './common.ts';

// The broker for bench/exchange.ts: the real composition root with a token-exchange policy. One
// private_key_jwt service (svc) may exchange (a) the broker's own access tokens of the web client and
// (b) ID tokens of a CIS2-like issuer whose JWKS the driver serves on loopback, for RESOURCE2.
// It mints the broker subject token itself (a user grant and an access token, as a login would leave
// them) and hands it to the driver.

export const RESOURCE2 = 'https://api2.test';
export const CIS2_AUDIENCE = 'bench-cis2-client';

interface ExchangeSpec {
  store: string;
  clientJwk: Record<string, unknown>;
  logLevel: string;
  cis2Issuer: string;
  cis2JwksUri: string;
}

const raw = process.env.BENCH_SPEC;
if (!raw) throw new Error('BENCH_SPEC is not set; bench/servers/exchange.ts is started by bench/exchange.ts');
const spec = JSON.parse(raw) as ExchangeSpec;
const TE = 'urn:ietf:params:oauth:grant-type:token-exchange' as const;

const config = parseConfig(
  {
    port: 0,
    host: '127.0.0.1',
    issuer: ISSUER,
    store: spec.store,
    profile: 'none',
    logLevel: spec.logLevel as 'silent',
    secrets: { keyEncryptionKey: BENCH_KEK },
    // One load generator on one IP: the per-IP and per-client limits would measure themselves.
    rateLimits: { tokenPerIp: 0, tokenPerClient: 0, loginPerIp: 0, exchangePerSubjectToken: 0, accountPerMinute: 0, accountChangesPerHour: 0, invitationAttemptsPerAccount: 0, invitationAttemptsPerIp: 0 },
    resources: [
      { identifier: RESOURCE, scopes: RESOURCE_SCOPES, format: 'jwt', accessTokenTTL: ACCESS_TOKEN_TTL, signingAlg: 'ES256' },
      { identifier: RESOURCE2, scopes: RESOURCE_SCOPES, format: 'jwt', accessTokenTTL: ACCESS_TOKEN_TTL, signingAlg: 'ES256' },
    ],
    clients: [
      { client_id: CLIENT_ID, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [spec.clientJwk as { kty: string }] }, grant_types: ['client_credentials', TE], resources: [RESOURCE, RESOURCE2], scope: RESOURCE_SCOPES.join(' ') },
      { client_id: 'web', client_secret: 'bench-web-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: ['https://web.bench.test/cb'], resources: [RESOURCE], scope: `openid ${RESOURCE_SCOPES.join(' ')}` },
    ],
    exchange: {
      allowInsecureJwksUris: true,
      issuers: [{ id: 'cis2', kind: 'cis2', issuer: spec.cis2Issuer, jwks_uri: spec.cis2JwksUri, algorithms: ['RS256'], audiences: [CIS2_AUDIENCE], tokenTypes: ['id_token'] }],
      rules: [
        { id: 'bench-self', clients: [CLIENT_ID], subjectIssuers: ['self'], subjectTokenTypes: ['access_token'], subjectClients: ['web'], resources: [RESOURCE2], scopes: RESOURCE_SCOPES },
        { id: 'bench-cis2', clients: [CLIENT_ID], subjectIssuers: ['cis2'], subjectTokenTypes: ['id_token'], resources: [RESOURCE2], scopes: RESOURCE_SCOPES, minimumAssurance: { aal: 3 } },
      ],
    },
  },
  {},
);
const broker = await createBroker(config, { log: createLogger(config.logLevel), env: {} });
const server = await broker.listen(0, '127.0.0.1');

// A user's grant and access token for the web client, as the code flow would have left them.
const provider = broker.provider();
const web = await provider.Client.find('web');
const grant = new provider.Grant({ accountId: 'bench-user', clientId: 'web' });
grant.addOIDCScope('openid');
grant.addResourceScope(RESOURCE, RESOURCE_SCOPES.join(' '));
const grantId = await grant.save();
const resource = config.resources.find((r) => r.identifier === RESOURCE)!;
const token = new provider.AccessToken({
  client: web!,
  accountId: 'bench-user',
  grantId,
  gty: 'authorization_code',
  scope: RESOURCE_SCOPES.join(' '),
  expiresIn: 3600,
  resourceServer: new provider.ResourceServer(RESOURCE, { scope: RESOURCE_SCOPES.join(' '), audience: RESOURCE, accessTokenTTL: 3600, accessTokenFormat: 'jwt', jwt: { sign: { alg: resource.signingAlg } } }),
});
const subjectToken = await token.save();
process.send?.({ type: 'result', subjectToken });
serve(server, () => broker.close());
