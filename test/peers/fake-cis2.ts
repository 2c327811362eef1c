import { randomUUID } from 'node:crypto';
import type { ClientMetadata } from 'oidc-provider';
import { errors } from 'oidc-provider';
import { FakeOp, sha1Kid, type FakeOpDefinition } from './fake-oidc-op.ts';

// FakeCis2Op (nhs-interfaces.md 7.1): a CIS2-shaped upstream on oidc-provider 9. ForgeRock paths
// (/access_token, /connect/jwk_uri, /connect/endSession) under the Healthcare realm, RS256 ID tokens,
// private_key_jwt with aud = the token endpoint (or client_secret_post), acr_values AALn_..., the
// assurance claims as strings (or numbers, like APIM's mocks), roles in userinfo and the selected role
// in the ID token, client_id on the callback and nonce in the token response. Login is
// non-interactive: the persona named by login_hint (or `defaultPersona`) signs in with its own
// authenticator; a persona below the requested AAL gets access_denied.

export const CIS2_ISSUER_PATH = '/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare';
export const CIS2_CLIENT_ID = '123456789012.apps.national';

export interface NrbacRole {
  person_orgid: string;
  person_roleid: string;
  org_code: string;
  role_code: string;
  role_name: string;
  activities?: string[];
  activity_codes?: string[];
}

export type Authenticator = 'smartcard' | 'fido2' | 'ios' | 'totp' | 'userpass';

export interface Cis2Persona {
  uid: string;
  given_name: string;
  family_name: string;
  email: string;
  authenticator: Authenticator;
  roles: NrbacRole[];
  /** The role a multi-role user picks at the CIS2 role picker. */
  picks?: string;
}

const AUTHENTICATORS: Record<Authenticator, { aal: number; amr: string[] }> = {
  smartcard: { aal: 3, amr: ['N3_SMARTCARD'] },
  fido2: { aal: 3, amr: ['FIDO2'] },
  ios: { aal: 3, amr: ['IOS'] },
  totp: { aal: 2, amr: ['TOTP'] },
  userpass: { aal: 1, amr: ['pwd'] },
};

const NURSE_ROLES: NrbacRole[] = [
  { person_orgid: '555057897107', person_roleid: '555057898108', org_code: 'X26', role_name: '"Admin and Clerical":"Admin and Clerical":"Privacy Officer"', role_code: 'S8002:G8003:R0001', activities: ['Receive Sealing Alerts'], activity_codes: ['B0018'] },
  { person_orgid: '555057995106', person_roleid: '555057996107', org_code: 'Y51', role_name: '"Clinical":"Clinical Provision":"Nurse Access Role"', role_code: 'S8000:G8000:R8001', activity_codes: ['B0428', 'B0380', 'B0825', 'B0560', 'B8028'] },
];

export const CIS2_PERSONAS: Record<string, Cis2Persona> = {
  // Two roles in two organisations; picks the nurse role.
  nurse: { uid: '555057896106', given_name: 'Flo', family_name: 'Nurse', email: 'nurse.flo@example.nhs.uk', authenticator: 'smartcard', roles: NURSE_ROLES, picks: '555057996107' },
  // One role: auto-selected.
  gp: { uid: '555000000001', given_name: 'Gail', family_name: 'Practitioner', email: 'gail.gp@example.nhs.uk', authenticator: 'fido2', roles: [{ person_orgid: '555000000101', person_roleid: '555000000201', org_code: 'A81001', role_name: '"Clinical":"Clinical Provision":"General Medical Practitioner"', role_code: 'S8000:G8000:R8000', activity_codes: ['B0825', 'B0820'] }] },
  // No roles at all: no selected_roleid.
  noRoles: { uid: '555000000002', given_name: 'Nora', family_name: 'Roleless', email: 'nora@example.nhs.uk', authenticator: 'smartcard', roles: [] },
  // AAL2 only (TOTP).
  admin: { uid: '555000000003', given_name: 'Adam', family_name: 'Admin', email: 'adam.admin@example.nhs.uk', authenticator: 'totp', roles: [{ person_orgid: '555000000103', person_roleid: '555000000203', org_code: 'X26', role_name: '"Admin and Clerical":"Admin and Clerical":"Privacy Officer"', role_code: 'S8002:G8003:R0001' }] },
};

function aalOf(acr: string): number | undefined {
  const m = /^AAL([1-3])_/.exec(acr);
  return m ? Number(m[1]) : undefined;
}

export interface FakeCis2Options {
  clients: ClientMetadata[];
  /** The published origin, e.g. "https://cis2.test:443" (reached through a host mapping); default the loopback origin. */
  publicOrigin?: string;
  port?: number;
}

/** Knobs on top of the common ones. */
export interface Cis2Knobs {
  /** `authentication_assurance_level` and friends as strings (real CIS2) or numbers (APIM mocks). */
  assuranceLevelsAs: 'string' | 'number';
  /** Overrides the selected role of the next logins (e.g. one the user does not hold). */
  selectRole: string | undefined;
}

export type FakeCis2 = FakeOp & { knobs: Cis2Knobs };

export async function startFakeCis2(options: FakeCis2Options): Promise<FakeCis2> {
  const knobs: Cis2Knobs = { assuranceLevelsAs: 'string', selectRole: undefined };
  const level = (n: number): string | number => (knobs.assuranceLevelsAs === 'string' ? String(n) : n);

  const definition: FakeOpDefinition = {
    name: 'cis2',
    issuerPath: CIS2_ISSUER_PATH,
    publicOrigin: options.publicOrigin,
    proxy: Boolean(options.publicOrigin),
    routes: { authorization: '/authorize', token: '/access_token', userinfo: '/userinfo', jwks: '/connect/jwk_uri', end_session: '/connect/endSession' },
    idTokenAlg: 'RS256',
    clients: options.clients,
    claims: {
      openid: ['sub', 'sid', 'acr', 'amr', 'auth_time', 'subname', 'id_assurance_level', 'authentication_assurance_level', 'idassurancelevel', 'auditTrackingId', 'tokenName', 'tokenType', 'realm', 'org.forgerock.openidconnect.ops'],
      profile: ['name', 'family_name', 'given_name', 'uid'],
      email: ['email'],
      nhsperson: ['nhsid_useruid', 'title', 'initials', 'middle_names', 'display_name'],
      associatedorgs: ['nhsid_user_orgs'],
      nationalrbacaccess: ['nhsid_nrbac_roles'],
      selectedrole: ['selected_roleid'],
    },
    scopes: ['openid', 'profile', 'email', 'nhsperson', 'associatedorgs', 'nationalrbacaccess', 'selectedrole', 'professionalmemberships', 'organisationalmemberships'],
    acrValues: ['AAL3_ANY', 'AAL2_OR_AAL3_ANY', 'AAL2_ANY', 'AAL1_USERPASS', 'AAL3_SMARTCARD', 'AAL3_FIDO2', 'AAL3_IOS', 'AAL2_TOTP'],
    clientAuthMethods: ['private_key_jwt', 'client_secret_post', 'client_secret_basic'],
    ttl: { AccessToken: 3599, AuthorizationCode: 60, IdToken: 3600 },
    kid: sha1Kid,
    login(params, op) {
      const hint = typeof params.login_hint === 'string' ? params.login_hint : op.defaultPersona;
      const persona = hint ? CIS2_PERSONAS[hint] : undefined;
      if (!persona) return { error: 'access_denied', error_description: 'unknown persona' };
      const { aal, amr } = AUTHENTICATORS[persona.authenticator];
      const requested = typeof params.acr_values === 'string' ? params.acr_values.split(' ').filter(Boolean) : [];
      let acr: string;
      if (requested.length) {
        const satisfied = requested.find((v) => (aalOf(v) ?? 99) <= aal);
        if (!satisfied) return { error: 'access_denied', error_description: 'authenticator assurance below the requested acr_values' };
        acr = satisfied;
      } else {
        acr = `AAL${aal}_ANY`;
      }
      const scope = new Set(String(params.scope ?? '').split(' '));
      let selected: string | undefined;
      if (scope.has('selectedrole') && persona.roles.length) selected = knobs.selectRole ?? (persona.roles.length === 1 ? persona.roles[0].person_roleid : persona.picks);
      return { accountId: persona.uid, acr, amr, info: { aal, selected } };
    },
    claimsFor(accountId, use, scope, info) {
      const persona = Object.values(CIS2_PERSONAS).find((p) => p.uid === accountId);
      if (!persona) return undefined;
      if (use === 'id_token') {
        const aal = typeof info?.aal === 'number' ? info.aal : AUTHENTICATORS[persona.authenticator].aal;
        return {
          subname: persona.uid,
          id_assurance_level: level(3),
          authentication_assurance_level: level(aal),
          idassurancelevel: level(3),
          ...(typeof info?.selected === 'string' && scope.has('selectedrole') && { selected_roleid: info.selected }),
          auditTrackingId: `${randomUUID()}-1546391`,
          tokenName: 'id_token',
          tokenType: 'JWTToken',
          realm: '/NHSIdentity/Healthcare',
          'org.forgerock.openidconnect.ops': randomUUID().replace(/-/g, '').slice(0, 27),
        };
      }
      return {
        name: `${persona.given_name} ${persona.family_name}`,
        given_name: persona.given_name,
        family_name: persona.family_name,
        uid: persona.uid,
        email: persona.email,
        nhsid_useruid: persona.uid,
        display_name: `${persona.given_name} ${persona.family_name}`,
        nhsid_user_orgs: [...new Map(persona.roles.map((r) => [r.org_code, { org_code: r.org_code, org_name: `ORG ${r.org_code}` }])).values()],
        nhsid_nrbac_roles: persona.roles,
      };
    },
    async assertClientAuth(ctx, claims) {
      // CIS2 (ForgeRock) wants the assertion's aud to be the token endpoint exactly, and sub = iss.
      if (claims.aud !== ctx.oidc.urlFor('token')) throw new errors.InvalidClientAuth('JWT is not valid');
      if (claims.sub !== claims.iss) throw new errors.InvalidClientAuth('JWT is not valid');
    },
    decorateRedirect(url) {
      const client = options.clients[0];
      if (client) url.searchParams.set('client_id', client.client_id);
    },
    decorateTokenResponse(body, idToken) {
      if (idToken?.nonce) body.nonce = idToken.nonce;
    },
  };
  const op = (await FakeOp.start(definition, options.port)) as FakeCis2;
  op.knobs = knobs;
  return op;
}
