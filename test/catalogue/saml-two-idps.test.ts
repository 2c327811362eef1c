import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import type { Server } from 'node:http';
import { inflateRawSync } from 'node:zlib';
import { DOMParser } from '@xmldom/xmldom';
import { Redis } from 'ioredis';
import * as oc from 'openid-client';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { samlUpstreamSchema, type SamlUpstreamInput } from '../../src/config/upstream-saml.ts';
import { createBroker, type Broker } from '../../src/server.ts';
import { openStore } from '../../src/store/open.ts';
import type { Store } from '../../src/store/contracts.ts';
import { UpstreamAuthError } from '../../src/identity/upstream.ts';
import { createSamlConnector, type SamlConnector } from '../../providers/saml/index.ts';
import { clientKey, testConfig } from '../helpers/broker.ts';
import { freePort } from '../peers/ports.ts';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { generateKeyPair, simpleSamlAvailable, startSimpleSaml, type KeyPair, type SimpleSamlPeer } from '../peers/simplesamlphp.ts';
import { XML_NS, craft, decodeResponse, first, followToClient, loginAtIdp, startLogin, type IdpAnswer, type PendingLogin, type SamlEnv, type SamlId } from '../providers/saml/harness.ts';
import { setAll } from './saml-acs.ts';

// Two real IdPs (two SimpleSAMLphp instances with their own keys) and two broker instances sharing one
// Redis: a response must be verified by the key of the IdP the endpoint belongs to, carry that IdP as
// Issuer and be addressed to that endpoint (SAML-34); an assertion used on one instance is refused on
// the other, and two instances racing on one assertion let exactly one through (SAML-26).

const { SAML, SAMLP } = XML_NS;
const IDS = ['idp-a', 'idp-a-unsol', 'idp-b'] as const;
type Id = (typeof IDS)[number];

interface Node {
  broker: Broker;
  server: Server;
  store: Store;
  port: number;
}

describe.skipIf(!simpleSamlAvailable || !redisAvailable)('SAML catalogue: two IdPs, two broker instances on one Redis', () => {
  let redis: RedisPeer;
  let probe: Redis;
  let idpA: SimpleSamlPeer;
  let idpB: SimpleSamlPeer;
  let sp: KeyPair;
  let base: string;
  let web: oc.Configuration;
  const nodes: Node[] = [];
  const failures: string[] = [];
  const identities: string[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    probe = new Redis(redis.url);
    const ports = [await freePort(), await freePort()];
    // Both instances answer under one issuer (as behind a load balancer); the IdPs know that origin.
    base = `http://localhost:${ports[0]}`;
    sp = generateKeyPair('broker-sp');
    const spFor = (id: Id) => ({ entityId: `${base}/upstream/${id}/metadata`, acsUrl: `${base}/upstream/${id}/callback`, sloUrl: `${base}/upstream/${id}/slo`, signingCertPem: sp.certPem });
    idpA = await startSimpleSaml({ sps: [spFor('idp-a'), spFor('idp-a-unsol')] });
    idpB = await startSimpleSaml({ sps: [spFor('idp-b')] });
    const input = (id: Id, idp: SimpleSamlPeer, extra: Partial<SamlUpstreamInput> = {}): SamlUpstreamInput => ({
      id,
      type: 'saml',
      displayName: id,
      idpMetadataFile: idp.metadataFile,
      spPrivateKey: sp.keyPem,
      spCertificate: sp.certPem,
      linkable: [],
      ...extra,
    });
    const inputs = [input('idp-a', idpA), input('idp-a-unsol', idpA, { allowUnsolicited: true }), input('idp-b', idpB)];
    const svcKey = await clientKey('ES256');
    for (const port of ports) {
      const store = openStore(redis.url);
      const deps = { issuer: base, replay: store.replay, onUpstreamLogout: async () => undefined, allowInsecureUpstream: true };
      const connectors: SamlConnector[] = [];
      for (const i of inputs) {
        const c = await createSamlConnector(samlUpstreamSchema.parse(i), deps);
        connectors.push({
          ...c,
          async complete(ctx, tx) {
            try {
              const identity = await c.complete(ctx, tx);
              identities.push(`${port}:${identity.provider}:${identity.subject}`);
              return identity;
            } catch (err) {
              if (err instanceof UpstreamAuthError) failures.push(err.reason);
              throw err;
            }
          },
        });
      }
      const config = parseConfig(testConfig(ports[0], redis.url, svcKey, { upstreams: inputs }), {});
      // The first instance creates the signing keys in Redis; the second loads them.
      const broker = await createBroker(config, { log: pino({ level: 'silent' }), env: {}, store, connectors, allowInsecureUpstreams: true });
      nodes.push({ broker, store, port, server: await broker.listen(port, '127.0.0.1') });
    }
    web = await oc.discovery(new URL(base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute: [oc.allowInsecureRequests] });
  }, 120_000);
  afterAll(async () => {
    for (const n of nodes) {
      n.server.closeAllConnections();
      await n.broker.close();
      await n.store.close();
    }
    probe?.disconnect();
    await idpA?.stop();
    await idpB?.stop();
    await redis?.stop();
  });

  // The harness's browser steps need only the broker's base URL and its web client.
  const env = () => ({ base, web }) as unknown as SamlEnv;
  const count = async (pattern: string): Promise<number> => {
    let n = 0;
    let cursor = '0';
    do {
      const [next, keys] = await probe.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      n += keys.length;
    } while (cursor !== '0');
    return n;
  };
  const created = async () => ({ accounts: await count('*account:{*'), links: await count('*link:{*'), sessions: await count('*oidc:{Session:*'), codes: await count('*oidc:{AuthorizationCode:*') });

  async function at(idp: SimpleSamlPeer, upstream: Id): Promise<{ login: PendingLogin; answer: IdpAnswer }> {
    const login = await startLogin(env(), upstream as unknown as SamlId);
    expect(new URL(login.ssoRedirect).origin).toBe(idp.baseUrl);
    return { login, answer: await loginAtIdp(login.browser, login.ssoRedirect, 'bob', 'bob-password') };
  }

  /** A login started at the broker for `upstream`, stopped before the IdP: its RelayState and request id. */
  async function pending(upstream: Id): Promise<{ login: PendingLogin; relayState: string; requestId: string }> {
    const login = await startLogin(env(), upstream as unknown as SamlId);
    const url = new URL(login.ssoRedirect);
    const request = new DOMParser().parseFromString(inflateRawSync(Buffer.from(url.searchParams.get('SAMLRequest') ?? '', 'base64')).toString('utf8'), 'text/xml').documentElement;
    return { login, relayState: url.searchParams.get('RelayState') ?? '', requestId: request.getAttribute('ID') ?? '' };
  }

  /** Rewrites a response so that, but for who signed it and its Issuer, it answers `target`'s request. */
  function retarget(d: Document, upstream: Id, requestId: string, issuer?: string): void {
    const acs = `${base}/upstream/${upstream}/callback`;
    first(d, SAMLP, 'Response').setAttribute('Destination', acs);
    first(d, SAMLP, 'Response').setAttribute('InResponseTo', requestId);
    setAll(d, SAML, 'SubjectConfirmationData', 'Recipient', acs);
    setAll(d, SAML, 'SubjectConfirmationData', 'InResponseTo', requestId);
    first(d, SAML, 'Audience').textContent = `${base}/upstream/${upstream}/metadata`;
    if (issuer) for (const el of Array.from(d.getElementsByTagNameNS(SAML, 'Issuer'))) el.textContent = issuer;
  }

  async function refused(login: PendingLogin, upstream: Id, samlResponse: string, relayState: string, reason: RegExp, port = nodes[0].port): Promise<void> {
    const before = await created();
    const marks = { failures: failures.length, identities: identities.length };
    const res = await login.browser.postForm(`http://localhost:${port}/upstream/${upstream}/callback`, { SAMLResponse: samlResponse, RelayState: relayState });
    expect(res.status).toBe(401);
    expect(res.headers.get('location')).toBeNull();
    expect(res.headers.getSetCookie().some((c) => /^_session(\.sig)?=/.test(c))).toBe(false);
    expect(identities.length).toBe(marks.identities);
    expect(failures.length).toBe(marks.failures + 1);
    expect(failures.at(-1)).toMatch(reason);
    expect(await created()).toEqual(before);
  }

  it('SAML-34 [P] each IdP signs in through its own upstream', async () => {
    const before = await created();
    for (const [idp, upstream] of [[idpA, 'idp-a'], [idpB, 'idp-b']] as const) {
      const { login, answer } = await at(idp, upstream);
      const res = await login.browser.postForm(answer.acs, { SAMLResponse: answer.SAMLResponse, RelayState: answer.RelayState });
      const back = await followToClient(env(), login.browser, res, answer.acs);
      expect(back.searchParams.get('code')).toBeTruthy();
    }
    // The counts the refusals below compare really move when something is created.
    const after = await created();
    expect(after.accounts).toBe(before.accounts + 2);
    expect(after.links).toBe(before.links + 2);
    expect(after.codes).toBe(before.codes + 2);
  });

  it('SAML-34 IdP A’s genuine response posted to IdP B’s endpoint (with a transaction of B) is refused', async () => {
    const a = await at(idpA, 'idp-a');
    const b = await pending('idp-b');
    await refused(b.login, 'idp-b', a.answer.SAMLResponse, b.relayState, /signature|Destination|audience|InResponseTo|Issuer/i);
  });

  it('SAML-34 IdP A’s response rewritten for B’s endpoint and request, re-signed with A’s key, is refused: the key is not B’s', async () => {
    for (const issuer of [undefined, idpB.entityId]) {
      const a = await at(idpA, 'idp-a');
      const b = await pending('idp-b');
      const hostile = craft(a.answer.SAMLResponse, idpA.idp, { mutate: (d) => retarget(d, 'idp-b', b.requestId, issuer) });
      await refused(b.login, 'idp-b', hostile, b.relayState, /signature/i);
    }
  });

  it('SAML-34 a response signed with IdP B’s key (trusted for B) for A’s endpoint is refused, with A or B as Issuer', async () => {
    for (const issuer of [idpA.entityId, idpB.entityId]) {
      const b = await at(idpB, 'idp-b');
      const a = await pending('idp-a');
      const hostile = craft(b.answer.SAMLResponse, idpB.idp, { mutate: (d) => retarget(d, 'idp-a', a.requestId, issuer) });
      await refused(a.login, 'idp-a', hostile, a.relayState, /signature|Issuer/i);
    }
  });

  it('SAML-34 IdP A’s key and endpoint but IdP B as Issuer is refused', async () => {
    const a = await at(idpA, 'idp-a');
    const hostile = craft(a.answer.SAMLResponse, idpA.idp, { mutate: (d) => { for (const el of Array.from(d.getElementsByTagNameNS(SAML, 'Issuer'))) el.textContent = idpB.entityId; } });
    await refused(a.login, 'idp-a', hostile, a.answer.RelayState, /Issuer/);
  });

  describe('SAML-26 replay across instances', () => {
    const unsolicited = (samlResponse: string) =>
      craft(samlResponse, idpA.idp, {
        mutate: (d) => {
          first(d, SAMLP, 'Response').removeAttribute('InResponseTo');
          setAll(d, SAML, 'SubjectConfirmationData', 'InResponseTo', null);
        },
      });

    it('SAML-26 an assertion accepted on one instance is refused on the other; the used ID sits in Redis until it expires', async () => {
      const first1 = await at(idpA, 'idp-a-unsol');
      const response = unsolicited(first1.answer.SAMLResponse);
      const res = await first1.login.browser.postForm(`http://localhost:${nodes[0].port}/upstream/idp-a-unsol/callback`, { SAMLResponse: response, RelayState: first1.answer.RelayState });
      expect(res.status).toBe(303);
      expect(identities.at(-1)).toMatch(new RegExp(`^${nodes[0].port}:idp-a-unsol:`));
      const assertionId = first(decodeResponse(response), SAML, 'Assertion').getAttribute('ID') ?? '';
      const keys = await probe.keys(`*saml-assertion*${encodeURIComponent(assertionId)}*`);
      expect(keys.length).toBe(1);
      const ttl = await probe.ttl(keys[0]);
      const notOnOrAfter = Date.parse(first(decodeResponse(response), SAML, 'SubjectConfirmationData').getAttribute('NotOnOrAfter') ?? '');
      expect(ttl).toBeGreaterThan(0);
      // Until NotOnOrAfter plus the configured skew (a few minutes), not forever.
      expect(ttl).toBeLessThanOrEqual(Math.ceil((notOnOrAfter - Date.now()) / 1000) + 600);
      // A fresh transaction in another browser, completed on the other instance.
      const second = await pending('idp-a-unsol');
      await refused(second.login, 'idp-a-unsol', response, second.relayState, /replayed assertion/, nodes[1].port);
    });

    it('SAML-26 the same assertion raced to both instances at once: exactly one is accepted', async () => {
      const source = await at(idpA, 'idp-a-unsol');
      const response = unsolicited(source.answer.SAMLResponse);
      const other = await pending('idp-a-unsol');
      const marks = { failures: failures.length, identities: identities.length };
      const [r1, r2] = await Promise.all([
        source.login.browser.postForm(`http://localhost:${nodes[0].port}/upstream/idp-a-unsol/callback`, { SAMLResponse: response, RelayState: source.answer.RelayState }),
        other.login.browser.postForm(`http://localhost:${nodes[1].port}/upstream/idp-a-unsol/callback`, { SAMLResponse: response, RelayState: other.relayState }),
      ]);
      expect([r1.status, r2.status].sort()).toEqual([303, 401]);
      expect(identities.length).toBe(marks.identities + 1);
      expect(failures.slice(marks.failures)).toEqual([expect.stringMatching(/replayed assertion/)]);
    });
  });
});
