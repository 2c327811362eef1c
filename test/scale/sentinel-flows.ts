// Shared by the Sentinel failover and split-brain tests (not a test file): brokers in this process on a
// store the test opens itself, and the requests whose replay the tests try after a failover.
import { createHash, randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import type { Store } from '../../src/store/contracts.ts';
import { API, REDIRECT, testConfig, type ClientKey } from '../helpers/broker.ts';
import { UserAgent, loginThroughDemo } from '../helpers/browser.ts';
import { freePort } from '../peers/ports.ts';

const FORM = 'application/x-www-form-urlencoded';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
const WEB = basic('web', 'web-secret-0123456789');
const OTHER = basic('other', 'other-secret-0123456789');

export interface Node {
  broker: Broker;
  server: Server;
  base: string;
  close(): Promise<void>;
}

/**
 * A broker on `store` (closed by the caller, not by the broker). Nodes given the same `issuer` form one
 * deployment: a code or token from one is good on the other.
 */
export async function brokerOn(store: Store, svcKey: ClientKey, issuer?: string, errors?: string[]): Promise<Node> {
  const port = await freePort();
  const cfg = testConfig(port, 'redis://127.0.0.1:1', svcKey, { issuer: issuer ?? `http://localhost:${port}`, rateLimits: { tokenPerIp: 0, tokenPerClient: 0, loginPerIp: 0 } });
  // The store URL is never opened: the store is handed in. With `errors`, the broker's error log lines land there (for a failure message); otherwise silent.
  const log = errors ? pino({ level: 'error' }, { write: (line: string) => void errors.push(line) }) : pino({ level: 'silent' });
  const broker = await createBroker(parseConfig(cfg, {}), { log, env: {}, store });
  const server = await broker.listen(port, '127.0.0.1');
  return {
    broker,
    server,
    base: `http://localhost:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections();
      await broker.close();
    },
  };
}

/** A user agent that keeps every status it saw, so a test can check that a login never met a 500. */
export class RecordingAgent extends UserAgent {
  readonly statuses: number[] = [];
  /** Any 5xx other than 503: where, and what the broker said. */
  readonly failures: string[] = [];
  override async request(url: string, init: RequestInit = {}): Promise<Response> {
    const res = await super.request(url, init);
    this.statuses.push(res.status);
    if (res.status >= 500 && res.status !== 503) this.failures.push(`${init.method ?? 'GET'} ${new URL(url).pathname} ${res.status} ${(await res.clone().text()).slice(0, 300)}`);
    return res;
  }
}

export interface Code {
  code: string;
  verifier: string;
}

/** A full login of the patient persona through `node`, up to the code (offline_access, so a refresh token follows). */
export async function newCode(node: Node, ua: UserAgent = new UserAgent()): Promise<Code> {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const params = { client_id: 'web', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid offline_access patient/Patient.rs', resource: API, code_challenge: challenge, code_challenge_method: 'S256', state: 's', nonce: 'n', prompt: 'consent' };
  const back = await loginThroughDemo(ua, `${node.base}/auth?${new URLSearchParams(params)}`, 'patient', node.base);
  const code = back.searchParams.get('code');
  if (!code) throw new Error(`login ended without a code: ${back.href}`);
  return { code, verifier };
}

function post(node: Node, params: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${node.base}/token`, { method: 'POST', headers: { 'content-type': FORM, ...headers }, body: new URLSearchParams(params) });
}

export function redeem(node: Node, c: Code): Promise<Response> {
  return post(node, { grant_type: 'authorization_code', code: c.code, redirect_uri: REDIRECT, code_verifier: c.verifier }, { authorization: WEB });
}

export function refresh(node: Node, refreshToken: string): Promise<Response> {
  return post(node, { grant_type: 'refresh_token', refresh_token: refreshToken }, { authorization: WEB });
}

/** RFC 7009 revocation of a refresh token by its client. */
export function revoke(node: Node, refreshToken: string): Promise<Response> {
  return fetch(`${node.base}/token/revocation`, { method: 'POST', headers: { 'content-type': FORM, authorization: WEB }, body: new URLSearchParams({ token: refreshToken, token_type_hint: 'refresh_token' }) });
}

/** A private_key_jwt client assertion for `svc` with a fresh jti; aud is the issuer. */
export function clientAssertion(issuer: string, svcKey: ClientKey): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: 'svc', sub: 'svc', aud: issuer, iat: now, exp: now + 300, jti: randomBytes(12).toString('hex') })
    .setProtectedHeader({ alg: 'ES256', kid: svcKey.jwk.kid })
    .sign(svcKey.privateKey);
}

/** client_credentials authenticated by a client assertion (its jti goes through the replay cache). */
export function assertionGrant(node: Node, assertion: string): Promise<Response> {
  return post(node, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion, scope: 'system/Patient.rs', resource: API });
}

export interface DpopKey {
  privateKey: CryptoKey;
  jwk: JWK;
}

export async function dpopKey(): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, jwk: await exportJWK(publicKey) };
}

/** A DPoP proof for POST <node>/token with a fresh jti. */
export function dpopProof(node: Node, key: DpopKey): Promise<string> {
  return new SignJWT({ htm: 'POST', htu: `${node.base}/token`, iat: Math.floor(Date.now() / 1000), jti: randomBytes(12).toString('hex') })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.jwk })
    .sign(key.privateKey);
}

/** client_credentials (client_secret_basic) with a DPoP proof: the proof's jti goes through the replay cache. */
export function dpopGrant(node: Node, proof: string): Promise<Response> {
  return post(node, { grant_type: 'client_credentials', scope: 'system/Patient.rs', resource: API }, { authorization: OTHER, dpop: proof });
}

export async function errorOf(res: Response): Promise<string | undefined> {
  try {
    return ((await res.json()) as { error?: string }).error;
  } catch {
    return undefined;
  }
}
