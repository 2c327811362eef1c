import Router from '@koa/router';
import type { Logger } from 'pino';
import type { DelegationService } from '../../delegation/service.ts';
import type { AccountService } from '../../identity/accounts.ts';
import type { Ledger } from '../../audit/index.ts';
import type { ApiAuthenticator } from '../api-auth.ts';

// The account app: pages where patients manage who can act for them and carers see whom they act for,
// and the JSON API behind them. To be filled in (issue 6): pages, API, OpenAPI.

export const ACCOUNT_CLIENT_ID = 'broker-account';

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
  log: Logger;
}

export function accountRoutes(_deps: AccountAppDeps): Router {
  return new Router();
}
