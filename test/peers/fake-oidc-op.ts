import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import Koa from 'koa';
import Provider, { type Adapter, type AdapterPayload, type ClientMetadata, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import { base64url, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { freePort } from './ports.ts';

// The common machinery of the fake upstream OPs (fake-cis2.ts, fake-nhs-login.ts): a real
// oidc-provider 9 on a loopback port, mounted under its issuer's path, with a non-interactive login
// (the persona comes from login_hint or a default), key rotation, a record of what it received, and
// knobs for misbehaviour (tampered ID tokens, slow or failing token endpoint).

export type Use = 'id_token' | 'userinfo';

export type LoginDecision =
  | { accountId: string; acr?: string; amr?: string[]; info?: Record<string, unknown> }
  | { error: string; error_description?: string };

export interface InteractionParams {
  [key: string]: unknown;
}

export interface FakeOpDefinition {
  /** Cookie name prefix, so the fake's cookies never collide with the broker's. */
  name: string;
  /** Issuer path below the origin, e.g. /openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare. */
  issuerPath: string;
  /** The issuer as published (default http://127.0.0.1:<port><issuerPath>). */
  publicOrigin?: string;
  routes: { authorization: string; token: string; userinfo: string; jwks: string; end_session?: string };
  idTokenAlg: 'RS256' | 'RS512';
  clients: ClientMetadata[];
  claims: Record<string, string[]>;
  scopes: string[];
  extraParams?: string[];
  acrValues?: string[];
  clientAuthMethods: string[];
  ttl: { AccessToken: number; AuthorizationCode: number; IdToken: number };
  /** Key id style: CIS2 uses a base64 SHA-1 thumbprint ("b/O6OvVv1+y+WgrH5Ui9WTioLt0="). */
  kid: (jwk: JWK) => string;
  login(params: InteractionParams, op: FakeOp): LoginDecision;
  claimsFor(accountId: string, use: Use, scope: Set<string>, info: Record<string, unknown> | undefined): Record<string, unknown> | undefined;
  assertClientAuth?: Configuration['assertJwtClientAuthClaimsAndHeader'];
  /** Extra parameters on the authorization response redirect (CIS2 adds client_id). */
  decorateRedirect?(url: URL): void;
  /** Extra members of the token response (CIS2 echoes nonce). */
  decorateTokenResponse?(body: Record<string, unknown>, idTokenClaims: JWTPayload | undefined): void;
  /** Trust X-Forwarded-* (the fake is then reached through a host mapping, e.g. https://cis2.test:443). */
  proxy?: boolean;
}

export interface Tamper {
  iss?: string;
  aud?: string | string[];
  azp?: string;
  nonce?: string;
  /** Seconds relative to now. */
  exp?: number;
  iat?: number;
  claims?: Record<string, unknown>;
  /** Claims to remove. */
  omit?: string[];
  /** Sign with a key that is not in the JWKS (its own kid, or the current key's kid), or not at all. */
  sign?: 'foreign' | 'forged' | 'none';
  alg?: string;
}

/** Misbehaviour of one endpoint: a delay, then (if given) a status and body instead of the real answer. */
export interface EndpointFault {
  delayMs?: number;
  status?: number;
  /** E.g. an HTML error page, or JSON cut short. */
  body?: string;
  contentType?: string;
}

export type FaultyEndpoint = 'discovery' | 'token' | 'userinfo' | 'jwks';

export interface TokenRequestRecord {
  grantType?: string;
  authMethod?: string;
  assertionHeader?: Record<string, unknown>;
  assertionClaims?: JWTPayload;
  status: number;
}

interface SigningKey {
  kid: string;
  privateJwk: JWK;
}

class MemoryAdapter implements Adapter {
  readonly model: string;
  readonly #store: Map<string, { payload: AdapterPayload; expiresAt: number }>;

  constructor(model: string, store: Map<string, { payload: AdapterPayload; expiresAt: number }>) {
    this.model = model;
    this.#store = store;
  }
  #key(id: string): string {
    return `${this.model}:${id}`;
  }
  #get(key: string): AdapterPayload | undefined {
    const e = this.#store.get(key);
    if (!e) return undefined;
    if (e.expiresAt < Date.now()) {
      this.#store.delete(key);
      return undefined;
    }
    return e.payload;
  }
  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    this.#store.set(this.#key(id), { payload: structuredClone(payload), expiresAt: Date.now() + expiresIn * 1000 });
    if (payload.uid) this.#store.set(`${this.model}:uid:${payload.uid}`, { payload: { id } as AdapterPayload, expiresAt: Date.now() + expiresIn * 1000 });
    if (payload.userCode) this.#store.set(`${this.model}:userCode:${payload.userCode}`, { payload: { id } as AdapterPayload, expiresAt: Date.now() + expiresIn * 1000 });
  }
  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.#get(this.#key(id));
  }
  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const ref = this.#get(`${this.model}:uid:${uid}`);
    return ref?.id ? this.find(String(ref.id)) : undefined;
  }
  async findByUserCode(code: string): Promise<AdapterPayload | undefined> {
    const ref = this.#get(`${this.model}:userCode:${code}`);
    return ref?.id ? this.find(String(ref.id)) : undefined;
  }
  async consume(id: string): Promise<void> {
    const p = this.#get(this.#key(id));
    if (p) p.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id: string): Promise<void> {
    this.#store.delete(this.#key(id));
  }
  async revokeByGrantId(grantId: string): Promise<void> {
    for (const [k, e] of this.#store) if (e.payload.grantId === grantId) this.#store.delete(k);
  }
}

export function sha1Kid(jwk: JWK): string {
  return createHash('sha1').update(jwk.n ?? jwk.x ?? '').digest('base64');
}

async function newKey(kidOf: (jwk: JWK) => string): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = kidOf(jwk);
  return { kid, privateJwk: { ...jwk, kid, use: 'sig' } };
}

/** The same RSA key as a CryptoKey for the given algorithm (WebCrypto binds the hash to the key). */
async function signingKey(key: SigningKey, alg: string): Promise<CryptoKey> {
  const { use: _use, ...material } = key.privateJwk;
  return (await importJWK(material, alg)) as CryptoKey;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class FakeOp {
  readonly definition: FakeOpDefinition;
  readonly port: number;
  readonly issuer: string;
  /** Plain loopback origin the fake listens on. */
  readonly origin: string;
  readonly received: { authorize: URLSearchParams[]; token: TokenRequestRecord[]; jwks: number; idTokenKids: string[] } = { authorize: [], token: [], jwks: 0, idTokenKids: [] };
  /** Applied to the next ID token (then cleared). */
  tamper: Tamper | undefined;
  /** Merged into the next userinfo response (then cleared). */
  tamperUserinfo: Record<string, unknown> | undefined;
  /** Delay before the token endpoint answers. */
  tokenDelayMs = 0;
  /** The token endpoint answers with this HTTP status instead (a 5xx outage). */
  tokenFailure: number | undefined;
  /** Used when the authorization request carries no login_hint. */
  defaultPersona: string | undefined;
  /** Per-endpoint misbehaviour, kept until the test clears it. */
  faults: Partial<Record<FaultyEndpoint, EndpointFault>> = {};

  #keys: SigningKey[] = [];
  #provider!: Provider;
  #handler!: ReturnType<Provider['callback']>;
  readonly #store = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  readonly #grantInfo = new Map<string, Record<string, unknown> | undefined>();
  readonly #cookieKeys = [randomBytes(32).toString('base64url')];
  #server: Server | undefined;

  private constructor(definition: FakeOpDefinition, port: number) {
    this.definition = definition;
    this.port = port;
    this.origin = `http://127.0.0.1:${port}`;
    this.issuer = `${definition.publicOrigin ?? this.origin}${definition.issuerPath}`;
  }

  static async start(definition: FakeOpDefinition, port?: number): Promise<FakeOp> {
    const op = new FakeOp(definition, port ?? (await freePort()));
    op.#keys = [await newKey(definition.kid)];
    op.#build();
    await op.#listen();
    return op;
  }

  get provider(): Provider {
    return this.#provider;
  }

  /** Public JWKS as published. */
  get jwks(): { keys: JWK[] } {
    return { keys: this.#keys.map((k) => { const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = k.privateJwk; return pub; }) };
  }

  get currentKid(): string {
    return this.#keys[0].kid;
  }

  /** Adds a new signing key first in the JWKS and signs with it from now on. */
  async rotateKeys(): Promise<string> {
    this.#keys = [await newKey(this.definition.kid), ...this.#keys];
    this.#build();
    return this.currentKid;
  }

  /** Drops every key but the current one. */
  dropOldKeys(): void {
    this.#keys = this.#keys.slice(0, 1);
    this.#build();
  }

  /** A back-channel logout token signed like the fake's ID tokens. */
  async logoutToken(options: { clientId: string; sub?: string; sid?: string; claims?: Record<string, unknown>; omit?: string[]; typ?: string | null; sign?: 'foreign' | 'forged' | 'none'; alg?: string }): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const payload: Record<string, unknown> = {
      iss: this.issuer,
      aud: options.clientId,
      iat: now,
      exp: now + 120,
      jti: randomUUID(),
      events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
      ...(options.sub && { sub: options.sub }),
      ...(options.sid && { sid: options.sid }),
      ...options.claims,
    };
    for (const k of options.omit ?? []) delete payload[k];
    const typ = options.typ === undefined ? 'logout+jwt' : options.typ;
    return this.#sign(payload, { alg: options.alg ?? this.definition.idTokenAlg, typ: typ ?? undefined, sign: options.sign });
  }

  async close(): Promise<void> {
    const s = this.#server;
    if (!s) return;
    this.#server = undefined;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Stops listening (the upstream is down) without forgetting its state; `restart()` brings it back. */
  async stop(): Promise<void> {
    await this.close();
  }

  async restart(): Promise<void> {
    if (!this.#server) await this.#listen();
  }

  async #sign(payload: Record<string, unknown>, o: { alg: string; typ?: string; sign?: 'foreign' | 'forged' | 'none' }): Promise<string> {
    if (o.sign === 'none') {
      const header = base64url.encode(JSON.stringify({ alg: 'none', ...(o.typ && { typ: o.typ }) }));
      return `${header}.${base64url.encode(JSON.stringify(payload))}.`;
    }
    const key = o.sign === 'foreign' ? await newKey(() => 'foreign-key') : o.sign === 'forged' ? await newKey(() => this.#keys[0].kid) : this.#keys[0];
    return new SignJWT(payload).setProtectedHeader({ alg: o.alg, kid: key.kid, ...(o.typ && { typ: o.typ }) }).sign(await signingKey(key, o.alg));
  }

  async #tamperIdToken(idToken: string, t: Tamper): Promise<string> {
    const header = decodeProtectedHeader(idToken);
    const payload: Record<string, unknown> = { ...decodeJwt(idToken) };
    const now = Math.floor(Date.now() / 1000);
    if (t.iss !== undefined) payload.iss = t.iss;
    if (t.aud !== undefined) payload.aud = t.aud;
    if (t.azp !== undefined) payload.azp = t.azp;
    if (t.nonce !== undefined) payload.nonce = t.nonce;
    if (t.exp !== undefined) payload.exp = now + t.exp;
    if (t.iat !== undefined) payload.iat = now + t.iat;
    Object.assign(payload, t.claims);
    for (const k of t.omit ?? []) delete payload[k];
    return this.#sign(payload, { alg: t.alg ?? String(header.alg), typ: header.typ, sign: t.sign });
  }

  #build(): void {
    const d = this.definition;
    const op = this;
    const store = this.#store;
    const configuration: Configuration = {
      adapter: class extends MemoryAdapter {
        constructor(model: string) {
          super(model, store);
        }
      },
      clients: d.clients,
      jwks: { keys: this.#keys.map((k) => k.privateJwk) as Array<JWK & { kty: 'RSA' }> } as Configuration['jwks'],
      cookies: {
        keys: this.#cookieKeys,
        names: { session: `${d.name}_session`, interaction: `${d.name}_interaction`, resume: `${d.name}_resume` },
        long: { signed: true, httpOnly: true, sameSite: 'lax' },
        short: { signed: true, httpOnly: true, sameSite: 'lax' },
      },
      claims: d.claims,
      scopes: d.scopes,
      extraParams: d.extraParams ?? [],
      acrValues: d.acrValues ?? [],
      conformIdTokenClaims: false,
      responseTypes: ['code'],
      clientAuthMethods: d.clientAuthMethods as Configuration['clientAuthMethods'],
      enabledJWA: {
        idTokenSigningAlgValues: ['RS256', 'RS512'],
        clientAuthSigningAlgValues: ['RS256', 'RS512', 'PS256', 'ES256'],
      },
      routes: d.routes,
      ttl: { ...d.ttl, Interaction: 600, Session: 3600, Grant: 3600 },
      // Back-channel logout on: oidc-provider then puts `sid` in ID tokens (the fake sends logout tokens itself).
      features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: Boolean(d.routes.end_session) }, backchannelLogout: { enabled: true } },
      interactions: { url: (_ctx, interaction) => `/fake-interaction/${interaction.uid}` },
      findAccount: (_ctx, sub, token) => ({
        accountId: sub,
        claims: (use) => {
          const info = token?.grantId ? op.#grantInfo.get(token.grantId) : undefined;
          const scope = new Set(String(token?.scope ?? '').split(' '));
          return { sub, ...(d.claimsFor(sub, use === 'id_token' ? 'id_token' : 'userinfo', scope, info) ?? {}) };
        },
      }),
      ...(d.assertClientAuth && { assertJwtClientAuthClaimsAndHeader: d.assertClientAuth }),
      renderError: (ctx, out) => {
        ctx.type = 'json';
        ctx.body = out;
      },
    };
    const provider = new Provider(this.issuer, configuration);
    if (d.proxy) provider.proxy = true;
    provider.use(async (ctx: KoaContextWithOIDC, next) => {
      if (ctx.method === 'GET' && ctx.path === d.routes.authorization) op.received.authorize.push(new URLSearchParams(ctx.querystring));
      if (ctx.path === d.routes.jwks) op.received.jwks += 1;
      const endpoint: FaultyEndpoint | undefined =
        ctx.path === '/.well-known/openid-configuration' ? 'discovery' : ctx.path === d.routes.token ? 'token' : ctx.path === d.routes.userinfo ? 'userinfo' : ctx.path === d.routes.jwks ? 'jwks' : undefined;
      const fault = endpoint ? op.faults[endpoint] : undefined;
      if (fault?.delayMs) await sleep(fault.delayMs);
      if (fault && (fault.status !== undefined || fault.body !== undefined)) {
        ctx.status = fault.status ?? 200;
        ctx.type = fault.contentType ?? 'text/html';
        ctx.body = fault.body ?? '';
        return;
      }
      if (ctx.path === d.routes.token) {
        if (op.tokenDelayMs) await sleep(op.tokenDelayMs);
        if (op.tokenFailure) {
          ctx.status = op.tokenFailure;
          ctx.body = { error: 'server_error' };
          return;
        }
      }
      await next();
      if (ctx.path === d.routes.token) {
        const params = ctx.oidc?.params as Record<string, unknown> | undefined;
        const assertion = typeof params?.client_assertion === 'string' ? params.client_assertion : undefined;
        op.received.token.push({
          grantType: typeof params?.grant_type === 'string' ? params.grant_type : undefined,
          authMethod: ctx.oidc?.client?.clientAuthMethod,
          assertionHeader: assertion ? decodeProtectedHeader(assertion) : undefined,
          assertionClaims: assertion ? decodeJwt(assertion) : undefined,
          status: ctx.status,
        });
        const body = ctx.body as Record<string, unknown> | undefined;
        if (ctx.status === 200 && body && typeof body.id_token === 'string') {
          d.decorateTokenResponse?.(body, decodeJwt(body.id_token));
          if (op.tamper) {
            const t = op.tamper;
            op.tamper = undefined;
            body.id_token = await op.#tamperIdToken(body.id_token, t);
          }
          op.received.idTokenKids.push(String(decodeProtectedHeader(String(body.id_token)).kid));
        }
      }
      if (ctx.path === d.routes.userinfo && op.tamperUserinfo && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
        Object.assign(ctx.body as Record<string, unknown>, op.tamperUserinfo);
        op.tamperUserinfo = undefined;
      }
      const location = ctx.response.get('location');
      if (location && d.decorateRedirect && d.clients.some((c) => c.redirect_uris?.some((r) => location.startsWith(`${r}?`)))) {
        const url = new URL(location);
        d.decorateRedirect(url);
        ctx.set('location', url.href);
      }
    });
    this.#provider = provider;
    this.#handler = provider.callback();
  }

  async #interaction(ctx: Koa.Context): Promise<void> {
    const provider = this.#provider;
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const decision = this.definition.login(details.params, this);
    let result;
    if ('error' in decision) {
      result = { error: decision.error, error_description: decision.error_description };
    } else {
      const grant = new provider.Grant({ accountId: decision.accountId, clientId: String(details.params.client_id) });
      grant.addOIDCScope(String(details.params.scope ?? 'openid'));
      const grantId = await grant.save();
      this.#grantInfo.set(grantId, decision.info);
      result = { login: { accountId: decision.accountId, acr: decision.acr, amr: decision.amr, remember: false }, consent: { grantId } };
    }
    ctx.respond = false;
    await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  }

  async #listen(): Promise<void> {
    const app = new Koa();
    app.proxy = Boolean(this.definition.proxy);
    const prefix = this.definition.issuerPath.replace(/\/$/, '');
    app.use(async (ctx) => {
      if (ctx.path.startsWith('/fake-interaction/')) return this.#interaction(ctx);
      if (prefix && ctx.path !== prefix && !ctx.path.startsWith(`${prefix}/`)) {
        ctx.status = 404;
        return;
      }
      if (prefix) {
        (ctx.req as typeof ctx.req & { originalUrl?: string }).originalUrl = ctx.originalUrl;
        ctx.req.url = ctx.url.slice(prefix.length) || '/';
      }
      ctx.respond = false;
      await this.#handler(ctx.req, ctx.res);
    });
    const server = createServer(app.callback());
    await new Promise<void>((r) => server.listen(this.port, '127.0.0.1', r));
    this.#server = server;
  }
}
