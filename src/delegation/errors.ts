// Typed delegation errors; web/ maps them to HTTP, OperationOutcome (VRS error codes) and pages.

export type DelegationErrorCode = 'not-found' | 'forbidden' | 'invalid' | 'invalid-transition' | 'conflict' | 'expired' | 'tampered';

export class DelegationError extends Error {
  readonly code: DelegationErrorCode;
  constructor(code: DelegationErrorCode, message: string) {
    super(message);
    this.name = 'DelegationError';
    this.code = code;
  }
}

export const HTTP_STATUS: Record<DelegationErrorCode, number> = {
  'not-found': 404,
  forbidden: 403,
  invalid: 422,
  'invalid-transition': 422,
  conflict: 409,
  expired: 410,
  tampered: 409,
};

/** VRS ValidatedRelationships-ErrorOrWarningCode values (nhs-interfaces.md 4.4). */
export const VRS_CODE: Record<DelegationErrorCode, string> = {
  'not-found': 'INVALIDATED_RESOURCE',
  forbidden: 'ACCESS_DENIED',
  invalid: 'INVALID_PARAMETER',
  'invalid-transition': 'INVALID_STATE_TRANSITION',
  conflict: 'DUPLICATE_RELATIONSHIP',
  expired: 'INVALIDATED_RESOURCE',
  tampered: 'SERVER_ERROR',
};
