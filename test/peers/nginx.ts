import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { peerAvailable } from './peer.ts';

// Debian's nginx as the smartcard TLS proxy in front of the broker, on loopback: its own prefix,
// pid file, logs and temp paths under a temporary directory, in the foreground (daemon off), so the
// test owns the process. It asks browsers for a client certificate (ssl_verify_client), forwards the
// certificate URL-encoded ($ssl_client_escaped_cert) with the verification result, strips any
// client-sent copy of every certificate header, and authenticates itself to the broker with its own
// client certificate (mTLS to the HTTPS broker).

export const NGINX_BIN = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';

/** Whether nginx is installed (a failure under CI=true, a skip locally). */
export function nginxAvailable(): boolean {
  return peerAvailable(NGINX_BIN);
}

export interface NginxOptions {
  /** Port nginx listens on (HTTPS, 127.0.0.1). */
  port: number;
  /** The broker's HTTPS port on 127.0.0.1. */
  brokerPort: number;
  serverCert: string;
  serverKey: string;
  /** CA bundle nginx verifies client certificates with (root and issuing CA). */
  clientCa: string;
  /** CRLs for every CA in that bundle (nginx checks the whole chain). */
  crl?: string;
  /** optional_no_ca forwards failed certificates too (with $ssl_client_verify = FAILED:…), so the broker's own checks are seen. */
  verifyClient: 'on' | 'optional' | 'optional_no_ca';
  /** The proxy's client certificate and key for the hop to the broker. */
  proxyCert: string;
  proxyKey: string;
  /** CA that issued the broker's server certificate. */
  brokerCa: string;
  /** Header the certificate is forwarded in. */
  certHeader?: string;
  verifyHeader?: string;
}

export interface Nginx {
  url: string;
  port: number;
  dir: string;
  errorLog(): string;
  stop(): Promise<void>;
}

/** Headers a client might send to impersonate the proxy: all are blanked on the way to the broker. */
export const STRIPPED_HEADERS = ['Client-Cert', 'Client-Cert-Chain', 'X-Forwarded-Client-Cert', 'SSL-Client-Cert', 'SSL-Client-Verify', 'X-Client-Cert', 'X-SSL-Client-Escaped-Cert', 'X-Amzn-Mtls-Clientcert', 'X-Amzn-Mtls-Clientcert-Leaf', 'Client-Cert-Signature'];

/** The http-context configuration (a server block) for `o`. */
export function nginxConfig(o: NginxOptions): string {
  const certHeader = o.certHeader ?? 'X-SSL-Client-Cert';
  const verifyHeader = o.verifyHeader ?? 'X-SSL-Client-Verify';
  const proxy = `      proxy_pass https://127.0.0.1:${o.brokerPort};
      proxy_http_version 1.1;
      proxy_ssl_certificate ${o.proxyCert};
      proxy_ssl_certificate_key ${o.proxyKey};
      proxy_ssl_trusted_certificate ${o.brokerCa};
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-For $remote_addr;
      # Set by the proxy, replacing any copy the client sent; empty (no certificate) means not sent at all.
      proxy_set_header ${certHeader} $ssl_client_escaped_cert;
      proxy_set_header ${verifyHeader} $ssl_client_verify;
${STRIPPED_HEADERS.filter((h) => h.toLowerCase() !== certHeader.toLowerCase() && h.toLowerCase() !== verifyHeader.toLowerCase())
  .map((h) => `      proxy_set_header ${h} "";`)
  .join('\n')}`;
  return `
  # Header names with underscores are dropped, not passed through (the default, stated for clarity).
  underscores_in_headers off;
  ignore_invalid_headers on;

  server {
    listen 127.0.0.1:${o.port} ssl;
    server_name localhost;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate ${o.serverCert};
    ssl_certificate_key ${o.serverKey};
    ssl_client_certificate ${o.clientCa};
    ssl_verify_client ${o.verifyClient};
    ssl_verify_depth 3;
    ${o.crl ? `ssl_crl ${o.crl};` : ''}

    # A failed client-certificate verification (495) is not answered by nginx's bare 400 page: the
    # request goes on to the broker with $ssl_client_verify = FAILED:…, and the broker refuses the
    # sign-in with its own page (and audits it). Every other route works as usual.
    error_page 495 = @forward;

    location / {
${proxy}
    }

    location @forward {
${proxy}
    }
  }
`;
}

/** The main configuration around http-context text: pid, logs and temp paths under `dir`. */
export function mainConfig(dir: string, httpContext: string): string {
  const temp = (name: string) => join(dir, 'tmp', name);
  return `
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} info;
worker_processes 1;
events { worker_connections 128; }
http {
  access_log ${join(dir, 'access.log')};
  client_body_temp_path ${temp('body')};
  proxy_temp_path ${temp('proxy')};
  fastcgi_temp_path ${temp('fastcgi')};
  uwsgi_temp_path ${temp('uwsgi')};
  scgi_temp_path ${temp('scgi')};
${httpContext}
}
`;
}

function waitForPort(port: number, child: ChildProcess, deadline: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null) return reject(new Error(`nginx exited with ${child.exitCode}`));
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error('nginx did not start listening'));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

export function startNginx(o: NginxOptions): Promise<Nginx> {
  return runNginx(o.port, nginxConfig(o));
}

/** A prepared directory with `httpContext` wrapped in a main configuration; returns the main file. */
export function prepareNginx(httpContext: string): { dir: string; conf: string } {
  const dir = mkdtempSync(join(tmpdir(), 'nginx-smartcard-'));
  // Workers (nobody, when the tests run as root) need to reach their temp paths.
  chmodSync(dir, 0o755);
  for (const t of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, 'tmp', t), { recursive: true, mode: 0o777 });
  chmodSync(join(dir, 'tmp'), 0o777);
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, mainConfig(dir, httpContext));
  return { dir, conf };
}

/** `nginx -t` on http-context text; returns nginx's output and whether it passed. */
export function testNginxConfig(httpContext: string): { ok: boolean; output: string } {
  const { dir, conf } = prepareNginx(httpContext);
  const r = spawnSync(NGINX_BIN, ['-t', '-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { encoding: 'utf8' });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

/** Runs nginx in the foreground with `httpContext` (listening on `port`) until stop(). */
export async function runNginx(port: number, httpContext: string): Promise<Nginx> {
  const { dir, conf } = prepareNginx(httpContext);
  const errorLog = join(dir, 'error.log');
  const child = spawn(NGINX_BIN, ['-p', dir, '-c', conf, '-e', errorLog, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const readLog = () => (existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : '');
  try {
    await waitForPort(port, child, Date.now() + 10_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${stderr}\n${readLog().slice(-2000)}`);
  }
  return {
    url: `https://localhost:${port}`,
    port,
    dir,
    errorLog: readLog,
    async stop() {
      if (child.exitCode !== null) return;
      // SIGTERM: fast shutdown of the master and its workers.
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
