import type { ConfigInput } from '../../src/config/schema.ts';
import {
  ACCESS_TOKEN_TTL,
  BASIC_CLIENT,
  BASIC_SECRET,
  BENCH_KEK,
  CIS2_BROKER_CLIENT_ID,
  CIS2_UPSTREAM,
  CLIENT_ID,
  EXTERNAL_AUDIENCE,
  EXTERNAL_ISSUER_ID,
  ISSUER,
  OPAQUE_RESOURCE,
  PATIENT_SCOPES,
  REDIRECT,
  RESOURCE,
  RESOURCE2,
  RESOURCE_SCOPES,
  RS_CLIENT,
  RS_SECRET,
  SAML_UPSTREAM,
  SCRIPTED_UPSTREAM,
  USER_SCOPE,
  WEB_CLIENT,
  WEB_SCOPE,
  WEB_SECRET,
  type BrokerSpec,
} from './common.ts';

// The broker configuration of `npm run bench`: production-shaped (profile none, rate limits off so one
// load generator on one IP does not measure the limiter), with every client and upstream the scenarios
// need. Shared by bench/servers/broker.ts and the diagnostic bench/servers/provider.ts.

const TE = 'urn:ietf:params:oauth:grant-type:token-exchange' as const;

export function brokerConfigInput(spec: BrokerSpec): ConfigInput {
  const upstreams: NonNullable<ConfigInput['upstreams']> = [
    // Stands in for NHS login in fixture logins (a scripted connector with this id replaces it).
    { id: SCRIPTED_UPSTREAM, type: 'oidc', displayName: 'Scripted (bench fixtures)', issuer: 'https://auth.login.nhs.uk', client_id: 'bench', client_secret: 'not-used-0123456789' },
  ];
  if (spec.cis2) {
    upstreams.push({
      id: CIS2_UPSTREAM,
      type: 'oidc',
      displayName: 'NHS CIS2 (fake, own process)',
      preset: 'cis2',
      issuer: spec.cis2.issuer,
      client_id: CIS2_BROKER_CLIENT_ID,
      private_key_jwk: spec.cis2.privateJwk as { kty: 'RSA'; d: string },
      timeoutMs: 10_000,
    });
  }
  if (spec.saml) {
    upstreams.push({
      id: SAML_UPSTREAM,
      type: 'saml',
      displayName: 'Trust IdP (SimpleSAMLphp)',
      idpMetadataFile: spec.saml.metadataFile,
      spPrivateKey: spec.saml.spKeyPem,
      spCertificate: spec.saml.spCertPem,
      authnContext: { comparison: 'minimum', aal: { '2': ['urn:oasis:names:tc:SAML:2.0:ac:classes:Password'] } },
    });
  }
  const userScopes = [...PATIENT_SCOPES, USER_SCOPE];
  return {
    port: spec.port ?? 0,
    host: '127.0.0.1',
    issuer: ISSUER,
    store: spec.store,
    profile: 'none',
    logLevel: spec.logLevel as 'silent',
    secrets: { keyEncryptionKey: BENCH_KEK },
    rateLimits: { tokenPerIp: 0, tokenPerClient: 0, loginPerIp: 0, exchangePerSubjectToken: 0, accountPerMinute: 0, accountChangesPerHour: 0, invitationAttemptsPerAccount: 0, invitationAttemptsPerIp: 0 },
    resources: [
      { identifier: RESOURCE, scopes: [...RESOURCE_SCOPES, ...userScopes], format: 'jwt', accessTokenTTL: ACCESS_TOKEN_TTL, signingAlg: 'ES256', introspectionClients: [RS_CLIENT] },
      { identifier: OPAQUE_RESOURCE, scopes: RESOURCE_SCOPES, format: 'opaque', accessTokenTTL: 3600, introspectionClients: [RS_CLIENT] },
      { identifier: RESOURCE2, scopes: [...RESOURCE_SCOPES, ...userScopes], format: 'jwt', accessTokenTTL: ACCESS_TOKEN_TTL, signingAlg: 'ES256', introspectionClients: [RS_CLIENT] },
    ],
    clients: [
      { client_id: CLIENT_ID, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [spec.clientJwk as { kty: string }] }, grant_types: ['client_credentials', TE], resources: [RESOURCE, OPAQUE_RESOURCE, RESOURCE2], scope: [...RESOURCE_SCOPES, ...userScopes].join(' ') },
      { client_id: BASIC_CLIENT, client_secret: BASIC_SECRET, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], resources: [RESOURCE, OPAQUE_RESOURCE], scope: RESOURCE_SCOPES.join(' ') },
      { client_id: RS_CLIENT, client_secret: RS_SECRET, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'] },
      { client_id: WEB_CLIENT, client_secret: WEB_SECRET, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [REDIRECT], resources: [RESOURCE], firstParty: true, scope: WEB_SCOPE },
    ],
    upstreams,
    exchange: {
      allowInsecureJwksUris: true,
      issuers: spec.external
        ? [{ id: EXTERNAL_ISSUER_ID, kind: 'cis2', issuer: spec.external.issuer, jwks_uri: spec.external.jwksUri, algorithms: ['RS256'], audiences: [EXTERNAL_AUDIENCE], tokenTypes: ['id_token'] }]
        : [],
      rules: [
        // The broker's own user tokens (web), delegated ones included (their act chain grows by one).
        { id: 'bench-self', clients: [CLIENT_ID], subjectIssuers: ['self'], subjectTokenTypes: ['access_token'], subjectClients: [WEB_CLIENT], resources: [RESOURCE2], scopes: userScopes, delegated: 'allow' },
        ...(spec.external
          ? [{ id: 'bench-cis2', clients: [CLIENT_ID], subjectIssuers: [EXTERNAL_ISSUER_ID], subjectTokenTypes: ['id_token' as const], resources: [RESOURCE2], scopes: [USER_SCOPE], minimumAssurance: { aal: 3 } }]
          : []),
      ],
    },
  };
}
