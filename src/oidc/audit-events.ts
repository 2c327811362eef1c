import { createHash } from 'node:crypto';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Ledger } from '../audit/index.ts';
import type { BrokerMetrics } from '../web/metrics.ts';
import { requestIdOf } from '../web/request-id.ts';

// Turns oidc-provider's events into ledger entries and metrics: tokens issued, refreshed and revoked
// (grant type, client, audience, actor chain, consent), and refused or replayed grants. Never a token
// value: only ids, types and audiences.

type Report = (err: unknown) => void;

/**
 * An opaque token's value IS its id, so ids are never written: a short hash lets an investigator match
 * a token they hold to its entries without the ledger holding anything that works as a credential.
 */
function tokenRef(jti: string | undefined): string | null {
  return jti ? createHash('sha256').update(jti).digest('base64url').slice(0, 22) : null;
}

const REPLAY = /(used once|already used|already consumed|replay)/i;

function tokenDetails(ctx: KoaContextWithOIDC): Record<string, unknown> {
  const at = ctx.oidc.entities.AccessToken ?? ctx.oidc.entities.ClientCredentials;
  const extra = (at?.extra ?? {}) as Record<string, unknown>;
  return {
    grant_type: ctx.oidc.params?.grant_type,
    aud: at && 'aud' in at ? at.aud : undefined,
    scope: at?.scope,
    token_ref: tokenRef(at?.jti),
    act: extra.act,
    refresh_token_issued: Boolean(ctx.oidc.entities.RefreshToken),
  };
}

/** Ledger details are JSON: undefined members are dropped rather than refused. */
function json<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

export function auditProviderEvents(provider: Provider, ledger: Ledger, metrics: BrokerMetrics, report: Report): void {
  const append = (event: Parameters<Ledger['append']>[0]) => {
    try {
      void ledger.append(json(event)).catch(report);
    } catch (err) {
      report(err);
    }
  };

  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    const grantType = String(ctx.oidc.params?.grant_type ?? 'unknown');
    metrics.tokens.inc({ grant_type: grantType, outcome: 'success' });
    // The token-exchange grant writes its own, fuller entry for every decision (oidc/grants/token-exchange.ts).
    if (grantType === 'urn:ietf:params:oauth:grant-type:token-exchange') return;
    const at = ctx.oidc.entities.AccessToken ?? ctx.oidc.entities.ClientCredentials;
    const extra = (at?.extra ?? {}) as Record<string, unknown>;
    append({
      type: grantType === 'refresh_token' ? 'token.refreshed' : grantType === 'urn:ietf:params:oauth:grant-type:token-exchange' ? 'token.exchanged' : 'token.issued',
      outcome: 'success',
      client: ctx.oidc.client?.clientId,
      subject: typeof extra.sub === 'string' ? extra.sub : ctx.oidc.account?.accountId,
      actor: (extra.act as { sub?: string } | undefined)?.sub ?? ctx.oidc.account?.accountId ?? ctx.oidc.client?.clientId,
      consent: typeof extra.consent_id === 'string' ? extra.consent_id : undefined,
      requestId: requestIdOf(ctx.req),
      details: tokenDetails(ctx) as never,
    });
  });

  provider.on('grant.error', (ctx: KoaContextWithOIDC, err: Error & { error_description?: string; error?: string }) => {
    const grantType = String(ctx.oidc?.params?.grant_type ?? 'unknown');
    metrics.tokens.inc({ grant_type: grantType, outcome: 'failure' });
    const description = `${err.error_description ?? ''} ${err.message ?? ''}`;
    const replay = REPLAY.test(description);
    append({
      type: replay ? 'replay.detected' : err.error === 'invalid_client' ? 'assertion.invalid' : 'token.issued',
      outcome: 'failure',
      client: ctx.oidc?.client?.clientId,
      requestId: requestIdOf(ctx.req),
      details: { grant_type: grantType, error: err.error ?? err.name, error_description: err.error_description ?? null },
    });
  });

  for (const model of ['access_token', 'client_credentials', 'refresh_token']) {
    provider.on(`${model}.destroyed` as 'access_token.destroyed', (token: { jti?: string; clientId?: string; accountId?: string; grantId?: string }) => {
      append({ type: 'token.revoked', outcome: 'success', client: token.clientId, subject: token.accountId, details: { kind: model, token_ref: tokenRef(token.jti) } });
    });
  }
  provider.on('grant.revoked', (ctx: KoaContextWithOIDC, grantId: string) => {
    append({ type: 'token.revoked', outcome: 'success', client: ctx?.oidc?.client?.clientId, requestId: ctx?.req ? requestIdOf(ctx.req) : undefined, details: { grant_revoked: true, grant: grantId } });
  });
}
