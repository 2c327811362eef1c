import { readFileSync } from 'node:fs';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import YAML from 'yaml';
import { parseConfig } from '../../../src/config/load.ts';
import { nginxAvailable, testNginxConfig } from '../../peers/nginx.ts';
import { createTestPki, type TestPki } from '../../peers/pki.ts';
import { baseUpstream, GENERIC, startBed, TlsBrowser, type Bed } from './harness.ts';

// The documented set-up in deploy/: the broker configuration in README-smartcard.md parses, and
// nginx-smartcard.conf (its paths swapped for a generated PKI and loopback ports) passes `nginx -t`
// and carries a real smartcard login, replaces client-sent certificate headers, and hands a card that
// fails nginx's verification to the broker's own refusal page.

const README = new URL('../../../deploy/README-smartcard.md', import.meta.url);
const CONF = new URL('../../../deploy/nginx-smartcard.conf', import.meta.url);
const available = nginxAvailable();

function deployConf(pki: TestPki, port: number, brokerPort: number): string {
  const swaps: Array<[string, string]> = [
    ['server broker.internal:8443;', `server 127.0.0.1:${brokerPort};`],
    ['listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`],
    ['server_name login.example.nhs.uk;', 'server_name localhost;'],
    ['proxy_ssl_name                broker.internal;', 'proxy_ssl_name localhost;'],
    // Not on port 443 here: keep the port in Host, as browsers send it.
    ['proxy_set_header Host              $host;', 'proxy_set_header Host $http_host;'],
    ['/etc/nginx/tls/login.pem', pki.files.serverCert],
    ['/etc/nginx/tls/login.key', pki.files.serverKey],
    ['/etc/nginx/smartcard/ca-chain.pem', pki.files.smartcardCaChain],
    ['/etc/nginx/smartcard/crls.pem', pki.files.crls],
    ['/etc/nginx/smartcard/proxy-client.pem', pki.files.proxyCert],
    ['/etc/nginx/smartcard/proxy-client.key', pki.files.proxyKey],
    ['/etc/nginx/smartcard/broker-server-ca.pem', pki.files.serverCa],
  ];
  let text = readFileSync(CONF, 'utf8');
  for (const [from, to] of swaps) {
    if (!text.includes(from)) throw new Error(`deploy/nginx-smartcard.conf no longer contains ${from}`);
    text = text.split(from).join(to);
  }
  if (/^[^#]*\/etc\//m.test(text)) throw new Error('an /etc path was not replaced');
  return text;
}

describe('deploy/README-smartcard.md', () => {
  it('its broker configuration parses', () => {
    const md = readFileSync(README, 'utf8');
    const block = /```yaml\n([\s\S]*?)```/.exec(md)?.[1];
    expect(block).toBeTruthy();
    const config = parseConfig(YAML.parse(block!), { BROKER_KEK: 'x'.repeat(43) });
    const sc = config.upstreams.find((u) => u.id === 'smartcard');
    expect(sc?.type).toBe('smartcard');
    if (sc?.type !== 'smartcard') return;
    expect(sc.proxy?.format).toBe('nginx');
    expect(sc.revocation.failOpen).toBe(false);
    expect(sc.assurance).toEqual({ acr: 'AAL3_SMARTCARD', aal: 3, amr: ['sc'] });
  });
});

describe.skipIf(!available)('deploy/nginx-smartcard.conf', () => {
  let bed: Bed;
  const browsers: TlsBrowser[] = [];

  beforeAll(async () => {
    const pki = await createTestPki();
    bed = await startBed({
      pki,
      nginx: ({ port, brokerPort }) => deployConf(pki, port, brokerPort),
      upstreams: (p) => [
        baseUpstream(p, 'smartcard', {
          proxy: { format: 'nginx', verifyHeader: 'x-ssl-client-verify', authentication: { mtls: { caFile: p.files.proxyCa, allowedNames: ['smartcard-proxy'] }, allowedSources: ['127.0.0.1/32'] } },
        }),
      ],
    });
  });

  afterAll(async () => {
    for (const b of browsers) await b.close();
    await bed?.close();
  });

  it('passes nginx -t', () => {
    const r = testNginxConfig(deployConf(bed.pki, 4443, 8443));
    expect(r.output).toMatch(/test is successful/);
    expect(r.ok).toBe(true);
  });

  it('carries a smartcard login, with client-sent certificate headers replaced', async () => {
    const b = new TlsBrowser(bed.pki, bed.pki.users.alice);
    browsers.push(b);
    const l = await bed.login(b, 'smartcard', (url) => b.get(url.href, [['X-SSL-Client-Cert', encodeURIComponent(bed.pki.users.bob.certPem)], ['X-SSL-Client-Verify', 'SUCCESS']]));
    const claims = await bed.redeem(l.outcome, l);
    expect(claims.acr).toBe('AAL3_SMARTCARD');
    expect(bed.logs.some((x) => x.msg === 'upstream login succeeded')).toBe(true);
  });

  it('a card nginx fails (revoked) reaches the broker, which refuses it with its own page', async () => {
    const b = new TlsBrowser(bed.pki, bed.pki.users.revoked);
    browsers.push(b);
    const since = bed.logs.length;
    const before = await bed.counts();
    const { outcome } = await bed.login(b, 'smartcard');
    expect(outcome.kind).toBe('page');
    if (outcome.kind !== 'page') return;
    expect(outcome.status).toBe(401);
    expect(outcome.html).toContain(GENERIC);
    expect(bed.reasons(since).join(' | ')).toMatch(/proxy reports client verification FAILED/);
    expect(await bed.counts()).toEqual(before);
  });
});
