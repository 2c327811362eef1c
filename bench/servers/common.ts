import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JWK } from 'jose';
import type { ClientMetadata } from 'oidc-provider';

// Shared by the benchmark driver (bench/run.ts) and the servers it starts (bench/servers/*.ts). Every
// server under test uses the same issuer whatever its port, so one pool of pre-signed client
// assertions (aud = issuer) serves all of them; each server has its own SQLite file, so a jti used
// against one server is still fresh for the next.

export const ISSUER = 'http://broker.bench.localhost';
export const CLIENT_ID = 'svc';
export const RESOURCE = 'https://api.test';
export const RESOURCE_SCOPES = ['system/Patient.rs', 'system/Observation.rs'];
export const SCOPE = 'system/Patient.rs';
export const ACCESS_TOKEN_TTL = 300;
/** Only for the benchmark's throw-away stores. */
export const BENCH_KEK = Buffer.alloc(32, 9).toString('base64url');

export interface ServerSpec {
  /** `sqlite:/tmp/…/broker.db` */
  store: string;
  /** The svc client's public ES256 key (with kid, alg, use). */
  clientJwk: JWK;
  logLevel: string;
}

/** What a server child reports over IPC. */
export type ChildMessage =
  | { type: 'ready'; port: number; pid: number }
  | { type: 'stats'; cpuUserUs: number; cpuSystemUs: number; rss: number }
  | { type: 'result'; [key: string]: unknown };

export type ParentMessage = { type: 'stats' } | { type: 'stop' };

export function readSpec(): ServerSpec {
  const raw = process.env.BENCH_SPEC;
  if (!raw) throw new Error('BENCH_SPEC is not set; bench/servers/* are started by bench/run.ts');
  return JSON.parse(raw) as ServerSpec;
}

/** The svc client as oidc-provider metadata (the same shape the broker derives from its config). */
export function clientMetadata(spec: ServerSpec): ClientMetadata {
  return {
    client_id: CLIENT_ID,
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [spec.clientJwk as NonNullable<ClientMetadata['jwks']>['keys'][number]] },
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: RESOURCE_SCOPES.join(' '),
  };
}

function send(message: ChildMessage): void {
  process.send?.(message);
}

/**
 * Tells the driver the port, answers CPU/RSS questions, and stops on request (exiting normally, so
 * that `--cpu-prof` writes its profile).
 */
export function serve(server: Server, close: () => Promise<void>): void {
  send({ type: 'ready', port: (server.address() as AddressInfo).port, pid: process.pid });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.closeAllConnections();
    const timer = setTimeout(() => process.exit(0), 3000);
    try {
      await close();
    } finally {
      clearTimeout(timer);
      process.exit(0);
    }
  };
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'stats') {
      const cpu = process.cpuUsage();
      send({ type: 'stats', cpuUserUs: cpu.user, cpuSystemUs: cpu.system, rss: process.memoryUsage().rss });
    } else if (m.type === 'stop') void stop();
  });
  process.on('SIGTERM', () => void stop());
  // The driver went away: do not linger.
  process.on('disconnect', () => void stop());
}
