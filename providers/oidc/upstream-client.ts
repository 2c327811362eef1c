import * as oc from 'openid-client';
import type { OidcUpstreamConfig } from '../../src/config/upstream-oidc.ts';
import type { ConnectorDeps } from '../../src/identity/upstream.ts';
import type { OidcPreset } from './presets/types.ts';
import { loadClientKey, OidcConfigError } from './client-key.ts';

// The openid-client Configuration for one upstream: its metadata (discovered, or static from the
// config and the preset's paths), the broker's client authentication, the clock tolerance and a
// bounded timeout on every request. ID token signatures are checked in jwks.ts.

export interface UpstreamClientOptions {
  /**
   * The HTTP client for every upstream request (discovery, token, userinfo, JWKS). Production uses
   * the global fetch; an egress proxy or a test's host mapping can be plugged in here.
   */
  fetch?: oc.CustomFetch;
}

/** CIS2 writes its issuer with ":443" (nhs-interfaces.md 1.1): keep that form, which URL parsing would drop. */
export function withExplicitPort(issuer: string): string {
  const m = /^https:\/\/([^/?#:]+)(\/[^?#]*)?$/.exec(issuer);
  return m ? `https://${m[1]}:443${m[2] ?? ''}` : issuer;
}

function staticMetadata(config: OidcUpstreamConfig, preset: OidcPreset): oc.ServerMetadata {
  const issuer = preset.explicitIssuerPort ? withExplicitPort(config.issuer) : config.issuer;
  // The ":443" belongs to `iss` only; endpoints are written the usual way (and a client assertion's
  // aud = the token endpoint then matches what discovery would publish).
  const base = new URL(issuer).href.replace(/\/$/, '');
  const at = (k: 'authorization_endpoint' | 'token_endpoint' | 'jwks_uri' | 'userinfo_endpoint' | 'end_session_endpoint'): string | undefined => {
    const path = preset.paths?.[k];
    return config[k] ?? (path ? `${base}${path}` : undefined);
  };
  return {
    issuer,
    authorization_endpoint: at('authorization_endpoint'),
    token_endpoint: at('token_endpoint'),
    jwks_uri: at('jwks_uri'),
    userinfo_endpoint: at('userinfo_endpoint'),
    end_session_endpoint: at('end_session_endpoint'),
    code_challenge_methods_supported: ['S256'],
  };
}

export function usesDiscovery(config: OidcUpstreamConfig): boolean {
  return config.discovery ?? !(config.authorization_endpoint || config.token_endpoint || config.jwks_uri);
}

function checkTransport(metadata: oc.ServerMetadata, config: OidcUpstreamConfig, deps: ConnectorDeps): void {
  const urls = [metadata.issuer, metadata.authorization_endpoint, metadata.token_endpoint, metadata.jwks_uri, metadata.userinfo_endpoint];
  for (const u of urls) {
    if (u !== undefined && !u.startsWith('https://') && !deps.allowInsecureUpstream) {
      throw new OidcConfigError(`upstream ${config.id}: ${u} is not https`);
    }
  }
  for (const k of ['authorization_endpoint', 'token_endpoint', 'jwks_uri'] as const) {
    if (!metadata[k]) throw new OidcConfigError(`upstream ${config.id}: the upstream metadata has no ${k}`);
  }
}

export async function createClientAuth(config: OidcUpstreamConfig, preset: OidcPreset, tokenEndpoint: () => string | undefined): Promise<oc.ClientAuth> {
  const method = config.token_endpoint_auth_method ?? (config.private_key_jwk || config.private_key_file ? 'private_key_jwt' : 'client_secret_basic');
  if (method === 'client_secret_basic') return oc.ClientSecretBasic(config.client_secret);
  if (method === 'client_secret_post') return oc.ClientSecretPost(config.client_secret);
  const { key, kid } = await loadClientKey(config, preset);
  return oc.PrivateKeyJwt(
    { key, kid },
    {
      // CIS2 and NHS login want aud = the token endpoint URL exactly; openid-client sends the issuer.
      [oc.modifyAssertion]: (_header, payload) => {
        const aud = tokenEndpoint();
        if (preset.assertionAudience === 'token_endpoint' && aud) payload.aud = aud;
      },
    },
  );
}

export async function createUpstreamConfiguration(config: OidcUpstreamConfig, preset: OidcPreset, deps: ConnectorDeps, options: UpstreamClientOptions): Promise<oc.Configuration> {
  let tokenEndpoint: string | undefined;
  const auth = await createClientAuth(config, preset, () => tokenEndpoint);
  const clientMetadata: Partial<oc.ClientMetadata> = {
    id_token_signed_response_alg: config.id_token_signed_response_alg ?? preset.idTokenAlg,
    [oc.clockTolerance]: config.clockSkew,
  };
  const timeout = config.timeoutMs / 1000;
  const execute: Array<(c: oc.Configuration) => void> = deps.allowInsecureUpstream ? [oc.allowInsecureRequests] : [];

  let client: oc.Configuration;
  if (usesDiscovery(config)) {
    if (!config.issuer.startsWith('https://') && !deps.allowInsecureUpstream) throw new OidcConfigError(`upstream ${config.id}: ${config.issuer} is not https`);
    // openid-client compares the discovered issuer with the configured one (RP-08) and from then on
    // checks `iss` against the discovered string exactly.
    client = await oc.discovery(new URL(config.issuer), config.client_id, clientMetadata, auth, {
      execute,
      timeout,
      ...(options.fetch && { [oc.customFetch]: options.fetch }),
    });
  } else {
    client = new oc.Configuration(staticMetadata(config, preset), config.client_id, clientMetadata, auth);
    client.timeout = timeout;
    if (options.fetch) client[oc.customFetch] = options.fetch;
    for (const fn of execute) fn(client);
  }
  const metadata = client.serverMetadata();
  checkTransport(metadata, config, deps);
  tokenEndpoint = metadata.token_endpoint;
  return client;
}
