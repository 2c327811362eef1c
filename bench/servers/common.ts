import { writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { Session } from 'node:inspector/promises';
import type { AddressInfo } from 'node:net';
import type { JWK } from 'jose';
import type { ClientMetadata } from 'oidc-provider';

// Shared by the benchmark driver (bench/run.ts) and the servers it starts (bench/servers/*.ts). Every
// server under test uses the same issuer whatever its port, so one pool of pre-signed client
// assertions (aud = issuer) serves all of them; each server has its own store (its own SQLite file or
// Redis database), so a jti used against one server is still fresh for the next. Browser-like flows
// map the issuer's origin to the port of the server they drive (bench/scenarios/http.ts).

export const ISSUER = 'http://broker.bench.localhost';
export const CLIENT_ID = 'svc';
export const RESOURCE = 'https://api.test';
export const RESOURCE_SCOPES = ['system/Patient.rs', 'system/Observation.rs'];
export const SCOPE = 'system/Patient.rs';
export const ACCESS_TOKEN_TTL = 300;
/** Only for the benchmark's throw-away stores. */
export const BENCH_KEK = Buffer.alloc(32, 9).toString('base64url');

// The wider client set of `npm run bench` (bench/servers/config.ts, bench/servers/bare.ts).
/** Opaque (stored) access tokens. */
export const OPAQUE_RESOURCE = 'https://opaque.test';
/** Target of token exchanges. */
export const RESOURCE2 = 'https://api2.test';
export const PATIENT_SCOPES = ['patient/Patient.rs', 'patient/Observation.rs'];
export const USER_SCOPE = 'user/Patient.rs';
/** client_credentials with client_secret_basic. */
export const BASIC_CLIENT = 'svc-basic';
export const BASIC_SECRET = 'svc-basic-secret-0123456789';
/** The resource server that introspects. */
export const RS_CLIENT = 'rs';
export const RS_SECRET = 'rs-secret-0123456789abcdef';
/** The code-flow web client (first party: no consent page). */
export const WEB_CLIENT = 'web';
export const WEB_SECRET = 'web-secret-0123456789abcdef';
export const REDIRECT = 'https://client.bench.test/cb';
export const WEB_SCOPE = `openid profile offline_access ${PATIENT_SCOPES.join(' ')} ${USER_SCOPE}`;
/** Upstream ids in the broker's configuration. */
export const SCRIPTED_UPSTREAM = 'bench-nhs';
export const CIS2_UPSTREAM = 'cis2';
export const SAML_UPSTREAM = 'trust-idp';
/** The external ID-token issuer of token exchange (a CIS2-like key served by the driver). */
export const EXTERNAL_AUDIENCE = 'bench-cis2-client';
export const EXTERNAL_ISSUER_ID = 'cis2-idt';
/** The fake CIS2 upstream's client registration for the broker. */
export const CIS2_BROKER_CLIENT_ID = '123456789012.apps.national';

export interface ServerSpec {
  /** `sqlite:/tmp/…/broker.db` or `redis://127.0.0.1:port/db` */
  store: string;
  /** The svc client's public ES256 key (with kid, alg, use). */
  clientJwk: JWK;
  logLevel: string;
}

/** What `npm run bench` hands the broker child (bench/servers/broker.ts). */
export interface BrokerSpec extends ServerSpec {
  port: number;
  /** Upstream OIDC provider (the fake CIS2 in its own process). */
  cis2?: { issuer: string; privateJwk: JWK };
  /** Upstream SAML IdP (SimpleSAMLphp). */
  saml?: { metadataFile: string; spKeyPem: string; spCertPem: string };
  /** External ID-token issuer for token exchange. */
  external?: { issuer: string; jwksUri: string };
}

/** What a server child reports over IPC. */
export type ChildMessage =
  | { type: 'ready'; port: number; pid: number }
  | { type: 'stats'; cpuUserUs: number; cpuSystemUs: number; rss: number }
  | { type: 'reply'; id: number; ok: boolean; value?: unknown; error?: string }
  | { type: 'result'; [key: string]: unknown };

export type ParentMessage = { type: 'stats' } | { type: 'stop' } | { type: 'command'; id: number; name: string; args?: unknown };

/** Commands a child answers (`type: 'command'` → `type: 'reply'`). */
export type Commands = Record<string, (args: never) => Promise<unknown>>;

export function readSpec<T extends ServerSpec = ServerSpec>(): T {
  const raw = process.env.BENCH_SPEC;
  if (!raw) throw new Error('BENCH_SPEC is not set; bench/servers/* are started by bench/run.ts');
  return JSON.parse(raw) as T;
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
 * Tells the driver the port, answers CPU/RSS questions and commands, and stops on request (exiting
 * normally, so that `--cpu-prof` writes its profile).
 */
export function serve(server: Server, close: () => Promise<void>, commands: Commands = {}): void {
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
    else if (m.type === 'command') {
      const handler = commands[m.name] as ((args: unknown) => Promise<unknown>) | undefined;
      if (!handler) {
        send({ type: 'reply', id: m.id, ok: false, error: `unknown command ${m.name}` });
        return;
      }
      handler(m.args).then(
        (value) => send({ type: 'reply', id: m.id, ok: true, value }),
        (err: unknown) => send({ type: 'reply', id: m.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
      );
    }
  });
  process.on('SIGTERM', () => void stop());
  // The driver went away: do not linger.
  process.on('disconnect', () => void stop());
}

/**
 * CPU profiles of one scenario at a time (the inspector's sampling profiler, started and stopped by
 * the driver), so a profile holds that scenario's work only; idle time is left out when summarised.
 */
export function profilerCommands(): Commands {
  let session: Session | undefined;
  return {
    async profileStart() {
      session = new Session();
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 200 });
      await session.post('Profiler.start');
      return true;
    },
    async profileStop(args: { file: string }) {
      if (!session) throw new Error('not profiling');
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      session = undefined;
      writeFileSync(args.file, JSON.stringify(profile));
      return args.file;
    },
  };
}
