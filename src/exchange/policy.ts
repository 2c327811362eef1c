import type { BrokerConfig } from '../config/schema.ts';
import type { CompiledPolicy, CompiledRule } from './types.ts';

// The exchange section of the configuration, indexed for the checks. Compiled once per configuration
// object (configurations are immutable once parsed).

export type PolicySource = Pick<BrokerConfig, 'clients' | 'resources' | 'exchange' | 'delegation'>;

const compiled = new WeakMap<PolicySource, CompiledPolicy>();

export function compilePolicy(config: PolicySource): CompiledPolicy {
  const cached = compiled.get(config);
  if (cached) return cached;
  const rulesByClient = new Map<string, CompiledRule[]>();
  config.exchange.rules.forEach((rule, index) => {
    for (const client of rule.clients) {
      const list = rulesByClient.get(client) ?? [];
      list.push({ ...rule, index });
      rulesByClient.set(client, list);
    }
  });
  const tenantOf = new Map<string, string>();
  for (const t of config.exchange.tenants) {
    for (const c of t.clients) tenantOf.set(`client:${c}`, t.id);
    for (const r of t.resources) tenantOf.set(`resource:${r}`, t.id);
    for (const i of t.issuers) tenantOf.set(`issuer:${i}`, t.id);
  }
  const policy: CompiledPolicy = {
    rulesByClient,
    resources: new Map(config.resources.map((r) => [r.identifier, { identifier: r.identifier, scopes: [...r.scopes], accessTokenTTL: r.accessTokenTTL }])),
    clientResources: new Map(config.clients.map((c) => [c.client_id, [...c.resources]])),
    publicClients: new Set(config.clients.filter((c) => c.token_endpoint_auth_method === 'none').map((c) => c.client_id)),
    tenantOf,
    delegatedTTL: config.delegation.accessTokenTTL,
  };
  compiled.set(config, policy);
  return policy;
}
