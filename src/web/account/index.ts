import Router from '@koa/router';
import type { Logger } from 'pino';
import type { DelegationService } from '../../delegation/service.ts';
import type { AccountService } from '../../identity/accounts.ts';
import type { Ledger } from '../../audit/index.ts';
import type { ApiAuthenticator } from '../api-auth.ts';
import type { Store } from '../../store/contracts.ts';
import { linkRoutes } from './links.ts';
import { apiRoutes } from './api.ts';
import type { StaffRules } from './caller.ts';
import { accountContext } from './context.ts';
import { pageRoutes } from './pages.ts';
import { accountSessions, ACCOUNT_CLIENT } from './session.ts';

// The account app: pages where patients manage who can act for them and carers see whom they act for
// (signed in through the broker itself as the client broker-account), and the JSON API behind them,
// described by /api/openapi.json.

export const ACCOUNT_CLIENT_ID = ACCOUNT_CLIENT;

export interface AccountAppDeps {
  issuer: string;
  /** Secret of the internal confidential client the account pages sign in with. */
  clientSecret: string;
  /** Key for the account pages' own session cookie (sealed). */
  cookieKey: Buffer;
  secureCookies: boolean;
  delegation: DelegationService;
  accounts: AccountService;
  ledger: Ledger;
  authenticateApi: ApiAuthenticator;
  /**
   * The same check without the per-account limits, for the sign-in callback: it runs after the code was
   * spent, so a refusal there would throw away tokens just issued. Defaults to authenticateApi.
   */
  verifyApiToken?: ApiAuthenticator;
  log: Logger;
  /** config.delegation's staff rules (defaults: the schema's). */
  staffRules?: StaffRules;
  /** config.delegation.allowedLevels, offered on the forms (default 1, 2, 3). */
  allowedLevels?: number[];
  /** Account linked to a verified NHS number, when the identity layer indexes them. */
  findAccountByNhsNumber?: (nhsNumber: string) => Promise<string | undefined>;
  /**
   * Adding another login to a signed-in account (identity/link-intents.ts): the store for link intents and
   * links, and the upstreams a user may add. Without it the links page lists and removes links only.
   */
  linking?: { store: Pick<Store, 'oidc' | 'accounts'>; upstreams: ReadonlyArray<{ id: string; displayName: string }> };
}

export function accountRoutes(deps: AccountAppDeps): Router {
  const app = accountContext(deps);
  const sessions = accountSessions(app);
  const router = new Router();
  router.use(sessions.routes().routes());
  router.use(pageRoutes(app, sessions).routes());
  router.use(apiRoutes(app).routes());
  router.use(linkRoutes(app, sessions).routes());
  return router;
}
