import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { freePort } from '../peers/ports.ts';

export const API = 'https://api.test';
export const OPAQUE_API = 'https://opaque.test';
export const REDIRECT = 'https://client.test/cb';
export const TEST_KEK = Buffer.alloc(32, 7).toString('base64url');

export interface ClientKey {
  privateKey: CryptoKey;
  jwk: JWK;
}

export async function clientKey(alg = 'ES256'): Promise<ClientKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: `k-${alg}`, alg, use: 'sig' };
  return { privateKey, jwk };
}

export interface TestBroker {
  broker: Broker;
  server: Server;
  base: string;
  close(): Promise<void>;
}

/** A test configuration: a code-flow web client, a public app, a private_key_jwt service, a resource server. */
export function testConfig(port: number, store: string, svcKey: ClientKey, extra: Partial<ConfigInput> = {}): ConfigInput {
  return {
    port,
    store,
    issuer: `http://localhost:${port}`,
    profile: 'demo',
    logLevel: 'silent',
    secrets: { keyEncryptionKey: TEST_KEK },
    resources: [
      { identifier: API, scopes: ['patient/Patient.rs', 'system/Patient.rs', 'system/Observation.rs'], format: 'jwt', accessTokenTTL: 300, introspectionClients: ['rs'] },
      { identifier: OPAQUE_API, scopes: ['system/Patient.rs'], format: 'opaque', accessTokenTTL: 300, introspectionClients: ['rs'] },
    ],
    clients: [
      { client_id: 'web', client_secret: 'web-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [REDIRECT], resources: [API], firstParty: true, scope: 'openid profile offline_access patient/Patient.rs' },
      { client_id: 'public-app', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], redirect_uris: [REDIRECT], firstParty: false, scope: 'openid profile' },
      { client_id: 'svc', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [svcKey.jwk as { kty: string }] }, grant_types: ['client_credentials'], resources: [API, OPAQUE_API], scope: 'system/Patient.rs system/Observation.rs' },
      { client_id: 'rs', client_secret: 'rs-secret-0123456789ab', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'] },
      { client_id: 'other', client_secret: 'other-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], resources: [API], scope: 'system/Patient.rs' },
    ],
    ...extra,
  };
}

export async function startTestBroker(opts: { store?: string; svcKey: ClientKey; extra?: Partial<ConfigInput> }): Promise<TestBroker> {
  const port = await freePort();
  const store = opts.store ?? `sqlite:${join(mkdtempSync(join(tmpdir(), 'broker-test-')), 'broker.db')}`;
  const config = parseConfig(testConfig(port, store, opts.svcKey, opts.extra), {});
  const broker = await createBroker(config, { log: pino({ level: 'silent' }), env: {} });
  const server = await broker.listen(port, '127.0.0.1');
  const base = `http://localhost:${(server.address() as AddressInfo).port}`;
  return {
    broker,
    server,
    base,
    async close() {
      server.closeAllConnections();
      await broker.close();
    },
  };
}
