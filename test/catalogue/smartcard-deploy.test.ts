// Catalogue CC-20: the hop from the certificate proxy to the broker is TLS with the proxy's own client
// certificate, and the broker's pods take traffic only from their front. Checked on the files in
// deploy/ (a change that opens either fails the build), on the configuration schema, and on a running
// broker: a broker listening on plain HTTP cannot be fed a certificate header, because its proxy is
// authenticated on the TLS connection and there is none.
import 'reflect-metadata';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import YAML from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import { smartcardUpstreamSchema } from '../../src/config/upstream-smartcard.ts';
import { clientKey, startTestBroker, testConfig, type TestBroker } from '../helpers/broker.ts';
import { UserAgent, followToClient, hiddenField, location } from '../helpers/browser.ts';
import { createTestPki, type TestPki } from '../peers/pki.ts';
import { baseUpstream, HMAC_SECRET } from '../providers/smartcard/harness.ts';
import { DbCounter } from '../oidc/hostile/support.ts';
import { signForwarded } from '../../providers/smartcard/index.ts';
import { escapedPem, sf } from './smartcard-support.ts';

const DEPLOY = new URL('../../deploy/', import.meta.url).pathname;
// YAML documents are read loosely here; what matters is asserted field by field.
type Obj = Record<string, any>;

/** nginx configuration without comments. */
const nginxText = (file: string) =>
  readFileSync(join(DEPLOY, file), 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*$/, ''))
    .join('\n');

describe('CC-20 deploy/: the certificate proxy reaches the broker over mutual TLS only', () => {
  const confs = readdirSync(DEPLOY).filter((f) => f.endsWith('.conf'));

  it('CC-20 every nginx configuration that forwards a client certificate proxies over https with its own client certificate and verifies the broker', () => {
    const forwarding = confs.filter((f) => /proxy_set_header\s+\S+\s+\$ssl_client_(escaped_)?cert\b/.test(nginxText(f)));
    expect(forwarding).toEqual(['nginx-smartcard.conf']);
    for (const f of forwarding) {
      const text = nginxText(f);
      const passes = [...text.matchAll(/proxy_pass\s+(\S+);/g)].map((m) => m[1]);
      expect(passes.length, f).toBeGreaterThan(0);
      for (const p of passes) expect(p, `${f}: ${p}`).toMatch(/^https:\/\//);
      expect(text).toMatch(/^\s*proxy_ssl_certificate\s+\S+;/m);
      expect(text).toMatch(/^\s*proxy_ssl_certificate_key\s+\S+;/m);
      expect(text).toMatch(/^\s*proxy_ssl_verify\s+on;/m);
      expect(text).toMatch(/^\s*proxy_ssl_trusted_certificate\s+\S+;/m);
      expect(text).not.toMatch(/^\s*proxy_ssl_protocols[^;]*(SSLv|TLSv1(\.1)?\b(?!\.))/m);
    }
  });

  it('CC-20 every other nginx front forwards no certificate header at all (it blanks them)', () => {
    for (const f of confs.filter((c) => c !== 'nginx-smartcard.conf')) {
      const text = nginxText(f);
      for (const h of ['X-SSL-Client-Cert', 'X-SSL-Client-Verify', 'Client-Cert', 'Client-Cert-Chain', 'Client-Cert-Signature', 'X-Forwarded-Client-Cert', 'X-Amzn-Mtls-Clientcert-Leaf']) {
        expect(text, `${f}: ${h}`).toMatch(new RegExp(`proxy_set_header\\s+${h}\\s+"";`));
      }
      expect(text).not.toMatch(/\$ssl_client_/);
    }
  });

  it('CC-20 the documented broker configuration listens on TLS, asks for certificates, and authenticates the proxy by mTLS, name and address', () => {
    const block = /```yaml\n([\s\S]*?)```/.exec(readFileSync(join(DEPLOY, 'README-smartcard.md'), 'utf8'))?.[1];
    const config = parseConfig(YAML.parse(block!), { BROKER_KEK: 'x'.repeat(43) });
    expect(config.tls).toMatchObject({ requestCert: true });
    expect(config.tls?.clientCaFile).toBeTruthy();
    const sc = config.upstreams.find((u) => u.type === 'smartcard');
    expect(sc?.type).toBe('smartcard');
    if (sc?.type !== 'smartcard') return;
    expect(sc.proxy?.authentication.mtls?.allowedNames?.length).toBeGreaterThan(0);
    expect(sc.proxy?.authentication.allowedSources?.length).toBeGreaterThan(0);
    expect(sc.proxy?.authentication.hmac).toBeUndefined();
  });

  it('CC-20 a proxy that does not authenticate itself (address allow-list alone, or nothing) is a configuration error', () => {
    const pkiFiles = { smartcardRoots: '/x/roots.pem', smartcardIntermediates: '/x/int.pem', crls: '/x/crls.pem' };
    const base = baseUpstream({ files: pkiFiles } as TestPki, 'sc', {});
    for (const authentication of [{}, { allowedSources: ['10.0.0.0/8'] }]) {
      const r = smartcardUpstreamSchema.safeParse({ ...base, proxy: { format: 'nginx', authentication } });
      expect(r.success).toBe(false);
      expect(JSON.stringify(r.error?.issues)).toMatch(/a proxy must authenticate itself/);
    }
    expect(smartcardUpstreamSchema.safeParse({ ...base, proxy: { format: 'nginx', authentication: { hmac: { secrets: ['short'] } } } }).success).toBe(false);
  });
});

describe('CC-20 deploy/k8s: broker pods accept traffic from their front and their scraper only', () => {
  const k8s = join(DEPLOY, 'k8s');
  const docs = readdirSync(k8s)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && f !== 'redis-values.yaml')
    .flatMap((f) => YAML.parseAllDocuments(readFileSync(join(k8s, f), 'utf8')).map((d) => d.toJSON() as Obj))
    .filter(Boolean);
  const deployment = docs.find((d) => d.kind === 'Deployment')!;
  const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
  const policies = docs.filter((d) => d.kind === 'NetworkPolicy');

  it('CC-20 the NetworkPolicy is part of the kustomization and selects the broker pods for ingress', () => {
    const kustomization = YAML.parse(readFileSync(join(k8s, 'kustomization.yaml'), 'utf8')) as Obj;
    expect(kustomization.resources).toContain('networkpolicy.yaml');
    const selecting = policies.filter((p) => Object.entries(p.spec.podSelector.matchLabels as Record<string, string>).every(([k, v]) => podLabels[k] === v));
    expect(selecting.length).toBeGreaterThan(0);
    for (const p of selecting) expect(p.spec.policyTypes).toContain('Ingress');
  });

  it('CC-20 every ingress rule names its peers by namespace label and port: no open peer, no address block, no other port', () => {
    const container = deployment.spec.template.spec.containers[0] as Obj;
    const named = new Map((container.ports as Obj[]).map((p) => [p.name as string, p.containerPort as number]));
    for (const p of policies) {
      for (const rule of p.spec.ingress as Obj[]) {
        expect(Array.isArray(rule.from) && rule.from.length > 0, 'a rule without from admits everyone').toBe(true);
        for (const peer of rule.from as Obj[]) {
          expect(peer.ipBlock).toBeUndefined();
          expect(Object.keys(peer.namespaceSelector?.matchLabels ?? {}).length, 'an empty namespaceSelector admits every namespace').toBeGreaterThan(0);
        }
        expect((rule.ports as Obj[] | undefined)?.length, 'a rule without ports admits every port').toBeGreaterThan(0);
        for (const port of rule.ports as Obj[]) expect([named.get('http'), named.get('metrics')]).toContain(port.port);
      }
    }
  });

  it('CC-20 the Service is cluster-internal (no NodePort or LoadBalancer)', () => {
    for (const s of docs.filter((d) => d.kind === 'Service')) expect(s.spec.type ?? 'ClusterIP').toBe('ClusterIP');
  });
});

describe('CC-20 a broker on plain HTTP with an mTLS-authenticated proxy upstream', () => {
  let pki: TestPki;
  let tb: TestBroker;
  let db: DbCounter;

  beforeAll(async () => {
    pki = await createTestPki();
    const svcKey = await clientKey();
    const upstream = baseUpstream(pki, 'smartcard', { proxy: { format: 'nginx', verifyHeader: 'x-ssl-client-verify', authentication: { mtls: { caFile: pki.files.proxyCa } } } });
    const hmac = baseUpstream(pki, 'smartcard-hmac', { proxy: { format: 'rfc9440', authentication: { hmac: { secrets: [HMAC_SECRET] } } } });
    tb = await startTestBroker({ svcKey, extra: { profile: 'none', upstreams: [upstream, hmac], clients: testConfig(0, 'sqlite::memory:', svcKey).clients } });
    db = new DbCounter(tb);
  }, 60_000);
  afterAll(async () => {
    db?.close();
    await tb?.close();
  });

  /** From an authorization request to the URL of the smartcard callback (the chooser answered). */
  async function toCallback(ua: UserAgent, upstream: string): Promise<string> {
    const params = new URLSearchParams({ client_id: 'web', response_type: 'code', redirect_uri: 'https://client.test/cb', scope: 'openid', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' });
    const interaction = location(await ua.get(`${tb.base}/auth?${params}`), tb.base);
    const chooser = await (await ua.get(interaction)).text();
    const uid = new URL(interaction).pathname.split('/').pop()!;
    return location(await ua.postForm(`${tb.base}/interaction/${uid}/login`, { csrf: hiddenField(chooser, 'csrf'), upstream }), tb.base);
  }

  it('CC-20 the forwarded certificate is refused as spoofing: no TLS, so no authenticated proxy', async () => {
    const ua = new UserAgent();
    const callback = await toCallback(ua, 'smartcard');
    const before = db.snapshot();
    const res = await ua.request(callback, { headers: { 'X-SSL-Client-Cert': escapedPem(pki.users.alice), 'X-SSL-Client-Verify': 'SUCCESS' } });
    expect(res.status).toBe(401);
    expect(await res.text()).toContain('We could not verify your sign-in');
    const after = db.snapshot();
    for (const k of ['accounts', 'links', 'oidc:AuthorizationCode', 'oidc:Session', 'oidc:VerifiedUpstreamLogin']) expect(after[k] ?? 0, k).toBe(before[k] ?? 0);
    let reasons = '';
    for (let i = 0; i < 50 && !/spoofing/.test(reasons); i++) {
      await new Promise((r) => setTimeout(r, 20));
      reasons = (await tb.broker.ledger.query({ type: 'upstream.login.failure', order: 'desc', limit: 5 })).map((e) => String(e.details.reason)).join(' | ');
    }
    expect(reasons).toMatch(/spoofing suspected.*no TLS client certificate on this connection/);
  });

  it('[P] CC-20 over plain HTTP only a signing proxy can vouch for a certificate (HMAC over certificate, time and path)', async () => {
        const ua = new UserAgent();
    const url = new URL(await toCallback(ua, 'smartcard-hmac'));
    const cert = sf(pki.users.alice);
    const chain = sf(pki.issuing);
    const sig = signForwarded(HMAC_SECRET, Math.floor(Date.now() / 1000), `${url.pathname}${url.search}`, [cert, chain]);
    const res = await ua.request(url.href, { headers: { 'Client-Cert': cert, 'Client-Cert-Chain': chain, 'Client-Cert-Signature': sig } });
    const back = await followToClient(ua, res, tb.base);
    expect(back.searchParams.get('code')).toBeTruthy();
  });
});
