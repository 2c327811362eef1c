import { randomUUID } from 'node:crypto';
import type { ClientMetadata } from 'oidc-provider';
import { errors } from 'oidc-provider';
import { FakeOp, type FakeOpDefinition } from './fake-oidc-op.ts';

// FakeNhsLoginOp (nhs-interfaces.md 7.2): an NHS login-shaped upstream on oidc-provider 9. RS512 ID
// tokens, private_key_jwt with RS512 and aud = the token URL (nothing else accepted), `vtr` parsed as a
// JSON array (default P9 vectors) and answered with `vot`/`vtm` in the ID token, no acr or amr, NHS
// number and proofing level with the profile scope. Login is non-interactive: the persona named by
// login_hint (or `defaultPersona`) signs in with the first requested vector it satisfies.

export const NHS_LOGIN_CLIENT_ID = 'broker-nhs-login-client';
export const NHS_LOGIN_DEFAULT_VTR = ['P9.Cp.Cd', 'P9.Cp.Ck', 'P9.Cm'];

export interface NhsLoginPersona {
  sub: string;
  nhs_number?: string;
  proofing: 'P0' | 'P5' | 'P9';
  credentials: string[];
  family_name: string;
  given_name: string;
  birthdate: string;
  email: string;
}

export const NHS_LOGIN_PERSONAS: Record<string, NhsLoginPersona> = {
  p9: { sub: '7a4d2c56-6b7d-4c1e-9e0a-3f1d8d2c9a01', nhs_number: '9912003071', proofing: 'P9', credentials: ['Cp', 'Cd'], family_name: 'Mock', given_name: 'Nine', birthdate: '1980-01-01', email: 'p9@example.com' },
  p5: { sub: '0c1e5f77-2b0d-4f5a-8e4c-6a9b3d2e1f02', nhs_number: '9912003072', proofing: 'P5', credentials: ['Cp', 'Cd'], family_name: 'Mock', given_name: 'Five', birthdate: '1985-05-05', email: 'p5@example.com' },
  p0: { sub: 'b3c9e1d4-5a6f-4b7c-8d9e-0f1a2b3c4d03', proofing: 'P0', credentials: ['Cp'], family_name: 'Mock', given_name: 'Zero', birthdate: '1990-09-09', email: 'p0@example.com' },
  mother: { sub: 'e2f4a6b8-1c3d-4e5f-9a7b-8c6d4e2f0a19', nhs_number: '9000000019', proofing: 'P9', credentials: ['Cp', 'Cd'], family_name: 'Jones', given_name: 'Sarah', birthdate: '1988-03-14', email: 'sarah.jones@example.com' },
};

function satisfies(p: NhsLoginPersona, vector: string): boolean {
  const parts = vector.split('.');
  const level = parts[0].startsWith('P') ? Number(parts[0].slice(1)) : 0;
  const creds = parts[0].startsWith('P') ? parts.slice(1) : parts;
  return Number(p.proofing.slice(1)) >= level && creds.every((c) => p.credentials.includes(c));
}

export interface FakeNhsLoginOptions {
  clients: ClientMetadata[];
  port?: number;
}

export async function startFakeNhsLogin(options: FakeNhsLoginOptions): Promise<FakeOp> {
  let trustmark = '';
  const definition: FakeOpDefinition = {
    name: 'nhslogin',
    issuerPath: '',
    routes: { authorization: '/authorize', token: '/token', userinfo: '/userinfo', jwks: '/.well-known/jwks.json' },
    idTokenAlg: 'RS512',
    clients: options.clients,
    claims: {
      openid: ['sub', 'sid', 'auth_time', 'vot', 'vtm', 'id_status', 'token_use'],
      profile: ['nhs_number', 'family_name', 'birthdate', 'identity_proofing_level'],
      profile_extended: ['given_name'],
      email: ['email', 'email_verified'],
    },
    scopes: ['openid', 'profile', 'profile_extended', 'email', 'phone'],
    extraParams: ['vtr'],
    clientAuthMethods: ['private_key_jwt'],
    ttl: { AccessToken: 300, AuthorizationCode: 600, IdToken: 3600 },
    kid: () => randomUUID(),
    login(params, op) {
      const hint = typeof params.login_hint === 'string' ? params.login_hint : op.defaultPersona;
      const persona = hint ? NHS_LOGIN_PERSONAS[hint] : undefined;
      if (!persona) return { error: 'access_denied', error_description: 'unknown persona' };
      if (typeof params.nonce !== 'string') return { error: 'invalid_request', error_description: 'nonce is required' };
      let vtr: unknown = NHS_LOGIN_DEFAULT_VTR;
      if (typeof params.vtr === 'string') {
        try {
          vtr = JSON.parse(params.vtr);
        } catch {
          return { error: 'invalid_request', error_description: 'vtr is not JSON' };
        }
      }
      if (!Array.isArray(vtr) || !vtr.every((v) => typeof v === 'string')) return { error: 'invalid_request', error_description: 'vtr must be an array of strings' };
      const vot = (vtr as string[]).find((v) => satisfies(persona, v));
      if (!vot) return { error: 'access_denied', error_description: 'the user cannot meet any requested vector of trust' };
      return { accountId: persona.sub, info: { vot } };
    },
    claimsFor(accountId, use, _scope, info) {
      const persona = Object.values(NHS_LOGIN_PERSONAS).find((p) => p.sub === accountId);
      if (!persona) return undefined;
      const profile = {
        ...(persona.proofing !== 'P0' && persona.nhs_number && { nhs_number: persona.nhs_number }),
        ...(persona.proofing !== 'P0' && { family_name: persona.family_name, birthdate: persona.birthdate }),
        identity_proofing_level: persona.proofing,
        given_name: persona.given_name,
        email: persona.email,
        email_verified: true,
      };
      if (use === 'id_token') {
        return { ...profile, ...(typeof info?.vot === 'string' && { vot: info.vot }), vtm: trustmark, id_status: 'verified', token_use: 'id' };
      }
      return profile;
    },
    async assertClientAuth(ctx, claims, header) {
      if (header.alg !== 'RS512') throw new errors.InvalidClientAuth('client assertion must be RS512');
      if (claims.aud !== ctx.oidc.urlFor('token')) throw new errors.InvalidClientAuth('aud must be the token endpoint URL');
      if (claims.sub !== claims.iss) throw new errors.InvalidClientAuth('sub must equal iss');
    },
  };
  const op = await FakeOp.start(definition, options.port);
  trustmark = `${op.issuer}/trustmark/${new URL(op.issuer).host}`;
  return op;
}
