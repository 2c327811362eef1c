import type Provider from 'oidc-provider';
import type { JSONWebKeySet } from 'jose';
import type { BrokerConfig } from '../../config/schema.ts';
import type { Store } from '../../store/contracts.ts';
import type { Ledger } from '../../audit/index.ts';
import type { BrokerMetrics } from '../../web/metrics.ts';
import type { DelegationHooks } from '../provider.ts';

// RFC 8693 token exchange as an oidc-provider grant type (issue 7). To be filled in.

export interface TokenExchangeDeps {
  config: BrokerConfig;
  store: Store;
  publicJwks: () => JSONWebKeySet;
  delegation: DelegationHooks & { consentActive(consentId: string): Promise<boolean> };
  ledger: Ledger;
  metrics: BrokerMetrics;
}

export function registerTokenExchange(_provider: Provider, _deps: TokenExchangeDeps): void {}
