import { z } from 'zod';
import { vrsConsentSchema } from '../../delegation/fhir.ts';
import { API_SCOPES, apiResource } from '../api-auth.ts';
import { actedForMeView, changeBody, delegationList, delegationView, endBody, errorBody, historyView, invitationCreated, inviteBody, respondBody, staffRecordBody } from './schemas.ts';

// The OpenAPI 3.1 description of the delegation API, served at /api/openapi.json. Request and response
// schemas are generated from the zod schemas the routes parse with, so the document cannot drift from
// what the code accepts.

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/**
 * A component schema from a zod schema. Recursive schemas come with `$defs` referenced as `#/$defs/x`,
 * which would resolve against the OpenAPI document's root: they become components of their own.
 */
function schemaOf(name: string, schema: z.ZodType, io: 'input' | 'output', components: Record<string, JsonObject>): JsonObject {
  const { $schema: _ignored, $defs, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonObject;
  const defs = ($defs ?? {}) as Record<string, JsonObject>;
  const rename = (key: string) => `${name}_${key.replace(/[^A-Za-z0-9]/g, '')}`;
  const rewrite = (value: Json): Json => {
    if (Array.isArray(value)) return value.map(rewrite);
    if (value === null || typeof value !== 'object') return value;
    return Object.fromEntries(Object.entries(value).map(([k, v]) => (k === '$ref' && typeof v === 'string' && v.startsWith('#/$defs/') ? [k, `#/components/schemas/${rename(v.slice(8))}`] : [k, rewrite(v)])));
  };
  for (const [key, def] of Object.entries(defs)) components[rename(key)] = rewrite(def) as JsonObject;
  return rewrite(rest) as JsonObject;
}

const ref = (name: string): JsonObject => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: JsonObject): JsonObject => ({ 'application/json': { schema } });
const fhirJson = (schema: JsonObject): JsonObject => ({ 'application/fhir+json': { schema } });

function errors(codes: number[], fhir = false): Record<string, Json> {
  const text: Record<number, string> = {
    400: 'The request body or parameters are invalid (nothing was changed)',
    401: 'No valid bearer token (WWW-Authenticate says why)',
    403: 'The token lacks the scope, or the caller may not do this',
    404: 'No such delegation (or not one the caller is party to), or the invitation code is unknown or used',
    409: 'A concurrent change, a duplicate relationship, or a record that failed its signature or chain check',
    410: 'The invitation has expired',
    413: 'The body is too large',
    415: 'The body is not JSON',
    422: 'Refused by the consent state machine or policy (VRS INVALID_STATE_TRANSITION, INVALID_PARAMETER...)',
  };
  return Object.fromEntries(codes.map((c) => [String(c), { description: text[c] ?? 'Error', content: fhir ? fhirJson(ref('OperationOutcome')) : json(ref('Error')) }]));
}

const idParam: JsonObject = { name: 'id', in: 'path', required: true, description: 'Delegation (consent) id', schema: { type: 'string', pattern: '^[A-Za-z0-9-]{1,64}$' } };

function op(summary: string, scope: string, extra: JsonObject): JsonObject {
  return { summary, security: [{ bearer: [scope] }, { broker: [scope] }], ...extra };
}

export function buildOpenApi(issuer: string): JsonObject {
  const extra: Record<string, JsonObject> = {};
  const scopes: JsonObject = {
    'delegation.read': 'See delegations the caller is party to, their history and FHIR form',
    'delegation.write': 'Invite, accept or decline, change and end delegations',
    'delegation.staff': 'Staff (AAL3 with an allowed role): record verified relationships and import VRS Consents',
    'delegation.events': 'Subscribe to consent revocation events',
    'audit.read': 'Read who acted for the caller (from the audit ledger)',
    'account.links': 'See and remove the upstream logins linked to the caller\'s account',
  };
  for (const s of API_SCOPES) if (!(s in scopes)) scopes[s] = s;
  return {
    openapi: '3.1.0',
    info: {
      title: 'Delegation API',
      version: '1.0.0',
      description:
        'Patients delegate access to carers; carers accept; staff record verified relationships. Every record is a signed, versioned consent following the NHS England Validated Relationships Service state machine. Errors are `{ error, error_description }`, except on the FHIR routes, which answer an OperationOutcome whose `details.coding` uses https://fhir.nhs.uk/R4/CodeSystem/ValidatedRelationships-ErrorOrWarningCode.',
    },
    servers: [{ url: issuer }],
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: `An RFC 9068 access token from this broker with audience ${apiResource(issuer)} and the scope each operation lists. Delegated (act) tokens are refused.` },
        broker: {
          type: 'oauth2',
          description: `How to get such a token: authorization code with PKCE and resource=${apiResource(issuer)}.`,
          flows: { authorizationCode: { authorizationUrl: new URL('/auth', issuer).href, tokenUrl: new URL('/token', issuer).href, scopes } },
        },
      },
      schemas: {
        Invitation: schemaOf('Invitation', inviteBody, 'input', extra),
        InvitationCreated: schemaOf('InvitationCreated', invitationCreated, 'output', extra),
        InvitationCode: schemaOf('InvitationCode', respondBody, 'input', extra),
        Change: schemaOf('Change', changeBody, 'input', extra),
        End: schemaOf('End', endBody, 'input', extra),
        StaffRecord: schemaOf('StaffRecord', staffRecordBody, 'input', extra),
        Delegation: schemaOf('Delegation', delegationView, 'output', extra),
        DelegationList: schemaOf('DelegationList', delegationList, 'output', extra),
        History: schemaOf('History', historyView, 'output', extra),
        ActedForMe: schemaOf('ActedForMe', actedForMeView, 'output', extra),
        Error: schemaOf('Error', errorBody, 'output', extra),
        LinkList: {
          type: 'object',
          required: ['links'],
          properties: {
            links: {
              type: 'array',
              description: 'Oldest first',
              items: {
                type: 'object',
                required: ['provider', 'providerName', 'subject', 'evidence', 'linkedAt'],
                properties: {
                  provider: { type: 'string', description: 'Upstream (connector) id' },
                  providerName: { type: 'string', description: 'Its display name' },
                  subject: { type: 'string', description: 'The subject at that upstream' },
                  evidence: { type: 'string', description: 'Why the link was made', examples: ['jit', 'proved-in-session', 'nhs_number:P9', 'cis2_uid:AAL2'] },
                  linkedAt: { type: 'string', format: 'date-time' },
                },
              },
            },
          },
        },
        Consent: {
          ...schemaOf('Consent', vrsConsentSchema, 'input', extra),
          description:
            'FHIR R4 Consent as NHS England VRS models a proxy role: patient, performer and provision.actor (the proxy, by NHS number), policyRule (England-NHSProxyLegalBasis), provision.period, status and the Extension-England-Consent-Status-Reason. Export fills provision.actor.role (http://hl7.org/fhir/consentperformer#delegatee); import tolerates its absence, as VRS omits it.',
        },
        OperationOutcome: {
          type: 'object',
          required: ['resourceType', 'issue'],
          properties: {
            resourceType: { const: 'OperationOutcome' },
            issue: {
              type: 'array',
              items: {
                type: 'object',
                required: ['severity', 'code'],
                properties: {
                  severity: { type: 'string' },
                  code: { type: 'string', description: 'FHIR issue type' },
                  details: { type: 'object', properties: { coding: { type: 'array', items: { type: 'object', properties: { system: { const: 'https://fhir.nhs.uk/R4/CodeSystem/ValidatedRelationships-ErrorOrWarningCode' }, code: { type: 'string', examples: ['ACCESS_DENIED', 'INVALID_PARAMETER', 'INVALID_STATE_TRANSITION', 'INVALIDATED_RESOURCE', 'INVALID_IDENTIFIER_VALUE', 'INVALID_IDENTIFIER_SYSTEM', 'INVALID_LEGAL_BASIS_CODE', 'MISSING_IDENTIFIER_VALUE', 'DUPLICATE_RELATIONSHIP'] } } } } } },
                  diagnostics: { type: 'string' },
                },
              },
            },
          },
        },
        // Definitions hoisted out of the schemas above (properties are evaluated in order, so it is full here).
        ...extra,
      },
    },
    paths: {
      '/api/delegations': {
        get: op('Delegations the caller is party to, as patient and as grantee', 'delegation.read', { responses: { '200': { description: 'Both lists', content: json(ref('DelegationList')) }, ...errors([401, 403, 409]) } }),
        post: op('Invite someone to act for the caller (patient); returns the single-use code once', 'delegation.write', {
          requestBody: { required: true, content: json(ref('Invitation')) },
          responses: { '201': { description: 'The pending invitation and its code', content: json(ref('InvitationCreated')) }, ...errors([400, 401, 403, 413, 415, 422]) },
        }),
      },
      '/api/delegations/invitations/accept': {
        post: op('Accept an invitation with its code (the caller becomes the grantee)', 'delegation.write', {
          requestBody: { required: true, content: json(ref('InvitationCode')) },
          responses: { '200': { description: 'The now active delegation', content: json(ref('Delegation')) }, ...errors([400, 401, 403, 404, 409, 410, 422]) },
        }),
      },
      '/api/delegations/invitations/decline': {
        post: op('Decline an invitation with its code', 'delegation.write', {
          requestBody: { required: true, content: json(ref('InvitationCode')) },
          responses: { '200': { description: 'The rejected invitation', content: json(ref('Delegation')) }, ...errors([400, 401, 403, 404, 409, 410, 422]) },
        }),
      },
      '/api/delegations/staff': {
        post: op('Staff record a relationship they have verified (active at once)', 'delegation.staff', {
          requestBody: { required: true, content: json(ref('StaffRecord')) },
          responses: { '201': { description: 'The recorded delegation', content: json(ref('Delegation')) }, ...errors([400, 401, 403, 409, 422]) },
        }),
      },
      '/api/delegations/import': {
        post: op('Staff import a VRS-style FHIR Consent (NHS numbers must map to accounts)', 'delegation.staff', {
          requestBody: { required: true, content: { ...fhirJson(ref('Consent')), ...json(ref('Consent')) } },
          responses: { '201': { description: 'The imported delegation as a FHIR Consent', content: fhirJson(ref('Consent')) }, ...errors([400, 401, 403, 409, 413, 415, 422], true) },
        }),
      },
      '/api/delegations/{id}': {
        parameters: [idParam],
        get: op('One delegation (patient, grantee or staff)', 'delegation.read', { responses: { '200': { description: 'The delegation', content: json(ref('Delegation')) }, ...errors([401, 403, 404, 409]) } }),
        patch: op('Change access or period (the patient only; a grantee can never widen it)', 'delegation.write', {
          requestBody: { required: true, content: json(ref('Change')) },
          responses: { '200': { description: 'The new version', content: json(ref('Delegation')) }, ...errors([400, 401, 403, 404, 409, 422]) },
        }),
        delete: op('End a delegation, or withdraw an invitation, with a VRS status reason (OTHER needs text)', 'delegation.write', {
          parameters: [
            { name: 'reason', in: 'query', required: false, description: 'Instead of a body', schema: { type: 'string' } },
            { name: 'text', in: 'query', required: false, schema: { type: 'string' } },
          ],
          requestBody: { required: false, content: json(ref('End')) },
          responses: { '200': { description: 'The ended delegation', content: json(ref('Delegation')) }, ...errors([400, 401, 403, 404, 409, 422]) },
        }),
      },
      '/api/delegations/{id}/history': {
        parameters: [idParam],
        get: op('Every version, each signature and the hash chain verified', 'delegation.read', { responses: { '200': { description: 'Versions, oldest first', content: json(ref('History')) }, ...errors([401, 403, 404, 409]) } }),
      },
      '/api/delegations/{id}/fhir': {
        parameters: [idParam],
        get: op('The delegation as a FHIR R4 Consent (VRS profile)', 'delegation.read', { responses: { '200': { description: 'Consent', content: fhirJson(ref('Consent')) }, ...errors([401, 403, 404, 409], true) } }),
      },
      '/api/who-acted-for-me': {
        get: op('Tokens issued to people acting for the caller, and exchanges made with them (audit ledger)', 'audit.read', {
          parameters: [{ name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 500, default: 100 } }],
          responses: { '200': { description: 'Newest first', content: json(ref('ActedForMe')) }, ...errors([400, 401, 403]) },
        }),
      },
      '/api/account/links': {
        get: op('The upstream logins linked to the caller\'s account, with the evidence each link was made on', 'account.links', { responses: { '200': { description: 'The links', content: json(ref('LinkList')) }, ...errors([401, 403]) } }),
      },
      '/api/account/links/{provider}/{subject}': {
        parameters: [
          { name: 'provider', in: 'path', required: true, description: 'Upstream (connector) id', schema: { type: 'string', maxLength: 200 } },
          { name: 'subject', in: 'path', required: true, description: 'The subject at that upstream (URL-encoded)', schema: { type: 'string', maxLength: 1024 } },
        ],
        delete: op('Remove one of the caller\'s links (audited as account.unlinked). The last one cannot be removed (409 last_link). Adding a link needs the browser: /account/links', 'account.links', {
          responses: { '204': { description: 'Removed' }, ...errors([400, 401, 403, 404, 409]) },
        }),
      },
      '/api/openapi.json': { get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI 3.1', content: json({ type: 'object' }) } } } },
    },
  };
}
