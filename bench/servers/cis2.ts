import type { ClientMetadata } from 'oidc-provider';
import { CIS2_CLIENT_ID, startFakeCis2 } from '../../test/peers/fake-cis2.ts';
import type { JWK } from 'jose';
import { CIS2_BROKER_CLIENT_ID } from './common.ts';

// The upstream OpenID Provider of the brokered-login scenario: the tests' fake CIS2 (a real
// oidc-provider 9 with CIS2's paths, RS256 ID tokens, private_key_jwt with aud = token endpoint,
// roles in userinfo), in its own process so that it never shares the broker's core. The driver pins
// it to the load generator's core. Login is non-interactive: login_hint names the persona.

interface Cis2Spec {
  redirectUris: string[];
  /** The broker's public RS512 key for private_key_jwt at the token endpoint. */
  brokerJwk: JWK;
}

const spec = JSON.parse(process.env.BENCH_SPEC ?? '{}') as Cis2Spec;
if (CIS2_CLIENT_ID !== CIS2_BROKER_CLIENT_ID) throw new Error('client id drift between bench and test/peers/fake-cis2.ts');
const client: ClientMetadata = {
  client_id: CIS2_BROKER_CLIENT_ID,
  redirect_uris: spec.redirectUris,
  token_endpoint_auth_method: 'private_key_jwt',
  token_endpoint_auth_signing_alg: 'RS512',
  id_token_signed_response_alg: 'RS256',
  jwks: { keys: [spec.brokerJwk as { kty: string }] } as ClientMetadata['jwks'],
  grant_types: ['authorization_code'],
  response_types: ['code'],
};
const op = await startFakeCis2({ clients: [client] });
// What the fake records of every request would grow without bound over thousands of logins.
setInterval(() => {
  op.received.authorize.length = 0;
  op.received.token.length = 0;
  op.received.idTokenKids.length = 0;
}, 1000).unref();
process.send?.({ type: 'ready', port: op.port, pid: process.pid });
process.send?.({ type: 'result', issuer: op.issuer });
const stop = async () => {
  await op.close();
  process.exit(0);
};
process.on('message', (m: { type?: string }) => {
  if (m.type === 'stop') void stop();
});
process.on('disconnect', () => void stop());
