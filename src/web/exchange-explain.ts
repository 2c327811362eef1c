import { createHash, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { Ledger } from '../audit/index.ts';
import { explainVerified, type ExplainDeps } from '../oidc/grants/token-exchange.ts';

// POST /admin/exchange/explain: the exchange policy's dry run over HTTP, for operators. It verifies the
// tokens exactly as the grant would (signatures, revocation, consents) and issues nothing. Off unless
// exchange.adminToken is set; the caller presents it as a bearer token. Body: JSON
// { "client_id": "...", "subject_token": "...", "subject_token_type": "urn:...", ... } or the same as a
// form. Each use is audited (admin.action), without the tokens.

const LIMIT = 64 * 1024;

const bodySchema = z.looseObject({ client_id: z.string().min(1).max(200) });

export interface ExchangeExplainDeps extends ExplainDeps {
  ledger?: Ledger;
}

async function readBody(ctx: Context): Promise<Record<string, unknown> | undefined> {
  if (ctx.request.length !== undefined && ctx.request.length > LIMIT) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > LIMIT) return undefined;
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (ctx.is('application/json')) {
    try {
      const parsed: unknown = JSON.parse(text);
      return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  }
  if (ctx.is('application/x-www-form-urlencoded')) {
    const form = new URLSearchParams(text);
    const out: Record<string, unknown> = {};
    for (const key of new Set(form.keys())) {
      const all = form.getAll(key);
      out[key] = all.length === 1 ? all[0] : all;
    }
    return out;
  }
  return undefined;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export function exchangeExplainRoutes(deps: ExchangeExplainDeps): Router {
  const router = new Router();
  const token = deps.config.exchange.adminToken;
  if (!token) return router;
  const expected = digest(`Bearer ${token}`);

  router.post('/admin/exchange/explain', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    // Comparing digests keeps the comparison constant-time whatever the header's length.
    if (!timingSafeEqual(digest(ctx.get('Authorization')), expected)) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer realm="exchange-explain"');
      ctx.body = { error: 'invalid_token' };
      return;
    }
    const raw = await readBody(ctx);
    const parsed = raw === undefined ? undefined : bodySchema.safeParse(raw);
    if (!parsed?.success) {
      ctx.status = 400;
      ctx.body = { error: 'invalid_request', error_description: 'expected a JSON object or form (at most 64 KiB) with client_id and the token-exchange parameters' };
      return;
    }
    const { client_id: clientId, ...params } = parsed.data;
    const explanation = await explainVerified(deps, params, clientId);
    if (deps.ledger) {
      void deps.ledger
        .append({ type: 'admin.action', outcome: 'success', actor: 'exchange-explain', client: clientId, details: { action: 'exchange.explain', decision: explanation.decision, rule: explanation.rule ?? null, check: explanation.check ?? null } })
        .catch(() => {});
    }
    ctx.body = explanation;
  });
  return router;
}
