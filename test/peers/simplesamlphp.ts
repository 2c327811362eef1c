import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import { peerAvailable } from './peer.ts';

// A real SAML 2.0 IdP for tests: Debian's SimpleSAMLphp 1.19 under `php -S` on a loopback port, with a
// generated configuration (exampleauth:UserPass users, a fresh IdP key pair, the broker's SPs as
// remote SPs). The SP's ACS URL is fixed in the IdP's metadata, so the broker's port must be chosen
// before the IdP starts.

export const SIMPLESAMLPHP_DIR = '/usr/share/simplesamlphp';

function simpleSamlInstalled(): boolean {
  const installed = existsSync(join(SIMPLESAMLPHP_DIR, 'www', 'saml2', 'idp', 'SSOService.php'));
  if (!installed && process.env.CI === 'true') throw new Error('SimpleSAMLphp is not installed; .ci/run must install it');
  return installed;
}

/** Whether php-cli and SimpleSAMLphp are installed. Missing locally: tests skip; under CI=true: a failure. */
export const simpleSamlAvailable = peerAvailable('php') && simpleSamlInstalled();

export interface KeyPair {
  keyPem: string;
  certPem: string;
}

/** A self-signed RSA key pair (openssl; @peculiar/x509 is not installed here). */
export function generateKeyPair(commonName: string, days = 2): KeyPair {
  const dir = mkdtempSync(join(tmpdir(), 'saml-keys-'));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', String(days), '-subj', `/CN=${commonName}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { keyPem: readFileSync(key, 'utf8'), certPem: readFileSync(cert, 'utf8') };
}

/** The base64 body of a PEM certificate, as SAML metadata and SimpleSAMLphp's certData want it. */
export function certBody(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
}

export interface SimpleSamlUser {
  username: string;
  password: string;
  /** Attribute name -> values. `uid` is used for the persistent NameID. */
  attributes: Record<string, string[]>;
}

export interface RemoteSp {
  entityId: string;
  acsUrl: string;
  sloUrl?: string;
  /** The SP's signing certificate: AuthnRequests and LogoutRequests must be signed with its key. */
  signingCertPem: string;
  /** Encrypt assertions to this certificate (SimpleSAMLphp 1.19 uses RSA-OAEP + AES128-CBC). */
  encryptionCertPem?: string;
}

export interface SimpleSamlOptions {
  sps: RemoteSp[];
  users?: SimpleSamlUser[];
  /** Host name in the IdP's URLs (default 127.0.0.1). */
  host?: string;
  port?: number;
}

export interface SimpleSamlPeer {
  baseUrl: string;
  entityId: string;
  metadataUrl: string;
  ssoUrl: string;
  /** The IdP metadata as SimpleSAMLphp publishes it, saved to a file. */
  metadataFile: string;
  metadataXml: string;
  idp: KeyPair;
  users: SimpleSamlUser[];
  /** SimpleSAMLphp's log file, for debugging a failed test. */
  logFile: string;
  stop(): Promise<void>;
}

export const DEFAULT_USERS: SimpleSamlUser[] = [
  {
    username: 'alice',
    password: 'alice-password',
    attributes: { uid: ['alice'], mail: ['alice@trust.example'], displayName: ['Alice Practitioner'], eduPersonAffiliation: ['staff', 'member'] },
  },
  {
    username: 'bob',
    password: 'bob-password',
    attributes: { uid: ['bob'], mail: ['bob@trust.example'], displayName: ['Bob Porter'], eduPersonAffiliation: ['member'] },
  },
];

/** A PHP string literal (single-quoted). */
function php(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function phpArray(values: string[]): string {
  return `[${values.map(php).join(', ')}]`;
}

export async function startSimpleSaml(options: SimpleSamlOptions): Promise<SimpleSamlPeer> {
  const port = options.port ?? (await freePort());
  const host = options.host ?? '127.0.0.1';
  const baseUrl = `http://${host}:${port}`;
  const entityId = `${baseUrl}/saml2/idp/metadata.php`;
  const users = options.users ?? DEFAULT_USERS;
  const root = mkdtempSync(join(tmpdir(), 'simplesamlphp-'));
  const dirs = ['config', 'metadata', 'cert', 'log', 'data', 'tmp', 'sessions'];
  for (const d of dirs) mkdirSync(join(root, d), { recursive: true });
  const idp = generateKeyPair('simplesamlphp-test-idp');
  writeFileSync(join(root, 'cert', 'idp.key'), idp.keyPem, { mode: 0o600 });
  writeFileSync(join(root, 'cert', 'idp.crt'), idp.certPem);

  writeFileSync(
    join(root, 'config', 'config.php'),
    `<?php
$config = [
    'baseurlpath' => ${php(`${baseUrl}/`)},
    'certdir' => ${php(join(root, 'cert') + '/')},
    'loggingdir' => ${php(join(root, 'log') + '/')},
    'datadir' => ${php(join(root, 'data') + '/')},
    'tempdir' => ${php(join(root, 'tmp'))},
    'metadatadir' => ${php(join(root, 'metadata') + '/')},
    'attributenamemapdir' => ${php(join(SIMPLESAMLPHP_DIR, 'config', 'attributemap') + '/')},
    'technicalcontact_name' => 'Broker tests',
    'technicalcontact_email' => 'tests@broker.invalid',
    'timezone' => 'UTC',
    'secretsalt' => ${php(randomBytes(24).toString('hex'))},
    'auth.adminpassword' => ${php(randomBytes(24).toString('hex'))},
    'admin.protectindexpage' => true,
    'admin.protectmetadata' => false,
    'admin.checkforupdates' => false,
    'trusted.url.domains' => [],
    'showerrors' => true,
    'errorreporting' => false,
    'production' => false,
    'logging.level' => SimpleSAML\\Logger::INFO,
    'logging.handler' => 'file',
    'logging.logfile' => 'simplesamlphp.log',
    'enable.saml20-idp' => true,
    'module.enable' => ['exampleauth' => true, 'core' => true, 'saml' => true, 'admin' => true],
    'session.cookie.secure' => false,
    'session.cookie.samesite' => 'Lax',
    'language.cookie.secure' => false,
    'language.cookie.samesite' => 'Lax',
    'session.phpsession.savepath' => ${php(join(root, 'sessions'))},
    'store.type' => 'phpsession',
    'metadata.sources' => [['type' => 'flatfile']],
    'language.available' => ['en'],
    'language.default' => 'en',
    'theme.use' => 'default',
];
`,
  );

  const userEntries = users
    .map((u) => `        ${php(`${u.username}:${u.password}`)} => [${Object.entries(u.attributes).map(([k, v]) => `${php(k)} => ${phpArray(v)}`).join(', ')}],`)
    .join('\n');
  writeFileSync(
    join(root, 'config', 'authsources.php'),
    `<?php
$config = [
    'admin' => ['core:AdminPassword'],
    'example-userpass' => [
        'exampleauth:UserPass',
${userEntries}
    ],
];
`,
  );

  writeFileSync(
    join(root, 'metadata', 'saml20-idp-hosted.php'),
    `<?php
$metadata[${php(entityId)}] = [
    'host' => '__DEFAULT__',
    'privatekey' => 'idp.key',
    'certificate' => 'idp.crt',
    'auth' => 'example-userpass',
    'signature.algorithm' => 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    'saml20.sign.response' => true,
    'saml20.sign.assertion' => true,
    'NameIDFormat' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
    'logouttype' => 'traditional',
    'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic',
    'authproc' => [
        10 => ['class' => 'saml:PersistentNameID', 'attribute' => 'uid'],
    ],
];
`,
  );

  const spEntries = options.sps
    .map((sp) => {
      const lines = [
        `    'AssertionConsumerService' => [['Binding' => 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST', 'Location' => ${php(sp.acsUrl)}]],`,
        `    'NameIDFormat' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',`,
        `    'validate.authnrequest' => true,`,
        `    'validate.logout' => true,`,
        `    'sign.logout' => true,`,
        `    'keys' => [`,
        `        ['type' => 'X509Certificate', 'signing' => true, 'encryption' => false, 'X509Certificate' => ${php(certBody(sp.signingCertPem))}],`,
        ...(sp.encryptionCertPem ? [`        ['type' => 'X509Certificate', 'signing' => false, 'encryption' => true, 'X509Certificate' => ${php(certBody(sp.encryptionCertPem))}],`] : []),
        `    ],`,
        `    'assertion.encryption' => ${sp.encryptionCertPem ? 'true' : 'false'},`,
      ];
      if (sp.sloUrl) lines.push(`    'SingleLogoutService' => [['Binding' => 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', 'Location' => ${php(sp.sloUrl)}]],`);
      return `$metadata[${php(sp.entityId)}] = [\n${lines.join('\n')}\n];`;
    })
    .join('\n');
  writeFileSync(join(root, 'metadata', 'saml20-sp-remote.php'), `<?php\n${spEntries}\n`);

  const child: ChildProcess = spawn('php', ['-S', `127.0.0.1:${port}`, '-t', join(SIMPLESAMLPHP_DIR, 'www')], {
    env: { ...process.env, SIMPLESAMLPHP_CONFIG_DIR: join(root, 'config') },
    stdio: 'ignore',
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  };

  const metadataUrl = entityId;
  let metadataXml = '';
  let lastError: unknown;
  for (let i = 0; i < 100 && !metadataXml; i++) {
    try {
      const res = await fetch(metadataUrl);
      const text = await res.text();
      if (res.ok && text.includes('IDPSSODescriptor')) metadataXml = text;
      else lastError = new Error(`metadata answered ${res.status}: ${text.slice(0, 300)}`);
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  if (!metadataXml) {
    await stop();
    throw new Error(`SimpleSAMLphp did not start on ${port}: ${String(lastError)}`);
  }
  const metadataFile = join(root, 'idp-metadata.xml');
  writeFileSync(metadataFile, metadataXml);
  return {
    baseUrl,
    entityId,
    metadataUrl,
    ssoUrl: `${baseUrl}/saml2/idp/SSOService.php`,
    metadataFile,
    metadataXml,
    idp,
    users,
    logFile: join(root, 'log', 'simplesamlphp.log'),
    stop,
  };
}
