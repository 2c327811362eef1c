// Offline validation of deploy/: what can be checked without a Docker engine or a Kubernetes cluster.
//
// Static: every YAML parses; the compose file, the Kubernetes manifests and the Dockerfile have the
// properties the deployment relies on (non-root, read-only, probes, secrets never inline...); the
// runtime image needs no devDependency; deploy/broker.yaml and the ConfigMap pass the broker's own
// `config check`.
// Live (real peers on loopback, like the rest of the suite): Redis started from deploy/redis/redis.conf
// with the compose file's own command and health check; two brokers started from deploy/broker.yaml
// with the image's secret loading; deploy/nginx.conf checked by `nginx -t`, then serving both brokers
// round-robin, refusing oversized bodies, and failing over when one broker is stopped with SIGTERM.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { parseDataKey } from '../../src/crypto/seal.ts';
import { parseRedisUrl } from '../../src/store/redis/url.ts';
import { peerAvailable } from '../peers/peer.ts';
import { freePort } from '../peers/ports.ts';

const ROOT = resolve('.');
const DEPLOY = resolve('deploy');
const MAIN = resolve('src/main.ts');
const PRELOAD = resolve('deploy/env-from-files.mjs');

// Files in deploy/ that other work owns; everything else there is checked here.
const NOT_OURS = new Set(['nginx-smartcard.conf', 'README-smartcard.md']);

const read = (p: string) => readFileSync(join(DEPLOY, p), 'utf8');

// Temporary directories, removed when the file is done.
const TEMP: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  TEMP.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of TEMP) rmSync(dir, { recursive: true, force: true });
});
type Obj = Record<string, any>;

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

/** Every document of a YAML file, failing on any syntax error. Merge keys (`<<: *anchor`) as compose reads them. */
function yamlDocs(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { merge: true });
  const list = Array.isArray(docs) ? docs : [docs];
  for (const d of list) expect(d.errors.map((e) => e.message), file).toEqual([]);
  return list.map((d) => d.toJS({ maxAliasCount: 100 }) as Obj).filter((d) => d != null);
}

/** `${NAME}` references in the values of a parsed configuration (not in comments). */
function envRefs(value: unknown, out = new Set<string>()): Set<string> {
  if (typeof value === 'string') for (const m of value.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) out.add(m[1]);
  else if (Array.isArray(value)) value.forEach((v) => envRefs(v, out));
  else if (value && typeof value === 'object') Object.values(value).forEach((v) => envRefs(v, out));
  return out;
}

/** Dummy values for the referenced variables: a URL for issuers, a long enough string for the rest. */
function dummyEnv(names: Iterable<string>): Record<string, string> {
  return Object.fromEntries([...names].map((n) => [n, /ISSUER|URL/.test(n) ? 'https://broker.example.test' : `dummy-${n.toLowerCase()}-0123456789`]));
}

function configCheck(file: string, env: Record<string, string>) {
  const cwd = tempDir('deploy-check-');
  return spawnSync(process.execPath, [MAIN, 'config', 'check', '--config', file], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', timeout: 30_000 });
}

/** Placeholder values only: `<REPLACE: ...>`. */
const PLACEHOLDER = /^<REPLACE:[^<>]*>$/;

describe('deploy/: every YAML file parses', () => {
  const files = walk(DEPLOY).filter((f) => /\.ya?ml$/.test(f));
  it('finds the YAML files', () => {
    expect(files.map((f) => relative(DEPLOY, f)).sort()).toEqual(expect.arrayContaining(['broker.yaml', 'docker-compose.yml', 'k8s/deployment.yaml', 'k8s/configmap.yaml']));
  });
  it.each(files.map((f) => [relative(DEPLOY, f), f]))('%s', (_name, file) => {
    expect(yamlDocs(file).length).toBeGreaterThan(0);
  });
});

describe('deploy/broker.yaml', () => {
  const config = parse(read('broker.yaml')) as Obj;
  const refs = envRefs(config);

  it('passes the broker’s own validation (config check exits 0)', () => {
    const r = configCheck(join(DEPLOY, 'broker.yaml'), dummyEnv(refs));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/configuration ok/);
  });

  it('fails the check, naming the variable, when a secret is missing from the environment', () => {
    const env = dummyEnv(refs);
    delete env.BROKER_KEK;
    const r = configCheck(join(DEPLOY, 'broker.yaml'), env);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('environment variable BROKER_KEK is not set');
  });

  it('is for several instances behind the proxy: Redis store, trustProxy, no demo profile', () => {
    expect(config.store).toMatch(/^redis:\/\/broker:\$\{REDIS_PASSWORD\}@redis:6379$/);
    expect(config.trustProxy).toBe(true);
    expect(config.profile ?? 'none').toBe('none');
    expect(config.issuer).toBe('${BROKER_ISSUER}');
  });

  it('holds no secret inline: the KEK and every client secret come from ${ENV}', () => {
    expect(config.secrets.keyEncryptionKey).toBe('${BROKER_KEK}');
    for (const c of config.clients as Obj[]) if ('client_secret' in c) expect(c.client_secret, c.client_id).toMatch(/^\$\{[A-Z0-9_]+\}$/);
    expect([...refs].sort()).toEqual(['BROKER_ISSUER', 'BROKER_KEK', 'FHIR_GATEWAY_CLIENT_SECRET', 'INTEGRATION_SERVICE_CLIENT_SECRET', 'REDIS_PASSWORD']);
  });
});

describe('deploy/docker-compose.yml', () => {
  const compose = yamlDocs(join(DEPLOY, 'docker-compose.yml'))[0];
  const services = compose.services as Record<string, Obj>;
  const brokers = Object.entries(services).filter(([, s]) => s.build?.dockerfile === 'deploy/Dockerfile');
  const brokerConfig = parse(read('broker.yaml')) as Obj;

  it('has two broker services built from deploy/Dockerfile, with the same image and the same config file', () => {
    expect(brokers.map(([n]) => n).sort()).toEqual(['broker-1', 'broker-2']);
    const images = new Set(brokers.map(([, s]) => s.image));
    expect(images.size).toBe(1);
    for (const [name, s] of brokers) {
      expect(s.build.context, name).toBe('..');
      expect(s.volumes, name).toContain('./broker.yaml:/etc/broker/broker.yaml:ro');
      expect(s.environment.BROKER_CONFIG, name).toBe('/etc/broker/broker.yaml');
      expect(s.environment.NODE_ENV, name).toBe('production');
    }
  });

  it('runs the brokers read-only, non-root, without capabilities, with a tmpfs and a health check', () => {
    for (const [name, s] of brokers) {
      expect(s.read_only, name).toBe(true);
      const uid = Number(String(s.user).split(':')[0]);
      expect(uid, name).toBe(10001);
      expect(s.cap_drop, name).toContain('ALL');
      expect(s.security_opt, name).toContain('no-new-privileges:true');
      expect((s.tmpfs as string[]).some((t) => t.startsWith('/tmp')), name).toBe(true);
      expect(s.healthcheck.test.join(' '), name).toContain('/healthz');
      expect(s.depends_on.redis.condition, name).toBe('service_healthy');
      expect(s.stop_signal, name).toBe('SIGTERM');
      expect(s.ports, `${name} publishes no port`).toBeUndefined();
    }
  });

  it('gives the brokers their secrets as Docker secrets (NAME_FILE), never as values', () => {
    for (const [name, s] of brokers) {
      for (const v of envRefs(brokerConfig)) {
        if (v === 'BROKER_ISSUER') continue;
        expect(s.environment[v], `${name}: ${v} must not be inline`).toBeUndefined();
        const file = s.environment[`${v}_FILE`];
        expect(file, `${name}: ${v}_FILE`).toMatch(/^\/run\/secrets\/[a-z_]+$/);
        const secret = file.slice('/run/secrets/'.length);
        expect(s.secrets, name).toContain(secret);
        expect(compose.secrets[secret], secret).toBeTruthy();
        expect(compose.secrets[secret].file ?? compose.secrets[secret].environment, secret).toBeTruthy();
      }
      for (const [k, v] of Object.entries(s.environment as Record<string, string>)) {
        if (/KEK|SECRET|PASSWORD/.test(k)) expect(k, `${name}: ${k}=${v}`).toMatch(/_FILE$/);
      }
    }
  });

  it('runs Redis with AOF persistence on a volume, noeviction, ACL users and a health check, on an internal network', () => {
    const redis = services.redis;
    expect(redis.image).toMatch(/^redis:7/);
    const command = (redis.command as string[]).join(' ');
    expect(command).toContain('--appendonly yes');
    expect(command).toContain('--appendfsync everysec');
    expect(command).toContain('--user default off');
    expect(redis.volumes).toContain('./redis/redis.conf:/usr/local/etc/redis/redis.conf:ro');
    expect((redis.volumes as string[]).some((v) => /^[a-z-]+:\/data$/.test(v))).toBe(true);
    expect(compose.volumes['redis-data']).toBeDefined();
    expect(redis.read_only).toBe(true);
    expect(Number(String(redis.user).split(':')[0])).toBeGreaterThan(0);
    expect(redis.healthcheck.test.join(' ')).toContain('ping');
    expect(redis.ports).toBeUndefined();
    expect(redis.networks).toEqual(['back']);
    expect(compose.networks.back.internal).toBe(true);
  });

  it('puts an nginx front before both brokers, the only published port', () => {
    const front = services.front;
    expect(front.image).toMatch(/nginx/);
    expect(front.volumes).toContain('./nginx.conf:/etc/nginx/conf.d/default.conf:ro');
    expect(Object.keys(front.depends_on).sort()).toEqual(['broker-1', 'broker-2']);
    for (const d of Object.values(front.depends_on as Record<string, Obj>)) expect(d.condition).toBe('service_healthy');
    expect(front.read_only).toBe(true);
    expect(front.healthcheck).toBeDefined();
    expect(Object.entries(services).filter(([, s]) => s.ports).map(([n]) => n)).toEqual(['front']);
  });

  it('refers only to files that exist', () => {
    const base = DEPLOY;
    const mounts = Object.values(services).flatMap((s) => (s.volumes ?? []) as string[]).filter((v) => v.startsWith('./')).map((v) => v.split(':')[0]);
    for (const m of mounts) expect(existsSync(resolve(base, m)), m).toBe(true);
    for (const [, s] of brokers) expect(existsSync(resolve(base, s.build.context, s.build.dockerfile))).toBe(true);
  });
});

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function dockerInstructions(text: string): { op: string; args: string }[] {
  const lines = text.split('\n').filter((l) => !/^\s*#/.test(l));
  const joined = lines.join('\n').replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const m = /^(\S+)\s+([\s\S]*)$/.exec(l)!;
      return { op: m[1].toUpperCase(), args: m[2] };
    });
}

/** Packages the sources import at run time (type-only imports are erased by type stripping). */
function runtimeImports(files: string[]): Map<string, string> {
  const found = new Map<string, string>();
  const statement = /(?:^|[\n;])\s*(import|export)\s+(type\s+)?(?:[^'"`;]*?\s+from\s+)?['"]([^'"]+)['"]/g;
  const dynamic = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const specs: string[] = [];
    for (const m of text.matchAll(statement)) if (!m[2]) specs.push(m[3]);
    for (const m of text.matchAll(dynamic)) specs.push(m[1]);
    for (const s of specs) {
      if (s.startsWith('.') || s.startsWith('/') || s.startsWith('node:') || builtinModules.includes(s.split('/')[0])) continue;
      const name = s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0];
      if (!found.has(name)) found.set(name, relative(ROOT, file));
    }
  }
  return found;
}

describe('deploy/Dockerfile', () => {
  const text = read('Dockerfile');
  const ins = dockerInstructions(text);
  const all = (op: string) => ins.filter((i) => i.op === op);

  it('is multi-stage on Node 24', () => {
    const froms = all('FROM');
    expect(froms.length).toBeGreaterThanOrEqual(2);
    const defaultImage = /^ARG NODE_IMAGE=(\S+)/m.exec(text)?.[1];
    expect(defaultImage).toMatch(/^node:24[-.]/);
    for (const f of froms) expect(f.args).toMatch(/^(\$\{NODE_IMAGE\}|node:24[-.]\S*)\s+AS\s+\w+/i);
  });

  it('installs production dependencies only, as locked, with no build step', () => {
    const runs = all('RUN').map((r) => r.args).join('\n');
    // npm install rather than npm ci: see .ci/run (a Windows-only optional package missing from the lock).
    expect(runs).toMatch(/npm install --omit=dev --ignore-scripts/);
    expect(runs).not.toMatch(/npm run build|\btsc\b/);
  });

  it('runs as a non-root USER (10001) and sets NODE_ENV=production', () => {
    const users = all('USER');
    expect(users.length).toBeGreaterThan(0);
    const last = users.at(-1)!.args.trim();
    expect(last.split(':')[0]).toBe('10001');
    // The last instruction that sets the user comes before CMD.
    expect(ins.findIndex((i) => i === users.at(-1))).toBeLessThan(ins.findIndex((i) => i.op === 'CMD'));
    expect(all('ENV').map((e) => e.args).join(' ')).toMatch(/NODE_ENV=production/);
  });

  it('runs `node src/main.ts start`, exposes 8080, stops with SIGTERM, checks /healthz with node’s fetch, has labels', () => {
    expect(JSON.parse(all('CMD').at(-1)!.args)).toEqual(['node', 'src/main.ts', 'start']);
    expect(all('ENTRYPOINT')).toEqual([]);
    expect(all('EXPOSE').map((e) => e.args.trim())).toContain('8080');
    expect(all('STOPSIGNAL').at(-1)?.args.trim()).toBe('SIGTERM');
    const hc = all('HEALTHCHECK').at(-1)!.args;
    expect(hc).toMatch(/CMD \["node", "-e", ".*fetch\(.*\/healthz/);
    expect(all('LABEL').map((l) => l.args).join(' ')).toMatch(/org\.opencontainers\.image\.title=/);
  });

  it('adds nothing from a remote URL and copies only allow-listed paths of the build context', () => {
    for (const a of all('ADD')) expect(a.args, 'ADD').not.toMatch(/https?:\/\/|git@/);
    const allowed = readFileSync(join(DEPLOY, 'Dockerfile.dockerignore'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1).trim());
    expect(allowed).not.toContain('data');
    for (const c of all('COPY').filter((c) => !c.args.includes('--from='))) {
      const parts = c.args.split(/\s+/).filter((p) => !p.startsWith('--'));
      for (const src of parts.slice(0, -1)) {
        expect(existsSync(join(ROOT, src)), src).toBe(true);
        expect(allowed.some((a) => src === a || src.startsWith(`${a}/`)), `${src} is not in Dockerfile.dockerignore's allow-list`).toBe(true);
      }
    }
  });

  it('needs no devDependency at run time: every package src/ and providers/ import is a dependency', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const files = [...walk(resolve('src')), ...walk(resolve('providers'))].filter((f) => /\.(ts|mts|js|mjs)$/.test(f) && !/\.(test|d)\.ts$/.test(f));
    const imported = runtimeImports(files);
    expect(imported.size).toBeGreaterThan(5);
    const missing = [...imported].filter(([name]) => !(name in pkg.dependencies)).map(([name, file]) => `${name} (${file})`);
    expect(missing, 'imported at run time but not in dependencies (npm ci --omit=dev leaves them out)').toEqual([]);
  });
});

describe('deploy/env-from-files.mjs (secrets from files, loaded by the image for every node process)', () => {
  const dir = tempDir('deploy-secrets-');
  const run = (env: Record<string, string>) =>
    spawnSync(process.execPath, [`--import=${PRELOAD}`, '-e', 'process.stdout.write(JSON.stringify({ v: process.env.DEMO_SECRET ?? null, f: process.env.DEMO_SECRET_FILE ?? null }))'], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' });

  it('sets NAME from NAME_FILE (one trailing newline dropped) and removes NAME_FILE', () => {
    writeFileSync(join(dir, 's1'), 'c2VjcmV0\n');
    const r = run({ DEMO_SECRET_FILE: join(dir, 's1') });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ v: 'c2VjcmV0', f: null });
  });

  it('refuses (exit 2) both NAME and NAME_FILE, an unreadable file and an empty one, never printing contents', () => {
    writeFileSync(join(dir, 's2'), 'do-not-print-me');
    writeFileSync(join(dir, 'empty'), '\n');
    const both = run({ DEMO_SECRET: 'x', DEMO_SECRET_FILE: join(dir, 's2') });
    expect(both.status).toBe(2);
    expect(both.stderr).toContain('DEMO_SECRET and DEMO_SECRET_FILE are both set');
    expect(both.stderr).not.toContain('do-not-print-me');
    const missing = run({ DEMO_SECRET_FILE: join(dir, 'nope') });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('cannot be read (ENOENT)');
    const empty = run({ DEMO_SECRET_FILE: join(dir, 'empty') });
    expect(empty.status).toBe(2);
    expect(empty.stderr).toContain('is empty');
  });
});

describe('deploy/gen-secrets.sh', () => {
  it('generates every secret the compose file names, URL-safe, a valid 32-byte KEK, and never replaces one', () => {
    const dir = join(tempDir('deploy-gen-'), 'secrets');
    const first = spawnSync('sh', [join(DEPLOY, 'gen-secrets.sh'), dir], { encoding: 'utf8' });
    expect(first.status, first.stderr).toBe(0);
    const compose = yamlDocs(join(DEPLOY, 'docker-compose.yml'))[0];
    const names = Object.keys(compose.secrets).sort();
    expect(readdirSync(dir).sort()).toEqual(names);
    const kek = readFileSync(join(dir, 'broker_kek'), 'utf8');
    expect(parseDataKey(kek)).toHaveLength(32);
    expect(readFileSync(join(dir, 'redis_password'), 'utf8')).toMatch(/^[0-9a-f]{64}$/);
    for (const n of names) {
      const v = readFileSync(join(dir, n), 'utf8');
      expect(v, n).toMatch(/^[A-Za-z0-9_-]{32,}$/);
      expect(statSync(join(dir, n)).mode & 0o777, n).toBe(0o644);
    }
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const second = spawnSync('sh', [join(DEPLOY, 'gen-secrets.sh'), dir], { encoding: 'utf8' });
    expect(second.status).toBe(0);
    expect(readFileSync(join(dir, 'broker_kek'), 'utf8')).toBe(kek);
  });
});

describe('deploy/k8s', () => {
  const K8S = join(DEPLOY, 'k8s');
  const kustomization = yamlDocs(join(K8S, 'kustomization.yaml'))[0];
  const manifests = readdirSync(K8S)
    .filter((f) => /\.ya?ml$/.test(f) && !['kustomization.yaml', 'redis-values.yaml'].includes(f))
    .flatMap((f) => yamlDocs(join(K8S, f)).map((doc) => ({ file: f, doc })));
  const byKind = (kind: string) => manifests.filter((m) => m.doc.kind === kind).map((m) => m.doc);
  const deployment = byKind('Deployment')[0];
  const pod = deployment?.spec.template.spec as Obj;
  const container = pod?.containers[0] as Obj;
  const podLabels = deployment?.spec.template.metadata.labels as Record<string, string>;
  const secret = byKind('Secret')[0];
  const configMap = byKind('ConfigMap')[0];
  const matches = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);

  it('has the required kinds, each with apiVersion and a name in one namespace', () => {
    const kinds = new Set(manifests.map((m) => m.doc.kind));
    for (const k of ['Namespace', 'ServiceAccount', 'ConfigMap', 'Secret', 'Deployment', 'Service', 'PodDisruptionBudget', 'NetworkPolicy']) expect(kinds, k).toContain(k);
    for (const { file, doc } of manifests) {
      expect(doc.apiVersion, file).toBeTruthy();
      expect(doc.metadata?.name, file).toBeTruthy();
      if (doc.kind !== 'Namespace') expect(doc.metadata.namespace, file).toBe(kustomization.namespace);
    }
  });

  it('kustomization lists existing files and leaves the Secret template out', () => {
    for (const r of kustomization.resources as string[]) expect(existsSync(join(K8S, r)), r).toBe(true);
    expect(kustomization.resources).not.toContain('secret.template.yaml');
    const listed = new Set(kustomization.resources as string[]);
    for (const { file, doc } of manifests) if (doc.kind !== 'Secret') expect(listed, file).toContain(file);
  });

  it('Deployment: 2+ replicas, rolling without unavailability, no service account token', () => {
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(deployment.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
    expect(matches(deployment.spec.selector.matchLabels)).toBe(true);
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(container.command ?? ['node', 'src/main.ts', 'start']).toEqual(['node', 'src/main.ts', 'start']);
  });

  it('Deployment: non-root, read-only root filesystem, all capabilities dropped, seccomp RuntimeDefault', () => {
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBe(10001);
    expect(pod.securityContext.seccompProfile.type).toBe('RuntimeDefault');
    const sc = container.securityContext;
    expect(sc.runAsNonRoot).toBe(true);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.privileged ?? false).toBe(false);
    expect(sc.capabilities.drop).toEqual(['ALL']);
    expect(sc.capabilities.add).toBeUndefined();
    expect(sc.seccompProfile.type).toBe('RuntimeDefault');
    const tmp = container.volumeMounts.find((m: Obj) => m.mountPath === '/tmp');
    expect(pod.volumes.find((v: Obj) => v.name === tmp.name).emptyDir).toBeDefined();
  });

  it('Deployment: resources, readiness /readyz, liveness /healthz, startup probe, ports by name', () => {
    expect(container.resources.requests.cpu).toBeTruthy();
    expect(container.resources.requests.memory).toBeTruthy();
    expect(container.resources.limits.memory).toBeTruthy();
    const portNames = (container.ports as Obj[]).map((p) => p.name);
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(container.startupProbe.httpGet.path).toBe('/healthz');
    for (const p of [container.readinessProbe, container.livenessProbe, container.startupProbe]) expect(portNames).toContain(p.httpGet.port);
    expect((container.ports as Obj[]).find((p) => p.name === 'http')?.containerPort).toBe(8080);
  });

  it('Deployment: a preStop pause before SIGTERM, within terminationGracePeriodSeconds with room for in-flight requests', () => {
    const cmd = container.lifecycle.preStop.exec?.command as string[] | undefined;
    const sleep = container.lifecycle.preStop.sleep?.seconds ?? Number(cmd?.[0] === 'sleep' ? cmd[1] : NaN);
    expect(sleep).toBeGreaterThanOrEqual(5);
    // The broker bounds a request at 30 s (server.requestTimeout).
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(sleep + 30);
  });

  it('Deployment: every ${VAR} of the ConfigMap’s broker.yaml comes from the Secret, never a literal value', () => {
    const env = container.env as Obj[];
    expect(env.find((e) => e.name === 'BROKER_CONFIG')?.value).toBe('/etc/broker/broker.yaml');
    const mount = container.volumeMounts.find((m: Obj) => m.mountPath === '/etc/broker');
    expect(mount.readOnly).toBe(true);
    expect(pod.volumes.find((v: Obj) => v.name === mount.name).configMap.name).toBe(configMap.metadata.name);
    const refs = envRefs(parse(configMap.data['broker.yaml']));
    expect(refs.size).toBeGreaterThan(0);
    for (const name of refs) {
      const e = env.find((x) => x.name === name);
      expect(e, name).toBeDefined();
      expect(e!.value, name).toBeUndefined();
      expect(e!.valueFrom.secretKeyRef.name).toBe(secret.metadata.name);
      expect(Object.keys(secret.stringData ?? secret.data), name).toContain(e!.valueFrom.secretKeyRef.key);
    }
    for (const e of env) if (/KEK|SECRET|PASSWORD|TOKEN/.test(e.name)) expect(e.valueFrom?.secretKeyRef, e.name).toBeDefined();
  });

  it('Secret template: placeholders only, and the KEK placeholder cannot pass for a key', () => {
    expect(secret.data).toBeUndefined();
    const values = Object.entries(secret.stringData as Record<string, string>);
    expect(values.length).toBeGreaterThanOrEqual(2);
    for (const [k, v] of values) expect(v, k).toMatch(PLACEHOLDER);
    expect(() => parseDataKey(secret.stringData.BROKER_KEK)).toThrow();
  });

  it('ConfigMap: broker.yaml passes config check and names a Sentinel store', () => {
    const dir = tempDir('deploy-cm-');
    const file = join(dir, 'broker.yaml');
    writeFileSync(file, configMap.data['broker.yaml']);
    const config = parse(configMap.data['broker.yaml']) as Obj;
    const refs = envRefs(config);
    const r = configCheck(file, dummyEnv(refs));
    expect(r.status, r.stderr).toBe(0);
    const target = parseRedisUrl(String(config.store).replace('${REDIS_PASSWORD}', 'dummy'));
    expect(target.mode).toBe('sentinel');
    if (target.mode === 'sentinel') {
      expect(target.name).toBe('mymaster');
      expect(target.sentinels.length).toBeGreaterThanOrEqual(3);
      expect(target.password).toBe('dummy');
    }
    expect(config.trustProxy).toBe(true);
    expect(config.issuer).toMatch(/^https:\/\//);
  });

  it('Service and PodDisruptionBudget select the broker pods; the PDB keeps one available', () => {
    const service = byKind('Service')[0];
    expect(matches(service.spec.selector)).toBe(true);
    const portNames = (container.ports as Obj[]).map((p) => p.name);
    for (const p of service.spec.ports as Obj[]) expect(portNames).toContain(p.targetPort);
    const pdb = byKind('PodDisruptionBudget')[0];
    expect(pdb.apiVersion).toBe('policy/v1');
    expect(pdb.spec.minAvailable).toBe(1);
    expect(matches(pdb.spec.selector.matchLabels)).toBe(true);
    expect(deployment.spec.replicas).toBeGreaterThan(pdb.spec.minAvailable);
  });

  it('NetworkPolicy selects the pods and admits HTTP; the namespace enforces the restricted Pod Security Standard', () => {
    const np = byKind('NetworkPolicy')[0];
    expect(matches(np.spec.podSelector.matchLabels)).toBe(true);
    expect((np.spec.ingress as Obj[]).some((r) => (r.ports as Obj[]).some((p) => p.port === 8080))).toBe(true);
    const ns = byKind('Namespace')[0];
    expect(ns.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  it('Redis chart values keep AOF and noeviction', () => {
    const values = yamlDocs(join(K8S, 'redis-values.yaml'))[0];
    expect(values.commonConfiguration).toMatch(/^appendonly yes$/m);
    expect(values.commonConfiguration).toMatch(/^maxmemory-policy noeviction$/m);
    expect(values.sentinel.enabled).toBe(true);
    expect(values.sentinel.masterSet).toBe('mymaster');
  });
});

describe('deploy/redis', () => {
  const conf = read('redis/redis.conf');
  const active = conf.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const directive = (name: string) => active.filter((l) => l.split(/\s+/)[0] === name).map((l) => l.trim().split(/\s+/).slice(1).join(' '));

  it('redis.conf: AOF on, fsync every second (or always), never evicts, and holds no credentials', () => {
    expect(directive('appendonly')).toEqual(['yes']);
    expect(['everysec', 'always']).toContain(directive('appendfsync')[0]);
    expect(directive('maxmemory-policy')).toEqual(['noeviction']);
    expect(directive('no-appendfsync-on-rewrite')).toEqual(['no']);
    expect(directive('user')).toEqual([]);
    expect(directive('requirepass')).toEqual([]);
    expect(directive('masterauth')).toEqual([]);
    // Replication guard documented for replicated set-ups.
    expect(conf).toMatch(/#\s*min-replicas-to-write 1/);
  });

  it('README: WAIT is documented as supported by config (storeOptions.waitReplicas), no longer planned', () => {
    const readme = read('redis/README.md');
    expect(readme).toContain('storeOptions');
    expect(readme).toMatch(/waitReplicas:\s*1/);
    expect(readme).toMatch(/waitTimeoutMs/);
    expect(readme).not.toMatch(/planned/i);
    expect(readme).not.toMatch(/does\s+not\s+(yet\s+)?issue\s+`?WAIT`?/i);
    expect(readme).toMatch(/HA-05/);
    expect(readme).toMatch(/HA-20/);
  });
});

describe('deploy/nginx.conf (static; `nginx -t` and live checks below)', () => {
  const conf = read('nginx.conf')
    .split('\n')
    .filter((l) => !l.trim().startsWith('#'))
    .join('\n');

  it('sets the forwarded headers itself and strips client-certificate headers', () => {
    expect(conf).toMatch(/proxy_set_header X-Forwarded-For \$remote_addr;/);
    expect(conf).not.toMatch(/\$proxy_add_x_forwarded_for/);
    expect(conf).toMatch(/proxy_set_header X-Forwarded-Proto \$scheme;/);
    for (const h of ['X-SSL-Client-Cert', 'X-SSL-Client-Verify', 'Client-Cert', 'X-Forwarded-Client-Cert']) expect(conf).toContain(`proxy_set_header ${h} "";`);
  });

  it('sets no proxy_set_header inside a location (that would drop every inherited one)', () => {
    const locations = [...conf.matchAll(/location\s[^{]*\{([^}]*)\}/g)].map((m) => m[1]);
    expect(locations.length).toBeGreaterThanOrEqual(3);
    for (const body of locations) expect(body).not.toMatch(/proxy_set_header/);
  });

  it('round-robins over both brokers with passive checks, bounded sizes and timeouts', () => {
    expect(conf).toMatch(/server broker-1:8080 max_fails=\d+ fail_timeout=\d+s;/);
    expect(conf).toMatch(/server broker-2:8080 max_fails=\d+ fail_timeout=\d+s;/);
    expect(conf).not.toMatch(/^\s*(least_conn|ip_hash|hash)\b/m);
    expect(conf).toMatch(/proxy_next_upstream error timeout/);
    expect(conf).not.toMatch(/proxy_next_upstream[^;]*(http_503|non_idempotent)/);
    for (const d of ['client_max_body_size', 'client_header_timeout', 'client_body_timeout', 'proxy_connect_timeout', 'proxy_read_timeout', 'large_client_header_buffers']) expect(conf).toMatch(new RegExp(`^\\s*${d}\\s`, 'm'));
  });
});

describe('deploy/: no plaintext secret in any file', () => {
  // A KEK-shaped value (43 base64url characters, or 64 hex digits), a PEM private key, or an assignment
  // of a literal to a secret-looking name.
  const files = walk(DEPLOY).filter((f) => {
    const rel = relative(DEPLOY, f);
    return !rel.startsWith('secrets/') && !NOT_OURS.has(rel);
  });
  it.each(files.map((f) => [relative(DEPLOY, f), f]))('%s', (_name, file) => {
    const text = readFileSync(file, 'utf8');
    expect(text).not.toMatch(/-----BEGIN [A-Z ]*PRIVATE KEY-----/);
    const tokens = text.match(/(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g) ?? [];
    for (const t of tokens) expect(/[0-9]/.test(t) && /[A-Z]/.test(t) && /[a-z]/.test(t), `looks like a key: ${t}`).toBe(false);
    expect(text).not.toMatch(/(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])/);
  });
});

// ---- live: Redis from the compose definition, two brokers from deploy/broker.yaml, nginx from deploy/nginx.conf

const redisAvailable = peerAvailable('redis-server') && peerAvailable('redis-cli');
const nginxBinary = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : undefined;
if (!nginxBinary && process.env.CI === 'true') throw new Error('nginx is not installed at /usr/sbin/nginx; .ci/run must install it');

interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function start(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv }): Proc {
  const child = spawn(cmd, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out = (out + d).slice(-20_000)));
  child.stderr!.on('data', (d) => (out = (out + d).slice(-20_000)));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000, proc?: Proc): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (proc && proc.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not ready (${String(last ?? 'timeout')})${proc ? `\n${proc.output()}` : ''}`);
}

async function stop(p: Proc | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
  await p.exited;
  clearTimeout(timer);
}

describe.skipIf(!redisAvailable)('live: the compose Redis, two brokers and the nginx front', () => {
  const work = tempDir('deploy-live-');
  const secrets = join(work, 'secrets');
  const compose = yamlDocs(join(DEPLOY, 'docker-compose.yml'))[0];
  const redisService = compose.services.redis as Obj;
  const CLIENT = 'integration-service';
  const RS = 'fhir-gateway';
  let redisPort: number;
  let redis: Proc | undefined;
  let admin: Redis | undefined;
  const brokers: { port: number; metricsPort: number; proc: Proc; cwd: string }[] = [];
  let nginx: Proc | undefined;
  let frontPort = 0;
  let password = '';
  let clientSecret = '';
  let rsSecret = '';
  const brokerEnv = (port: number): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'production',
    PORT: String(port),
    // As the image does: NAME_FILE -> NAME for every node process.
    NODE_OPTIONS: `--import=${PRELOAD}`,
    BROKER_ISSUER: `http://127.0.0.1:${frontPort}`,
    BROKER_KEK_FILE: join(secrets, 'broker_kek'),
    REDIS_PASSWORD_FILE: join(secrets, 'redis_password'),
    INTEGRATION_SERVICE_CLIENT_SECRET_FILE: join(secrets, 'integration_service_client_secret'),
    FHIR_GATEWAY_CLIENT_SECRET_FILE: join(secrets, 'fhir_gateway_client_secret'),
  });

  /** The compose file's shell snippets, run here: `$$` unescaped, container paths mapped to the work dir. */
  function fromCompose(script: string, extra = ''): string {
    return script
      .replaceAll('$$', '$')
      .replaceAll('/run/secrets/', `${secrets}/`)
      .replace('/usr/local/etc/redis/redis.conf', `${join(work, 'redis.conf')} --port ${redisPort} --bind 127.0.0.1 --daemonize no ${extra}`)
      .replaceAll('redis-cli ', `redis-cli -p ${redisPort} `);
  }

  beforeAll(async () => {
    expect(spawnSync('sh', [join(DEPLOY, 'gen-secrets.sh'), secrets]).status).toBe(0);
    password = readFileSync(join(secrets, 'redis_password'), 'utf8');
    clientSecret = readFileSync(join(secrets, 'integration_service_client_secret'), 'utf8');
    rsSecret = readFileSync(join(secrets, 'fhir_gateway_client_secret'), 'utf8');

    // Redis: deploy/redis/redis.conf with its data dir moved here, started by the compose command itself.
    redisPort = await freePort();
    mkdirSync(join(work, 'redis-data'));
    writeFileSync(join(work, 'redis.conf'), read('redis/redis.conf').replace(/^dir \/data$/m, `dir ${join(work, 'redis-data')}`));
    const [shell, flag, script] = redisService.command as string[];
    redis = start(shell, [flag, fromCompose(script, "--user testadmin on '>testadmin-pw' '~*' '&*' '+@all'")], { cwd: work });
    // Ready when the compose health check passes.
    const hc = (redisService.healthcheck.test as string[])[1];
    await until('redis health check', async () => (spawnSync('sh', ['-c', fromCompose(hc)]).status === 0 ? true : undefined), 15_000, redis);
    admin = new Redis({ port: redisPort, host: '127.0.0.1', username: 'testadmin', password: 'testadmin-pw', lazyConnect: true, maxRetriesPerRequest: 1 });
    await admin.connect();

    // Two brokers from deploy/broker.yaml, the store pointed at this Redis (same user and password variable).
    frontPort = await freePort();
    const config = parse(read('broker.yaml')) as Obj;
    config.store = String(config.store).replace('@redis:6379', `@127.0.0.1:${redisPort}`);
    config.host = '127.0.0.1';
    config.logLevel = 'warn';
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      const metricsPort = await freePort();
      const file = join(work, `broker-${i + 1}.yaml`);
      writeFileSync(file, stringify({ ...config, metrics: { ...config.metrics, port: metricsPort, host: '127.0.0.1' } }));
      // An empty working directory: afterwards it must still be empty (nothing written to ./data).
      const cwd = join(work, `cwd-${i + 1}`);
      mkdirSync(cwd);
      const proc = start(process.execPath, [MAIN, 'start', '--config', file], { cwd, env: brokerEnv(port) });
      brokers.push({ port, metricsPort, proc, cwd });
    }
    for (const b of brokers) {
      await until(`broker on ${b.port}`, async () => ((await fetch(`http://127.0.0.1:${b.port}/readyz`)).status === 200 ? true : undefined), 45_000, b.proc);
    }

    if (nginxBinary) {
      const dir = join(work, 'nginx');
      mkdirSync(dir);
      const front = read('nginx.conf')
        .replace(/^(\s*)server broker-1:8080\b/m, `$1server 127.0.0.1:${brokers[0].port}`)
        .replace(/^(\s*)server broker-2:8080\b/m, `$1server 127.0.0.1:${brokers[1].port}`)
        .replace(/^(\s*)listen 8080;/m, `$1listen 127.0.0.1:${frontPort};`)
        .replaceAll('/var/log/nginx/', `${dir}/`);
      writeFileSync(join(dir, 'front.conf'), front);
      // The wrapper stands in for the image's /etc/nginx/nginx.conf: pid, error log and temp paths here.
      writeFileSync(
        join(dir, 'main.conf'),
        [
          process.getuid?.() === 0 ? 'user root;' : '',
          `pid ${dir}/nginx.pid;`,
          `error_log ${dir}/error.log warn;`,
          'daemon off;',
          'worker_processes 1;',
          'events { worker_connections 256; }',
          'http {',
          `  client_body_temp_path ${dir}/client_temp;`,
          `  proxy_temp_path ${dir}/proxy_temp;`,
          `  fastcgi_temp_path ${dir}/fastcgi_temp;`,
          `  uwsgi_temp_path ${dir}/uwsgi_temp;`,
          `  scgi_temp_path ${dir}/scgi_temp;`,
          `  include ${dir}/front.conf;`,
          '}',
        ].join('\n'),
      );
    }
  }, 120_000);

  afterAll(async () => {
    await stop(nginx);
    for (const b of brokers) await stop(b.proc);
    admin?.disconnect();
    await stop(redis);
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('Redis runs the settings of redis.conf and the compose command', async () => {
    const get = async (k: string) => ((await admin!.config('GET', k)) as string[])[1];
    expect(await get('appendonly')).toBe('yes');
    expect(await get('appendfsync')).toBe('everysec');
    expect(await get('maxmemory-policy')).toBe('noeviction');
    expect(Number(await get('maxmemory'))).toBeGreaterThan(0);
    expect(await get('no-appendfsync-on-rewrite')).toBe('no');
    expect(existsSync(join(work, 'redis-data', 'appendonlydir'))).toBe(true);
  });

  it('Redis ACL: no anonymous access; the broker user reaches only broker:* keys and no dangerous command', async () => {
    const anon = spawnSync('redis-cli', ['-p', String(redisPort), 'ping'], { encoding: 'utf8' });
    expect(anon.stdout).toMatch(/NOAUTH/);
    const user = new Redis({ port: redisPort, host: '127.0.0.1', username: 'broker', password, lazyConnect: true, maxRetriesPerRequest: 1 });
    await user.connect();
    try {
      await expect(user.set('broker:deploy-test', '1')).resolves.toBe('OK');
      await expect(user.set('elsewhere', '1')).rejects.toThrow(/NOPERM/);
      await expect(user.flushall()).rejects.toThrow(/NOPERM/);
      await expect(user.config('GET', 'dir')).rejects.toThrow(/NOPERM/);
      await user.del('broker:deploy-test');
    } finally {
      user.disconnect();
    }
  });

  it('both brokers are ready on the shared Redis with secrets read from files, pass the image and compose health checks, and keep their keys under broker:', async () => {
    for (const b of brokers) {
      const r = await fetch(`http://127.0.0.1:${b.port}/readyz`);
      expect(await r.json()).toEqual({ status: 'ready' });
      const m = await fetch(`http://127.0.0.1:${b.metricsPort}/metrics`);
      expect(m.status).toBe(200);
    }
    // The image's HEALTHCHECK and the compose health check, run as they are (PORT / the port swapped in).
    const dockerHc = JSON.parse(/^HEALTHCHECK[\s\S]*?CMD (\[.*\])$/m.exec(read('Dockerfile'))![1]) as string[];
    const composeHc = (compose.services['broker-1'].healthcheck.test as string[]).slice(1);
    expect(dockerHc.slice(0, 2)).toEqual(['node', '-e']);
    expect(composeHc.slice(0, 2)).toEqual(['node', '-e']);
    const hc = (script: string, port: number) => spawnSync(process.execPath, ['-e', script.replace('127.0.0.1:8080', `127.0.0.1:${port}`)], { env: { PATH: process.env.PATH ?? '', PORT: String(port) }, timeout: 10_000 }).status;
    expect(hc(dockerHc[2], brokers[0].port)).toBe(0);
    expect(hc(composeHc[2], brokers[1].port)).toBe(0);
    const closed = await freePort();
    expect(hc(dockerHc[2], closed)).toBe(1);
    expect(hc(composeHc[2], closed)).toBe(1);
    const keys = await admin!.keys('*');
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.filter((k) => !k.startsWith('broker:'))).toEqual([]);
  });

  describe.skipIf(!nginxBinary)('through deploy/nginx.conf', () => {
    const nginxDir = () => join(work, 'nginx');
    const front = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${frontPort}${path}`, init);
    const token = () =>
      front('/token', {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${CLIENT}:${clientSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'system/Patient.rs', resource: 'https://fhir.example.nhs.uk' }),
      });

    beforeAll(async () => {
      const t = spawnSync(nginxBinary!, ['-t', '-p', nginxDir(), '-c', join(nginxDir(), 'main.conf')], { encoding: 'utf8' });
      expect(t.status, t.stderr).toBe(0);
      nginx = start(nginxBinary!, ['-p', nginxDir(), '-c', join(nginxDir(), 'main.conf')], {});
      await until('nginx', async () => ((await front('/nginx-health')).status === 200 ? true : undefined), 15_000, nginx);
    }, 30_000);

    it('passes nginx -t (checked before starting it)', () => {
      expect(nginx!.child.exitCode).toBeNull();
    });

    it('serves discovery with the configured issuer, round-robin over both brokers', async () => {
      for (let i = 0; i < 8; i++) {
        const r = await front('/.well-known/openid-configuration');
        expect(r.status).toBe(200);
        expect((await r.json()).issuer).toBe(`http://127.0.0.1:${frontPort}`);
      }
      const log = await until('access log', async () => {
        const text = readFileSync(join(nginxDir(), 'access.log'), 'utf8');
        return text.split('\n').filter((l) => l.includes('/.well-known/openid-configuration')).length >= 8 ? text : undefined;
      });
      for (const b of brokers) expect(log).toContain(`upstream=127.0.0.1:${b.port}`);
      // The query string never reaches the log.
      await front('/.well-known/openid-configuration?code=should-not-be-logged');
      await new Promise((r) => setTimeout(r, 200));
      expect(readFileSync(join(nginxDir(), 'access.log'), 'utf8')).not.toContain('should-not-be-logged');
    });

    it('issues a token on one instance that the other introspects (shared Redis), with X-Request-Id from nginx', async () => {
      const r = await token();
      expect(r.status, await r.clone().text()).toBe(200);
      expect(r.headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/);
      const { access_token } = (await r.json()) as { access_token: string };
      for (let i = 0; i < 2; i++) {
        const intro = await front('/token/introspection', {
          method: 'POST',
          headers: { authorization: `Basic ${Buffer.from(`${RS}:${rsSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token: access_token }),
        });
        expect(intro.status).toBe(200);
        expect(((await intro.json()) as { active: boolean }).active).toBe(true);
      }
    });

    it('refuses an oversized body at the front (413) and hides /metrics (404)', async () => {
      const big = await front('/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=client_credentials&pad=${'a'.repeat(100 * 1024)}` });
      expect(big.status).toBe(413);
      expect((await front('/metrics')).status).toBe(404);
      expect((await front('/healthz')).status).toBe(200);
      expect((await front('/readyz')).status).toBe(200);
    });

    it('SIGTERM on one broker: it exits 0 and every following request succeeds on the other', async () => {
      const [first] = brokers;
      first.proc.child.kill('SIGTERM');
      expect(await first.proc.exited).toBe(0);
      for (let i = 0; i < 6; i++) {
        expect((await front('/.well-known/openid-configuration')).status).toBe(200);
        const t = await token();
        expect(t.status, await t.clone().text()).toBe(200);
      }
    });
  });

  it('the brokers wrote nothing to their working directories (read-only root filesystem friendly)', async () => {
    for (const b of brokers) await stop(b.proc);
    for (const b of brokers) expect(readdirSync(b.cwd), b.cwd).toEqual([]);
  });
});
