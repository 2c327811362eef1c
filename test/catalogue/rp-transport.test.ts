// Transport to upstream OPs (catalogue RP-14): an upstream behind a certificate the broker cannot trust
// is never talked to (no HTTP request completes, logins get a 503 page), and a broker configured with a
// plain-http upstream does not start, because the test-only insecure allowance is never on in production.
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import pino from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import { createOidcConnector, OidcConfigError } from '../../providers/oidc/index.ts';
import { parseConfig } from '../../src/config/load.ts';
import { createBroker } from '../../src/server.ts';
import { clientKey, testConfig } from '../helpers/broker.ts';
import { EKU_SERVER_AUTH, issue, makeRoot } from '../peers/pki.ts';
import { freePort } from '../peers/ports.ts';
import { startHarness, type Harness } from '../providers/oidc/harness.ts';

interface TlsUpstream {
  server: Server;
  issuer: string;
  requests: number;
  caPem: string;
}

/** An HTTPS server publishing a discovery document, with a certificate from a CA nobody trusts. */
async function tlsUpstream(opts: { host: string; expired?: boolean }): Promise<TlsUpstream> {
  const ca = await makeRoot('CN=Untrusted Test CA, O=Elsewhere, C=GB');
  const day = 86_400_000;
  const leaf = await issue(ca, {
    subject: `CN=${opts.host}`,
    eku: [EKU_SERVER_AUTH],
    sans: [{ type: 'dns', value: opts.host }],
    ...(opts.expired && { notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) }),
  });
  const state: TlsUpstream = { server: undefined as unknown as Server, issuer: '', requests: 0, caPem: ca.certPem };
  state.server = createServer({ key: leaf.keyPem, cert: leaf.certPem }, (req, res) => {
    state.requests += 1;
    const base = state.issuer;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ issuer: base, authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token`, jwks_uri: `${base}/jwks`, userinfo_endpoint: `${base}/userinfo`, response_types_supported: ['code'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'] }));
    void req;
  });
  await new Promise<void>((r) => state.server.listen(0, '127.0.0.1', r));
  state.issuer = `https://localhost:${(state.server.address() as AddressInfo).port}/oidc`;
  return state;
}

describe('RP-14 upstream transport', () => {
  let h: Harness;
  const upstreams: TlsUpstream[] = [];

  beforeAll(async () => {
    upstreams.push(await tlsUpstream({ host: 'localhost' }), await tlsUpstream({ host: 'other.example' }), await tlsUpstream({ host: 'localhost', expired: true }));
    // One connector per TLS upstream, https only: the test-only insecure allowance is off, as in production.
    h = await startHarness({
      extra: async ({ cis2Config, deps }) =>
        Promise.all(upstreams.map((u, i) => createOidcConnector(cis2Config({ id: `tls-${i}`, displayName: `TLS ${i}`, preset: 'generic', issuer: u.issuer, id_token_signed_response_alg: 'RS256' }), { ...deps, allowInsecureUpstream: false }))),
    });
  });
  afterAll(async () => {
    for (const u of upstreams) {
      u.server.closeAllConnections();
      await new Promise<void>((r) => u.server.close(() => r()));
    }
    await h?.close();
  });

  it('RP-14 [P] each TLS upstream is a working OP for a client that trusts its CA (so the refusals below are about the certificate)', async () => {
    const [trusted] = upstreams;
    const dispatcher = new Agent({ connect: { ca: trusted.caPem } });
    const res = await undiciFetch(`${trusted.issuer}/.well-known/openid-configuration`, { dispatcher });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { issuer: string }).issuer).toBe(trusted.issuer);
    await dispatcher.close();
    trusted.requests = 0;
  });

  it.each([
    ['a certificate from an untrusted CA', 0],
    ['a certificate for another host name', 1],
    ['an expired certificate', 2],
  ])('RP-14 an upstream with %s: no HTTP request completes and a login gets the 503 page, never a redirect upstream', async (_label, i) => {
    const u = upstreams[i];
    const accounts = await h.counts();
    const outcome = await h.attempt(`tls-${i}`, 'gp');
    expect(outcome.kind).toBe('page');
    if (outcome.kind === 'page') {
      expect(outcome.status).toBe(503);
      expect(outcome.callback).toBeUndefined();
    }
    // Not during the broker's start-up discovery either: the upstream never answered one request.
    expect(u.requests).toBe(0);
    expect(await h.counts()).toEqual(accounts);
  });

  it('RP-14 a broker whose configuration names a plain-http upstream refuses to start', async () => {
    const port = await freePort();
    const input = testConfig(port, 'sqlite::memory:', await clientKey());
    const plainIssuer = h.cis2.issuer.replace('/openam', '/x/openam');
    expect(plainIssuer.startsWith('http://')).toBe(true);
    input.upstreams = [{ id: 'plain', type: 'oidc', preset: 'generic', displayName: 'Plain HTTP OP', issuer: plainIssuer, client_id: 'c', client_secret: 'plain-secret-0123456789', authorization_endpoint: `${h.cis2.issuer}/authorize`, token_endpoint: `${h.cis2.issuer}/access_token`, jwks_uri: `${h.cis2.issuer}/connect/jwk_uri` }];
    await expect(createBroker(parseConfig(input, {}), { log: pino({ level: 'silent' }), env: {} })).rejects.toBeInstanceOf(OidcConfigError);
  });
});
