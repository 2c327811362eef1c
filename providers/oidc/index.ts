import * as oc from 'openid-client';
import type { Context } from 'koa';
import { z } from 'zod';
import type { OidcUpstreamConfig } from '../../src/config/upstream-oidc.ts';
import { UpstreamAuthError, UpstreamUnavailableError, type Connector, type ConnectorDeps, type LoginRequest, type LoginTransaction, type UpstreamIdentity } from '../../src/identity/upstream.ts';
import { presetFor } from './presets/index.ts';
import type { Expectations } from './presets/types.ts';
import { proofingRank } from './presets/vocabulary.ts';
import { createUpstreamConfiguration, type UpstreamClientOptions } from './upstream-client.ts';
import { OidcConfigError } from './client-key.ts';
import { idTokenClaims, mergeClaims, userinfoClaims } from './claims.ts';
import { describeError } from './reasons.ts';
import { isUpstreamOutage } from './outage.ts';
import { logoutRoute } from './backchannel-logout.ts';
import { remoteKeys, verifyIdTokenSignature, type RemoteKeys } from './jwks.ts';
import { idTokenClaimsRefusal, idTokenShapeRefusal } from './id-token.ts';

// The upstream OpenID Connect connector (openid-client 6): authorization code with PKCE, state =
// the broker's login transaction id, nonce and PKCE verifier kept in that transaction (so they are
// bound to the browser that started the login and work across broker instances), the ID token's
// iss, aud, azp, exp, iat, nonce and auth_time checked by openid-client, its shape, typ, signature,
// events and future iat here (id-token.ts, jwks.ts), userinfo `sub`
// matched to the ID token, and the preset's reading of assurance checked against what was asked.
//
// openid-client/passport is not used: its Strategy keeps state, nonce and verifier in req.session and
// generates its own `state`, while the broker owns the session, finds the login transaction from
// `state` and keeps per-login values in the transaction record. Wrapping it would mean faking a
// session per request; calling openid-client directly is the same library with the contract we need.

export { OidcConfigError } from './client-key.ts';
export type { UpstreamClientOptions } from './upstream-client.ts';

/** Transaction values this connector stores in LoginTransaction.state (strings only). */
const txState = z.object({
  nonce: z.string().min(16),
  verifier: z.string().min(43),
  redirectUri: z.string().url(),
  maxAge: z.string().regex(/^\d+$/).optional(),
  expect: z.string().optional(),
});

const expectations = z.object({
  minAal: z.number().int().optional(),
  minProofing: z.string().optional(),
  vtr: z.array(z.string()).optional(),
});

/** A failed discovery is retried at most this often; meanwhile logins fail fast with 503. */
const RETRY_AFTER_MS = 5000;

function isConfigurationMismatch(err: unknown): boolean {
  if (err instanceof OidcConfigError) return true;
  // The discovered issuer is not the configured one (catalogue RP-08): a configuration error, not an outage.
  return err instanceof oc.ClientError && err.code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED';
}

export async function createOidcConnector(config: OidcUpstreamConfig, deps: ConnectorDeps, options: UpstreamClientOptions = {}): Promise<Connector> {
  const preset = presetFor(config.preset);
  const scope = config.scope ?? preset.scope;
  const idTokenAlg = config.id_token_signed_response_alg ?? preset.idTokenAlg;

  let client: oc.Configuration | undefined;
  let idTokenKeys: RemoteKeys | undefined;
  let pending: Promise<oc.Configuration> | undefined;
  let failedAt = 0;

  async function ready(): Promise<oc.Configuration> {
    if (client) return client;
    if (pending) return pending;
    if (Date.now() - failedAt < RETRY_AFTER_MS) throw new UpstreamUnavailableError(`${config.id}: discovery failed less than ${RETRY_AFTER_MS / 1000} s ago`, Math.ceil(RETRY_AFTER_MS / 1000));
    pending = createUpstreamConfiguration(config, preset, deps, options)
      .then((c) => {
        // Only the upstream's own token endpoint can hand us an ID token, so an unknown kid refetches
        // the JWKS at once: a key rotated in just before signing is found (catalogue RP-07). The
        // public logout endpoint, which anyone can post to, keeps a cooldown.
        idTokenKeys = remoteKeys(c.serverMetadata().jwks_uri!, { timeoutMs: config.timeoutMs, cooldownMs: 0, fetch: options.fetch });
        client = c;
        return c;
      })
      .catch((err: unknown) => {
        failedAt = Date.now();
        throw err;
      })
      .finally(() => {
        pending = undefined;
      });
    return pending;
  }

  /** The configuration for a login: a mismatch is a server error (logged); anything else is an outage. */
  async function readyForLogin(): Promise<oc.Configuration> {
    try {
      return await ready();
    } catch (err) {
      if (isConfigurationMismatch(err) || err instanceof UpstreamUnavailableError) throw err;
      throw new UpstreamUnavailableError(`${config.id}: discovery: ${describeError(err)}`);
    }
  }

  function unavailable(where: string, err: unknown): never {
    throw new UpstreamUnavailableError(`${config.id}: ${where}: ${err instanceof UpstreamUnavailableError ? err.reason : describeError(err)}`);
  }

  // Discovery at start-up: a wrong configuration stops the broker; an upstream that is down does not
  // (its logins answer 503 until it is back).
  try {
    await ready();
  } catch (err) {
    if (isConfigurationMismatch(err)) throw err;
    failedAt = 0;
  }

  async function begin(ctx: Context, request: LoginRequest): Promise<Record<string, string>> {
    const c = await readyForLogin();
    const nonce = oc.randomNonce();
    const verifier = oc.randomPKCECodeVerifier();
    const plan = preset.plan(request, config);
    const url = oc.buildAuthorizationUrl(c, {
      response_type: 'code',
      redirect_uri: request.callbackUrl,
      scope,
      state: request.transactionId,
      nonce,
      code_challenge: await oc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      ...plan.params,
    });
    // 303: the chooser was a POST; the browser must GET the upstream (RFC 9700 4.12).
    ctx.status = 303;
    ctx.redirect(url.href);
    return {
      nonce,
      verifier,
      redirectUri: request.callbackUrl,
      ...(request.maxAge !== undefined && { maxAge: String(request.maxAge) }),
      expect: JSON.stringify(plan.expect),
    };
  }

  function refuse(reason: string): never {
    throw new UpstreamAuthError(`${config.id}: ${reason}`);
  }

  function checkExpectations(expect: Expectations, assurance: UpstreamIdentity['assurance']): void {
    if (expect.vtr && (!assurance.vot || !expect.vtr.includes(assurance.vot))) refuse(`vot ${assurance.vot ?? '(none)'} is not one of the requested vtr`);
    if (expect.minAal !== undefined && (assurance.aal ?? 0) < expect.minAal) refuse(`aal ${assurance.aal ?? '(none)'} is below the requested ${expect.minAal}`);
    if (expect.minProofing !== undefined && (proofingRank(assurance.proofing) ?? -1) < (proofingRank(expect.minProofing) ?? 99)) {
      refuse(`proofing ${assurance.proofing ?? '(none)'} is below the requested ${expect.minProofing}`);
    }
  }

  function callbackUrl(ctx: Context, redirectUri: string): URL {
    const current = new URL(redirectUri);
    const form = (ctx.state as { form?: URLSearchParams }).form;
    current.search = ctx.method === 'POST' && form ? form.toString() : ctx.querystring;
    return current;
  }

  async function complete(ctx: Context, tx: LoginTransaction): Promise<UpstreamIdentity> {
    const parsedState = txState.safeParse(tx.state);
    if (!parsedState.success) refuse('login transaction carries no OIDC state');
    const s = parsedState.data;
    let stored: unknown;
    try {
      stored = JSON.parse(s.expect ?? '{}');
    } catch {
      stored = undefined;
    }
    const expect = expectations.safeParse(stored);
    if (!expect.success) refuse('login transaction expectations unreadable');

    let c: oc.Configuration;
    try {
      c = await readyForLogin();
    } catch (err) {
      if (err instanceof UpstreamUnavailableError) throw err;
      refuse(`upstream configuration: ${describeError(err)}`);
    }

    let tokens: Awaited<ReturnType<typeof oc.authorizationCodeGrant>>;
    try {
      tokens = await oc.authorizationCodeGrant(c, callbackUrl(ctx, s.redirectUri), {
        pkceCodeVerifier: s.verifier,
        expectedState: tx.id,
        expectedNonce: s.nonce,
        idTokenExpected: true,
        ...(s.maxAge !== undefined && { maxAge: Number(s.maxAge) }),
      });
    } catch (err) {
      if (isUpstreamOutage(err, true)) unavailable('token endpoint', err);
      refuse(describeError(err));
    }

    if (!tokens.id_token) refuse('no ID token');
    const shape = idTokenShapeRefusal(tokens.id_token);
    if (shape) refuse(shape);
    try {
      if (!idTokenKeys) throw new Error('no ID token keys');
      await verifyIdTokenSignature(tokens.id_token, idTokenKeys, idTokenAlg);
    } catch (err) {
      if (err instanceof UpstreamUnavailableError) unavailable('ID token keys', err);
      refuse(`ID token signature: ${describeError(err)}`);
    }

    const verified = tokens.claims();
    const id = idTokenClaims.safeParse(verified);
    if (!verified || !id.success) refuse('ID token claims malformed');
    const notAnIdToken = idTokenClaimsRefusal(id.data, config.clockSkew);
    if (notAnIdToken) refuse(notAnIdToken);
    const subject = id.data.sub;

    let userinfo: Record<string, unknown> | undefined;
    if (config.userinfo && c.serverMetadata().userinfo_endpoint) {
      try {
        // openid-client refuses a userinfo response whose sub is not the ID token's (catalogue RP-05).
        const raw = await oc.fetchUserInfo(c, tokens.access_token, subject);
        const parsed = userinfoClaims.safeParse(raw);
        if (!parsed.success) refuse('userinfo malformed');
        userinfo = parsed.data;
      } catch (err) {
        if (err instanceof UpstreamAuthError) throw err;
        if (isUpstreamOutage(err)) unavailable('userinfo', err);
        refuse(`userinfo: ${describeError(err)}`);
      }
    }

    const raw = { ...(userinfo ?? {}), ...id.data };
    const read = preset.readClaims(subject, raw);
    if ('refused' in read) refuse(read.refused);
    const assurance = preset.assurance(read.claims);
    checkExpectations(expect.data, assurance);
    // The upstream's mapping (required claims, allowed values, local attributes) is applied by the
    // broker's identity layer to every connector alike; this returns every verified claim.
    const claims = mergeClaims(id.data, userinfo, preset.dropClaims);

    return {
      provider: config.id,
      subject,
      claims,
      assurance,
      authTime: id.data.auth_time ?? Math.floor(id.data.iat),
      ...(id.data.sid && { sessionIndex: id.data.sid }),
    };
  }

  return {
    id: config.id,
    displayName: config.displayName,
    kind: 'oidc',
    begin,
    complete,
    routes: [
      logoutRoute({
        id: config.id,
        clientId: config.client_id,
        algorithms: [idTokenAlg],
        typs: config.logout_token_types ?? preset.logoutTokenTypes,
        clockTolerance: config.clockSkew,
        timeoutMs: config.timeoutMs,
        deps,
        metadata: async () => (await ready()).serverMetadata(),
        fetch: options.fetch,
      }),
    ],
  };
}
