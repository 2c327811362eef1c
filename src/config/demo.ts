import type { ConfigInput } from './schema.ts';

export const DEMO_RESOURCE = 'https://fhir.demo.local';
export const DEMO_WEB_CLIENT = 'demo-web';

/**
 * The embedded demo profile: SQLite, a demo upstream with personas, a service client and a web client
 * whose redirect URI is on the broker itself. Refused when NODE_ENV=production (see server.ts).
 */
export function demoConfig(port = 8080): ConfigInput {
  const base = `http://localhost:${port}`;
  return {
    port,
    profile: 'demo',
    store: 'sqlite:./data/broker.db',
    resources: [
      {
        identifier: DEMO_RESOURCE,
        scopes: ['system/Patient.rs', 'system/Observation.rs', 'patient/Patient.rs', 'patient/Observation.rs', 'user/Patient.rs'],
        format: 'jwt',
        accessTokenTTL: 300,
      },
    ],
    clients: [
      {
        client_id: 'demo-service',
        client_name: 'Demo service',
        client_secret: 'demo-service-secret',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        resources: [DEMO_RESOURCE],
        scope: 'system/Patient.rs system/Observation.rs',
      },
      {
        client_id: DEMO_WEB_CLIENT,
        client_name: 'Demo web app',
        client_secret: 'demo-web-secret-not-for-production',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: [`${base}/demo/client/callback`],
        post_logout_redirect_uris: [`${base}/demo/client`],
        resources: [DEMO_RESOURCE],
        scope: 'openid profile offline_access patient/Patient.rs patient/Observation.rs user/Patient.rs',
        firstParty: true,
      },
    ],
  };
}
