import type { Context } from 'koa';
import type { z } from 'zod';
import { DelegationError, HTTP_STATUS, VRS_CODE, type DelegationErrorCode } from '../../delegation/errors.ts';
import { FhirMappingError, VRS_ERROR_SYSTEM } from '../../delegation/fhir.ts';
import { ApiAuthError } from '../api-auth.ts';

// The API's edge: JSON bodies read with a size limit and parsed with zod, and every refusal turned into
// `{ error, error_description }` or, on the FHIR-flavoured routes, an OperationOutcome with the VRS
// error code. Anything not listed here is a bug and goes to the broker's error handler (500).

const JSON_LIMIT = 64 * 1024;

/** A request refused at the edge, before anything was looked up or changed. */
export class ApiRequestError extends Error {
  readonly status: number;
  readonly error: string;
  readonly vrsCode: string;
  constructor(status: number, error: string, message: string, vrsCode = 'INVALID_PARAMETER') {
    super(message);
    this.name = 'ApiRequestError';
    this.status = status;
    this.error = error;
    this.vrsCode = vrsCode;
  }
}

export async function readJson(ctx: Context, options: { fhir?: boolean } = {}): Promise<unknown> {
  const types = options.fhir ? ['application/fhir+json', 'application/json'] : ['application/json'];
  if (!ctx.is(types)) throw new ApiRequestError(415, 'invalid_request', `send the body as ${types.join(' or ')}`);
  if (ctx.request.length !== undefined && ctx.request.length > JSON_LIMIT) throw new ApiRequestError(413, 'invalid_request', 'request body too large');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > JSON_LIMIT) throw new ApiRequestError(413, 'invalid_request', 'request body too large');
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new ApiRequestError(400, 'invalid_request', 'the body is not valid JSON', 'INVALID_PARAMETER');
  }
}

export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message))
    .join('; ');
}

/** Parses with zod; a mismatch is a 400 that names the fields, never a 500. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ApiRequestError(400, 'invalid_request', describeIssues(parsed.error));
  return parsed.data;
}

const JSON_ERROR: Record<DelegationErrorCode, string> = {
  'not-found': 'not_found',
  forbidden: 'access_denied',
  invalid: 'invalid_request',
  'invalid-transition': 'invalid_state_transition',
  conflict: 'conflict',
  expired: 'expired',
  tampered: 'record_tampered',
};

/** FHIR issue types (http://hl7.org/fhir/issue-type) per delegation error. */
const ISSUE_TYPE: Record<DelegationErrorCode, string> = {
  'not-found': 'not-found',
  forbidden: 'forbidden',
  invalid: 'invalid',
  'invalid-transition': 'business-rule',
  conflict: 'conflict',
  expired: 'expired',
  tampered: 'exception',
};

export interface Refusal {
  status: number;
  error: string;
  message: string;
  vrsCode: string;
  issueType: string;
  wwwAuthenticate?: string;
}

/** The refusal an error stands for, or undefined for an unexpected error (left to the 500 handler). */
export function refusalOf(err: unknown): Refusal | undefined {
  if (err instanceof ApiAuthError) {
    return { status: err.status, error: err.oauthError, message: err.message, vrsCode: 'ACCESS_DENIED', issueType: 'forbidden', wwwAuthenticate: `Bearer error="${err.oauthError}", error_description="${err.message.replace(/"/g, "'")}"` };
  }
  if (err instanceof DelegationError) return { status: HTTP_STATUS[err.code], error: JSON_ERROR[err.code], message: err.message, vrsCode: VRS_CODE[err.code], issueType: ISSUE_TYPE[err.code] };
  if (err instanceof FhirMappingError) return { status: err.status, error: 'invalid_request', message: err.message, vrsCode: err.vrsCode, issueType: err.status === 400 ? 'required' : 'invalid' };
  if (err instanceof ApiRequestError) {
    const issueType = err.status === 404 ? 'not-found' : err.status === 403 ? 'forbidden' : err.status === 413 ? 'too-long' : err.status === 415 ? 'not-supported' : 'invalid';
    return { status: err.status, error: err.error, message: err.message, vrsCode: err.vrsCode, issueType };
  }
  return undefined;
}

export interface OperationOutcome {
  resourceType: 'OperationOutcome';
  issue: Array<{ severity: 'error' | 'information'; code: string; details?: { coding: Array<{ system: string; code: string; display?: string }> }; diagnostics?: string }>;
}

export function operationOutcome(r: Pick<Refusal, 'issueType' | 'vrsCode' | 'message'>): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: r.issueType, details: { coding: [{ system: VRS_ERROR_SYSTEM, code: r.vrsCode }] }, diagnostics: r.message }] };
}

export function sendRefusal(ctx: Context, r: Refusal, flavour: 'json' | 'fhir'): void {
  ctx.status = r.status;
  if (r.wwwAuthenticate) ctx.set('WWW-Authenticate', r.wwwAuthenticate);
  ctx.set('Cache-Control', 'no-store');
  if (flavour === 'fhir') {
    ctx.type = 'application/fhir+json';
    ctx.body = operationOutcome(r);
  } else {
    ctx.body = { error: r.error, error_description: r.message };
  }
}
