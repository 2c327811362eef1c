import type { ConsentStatus } from './model.ts';

// The VRS-style state machine (nhs-interfaces.md 4.3). A transition is allowed only with one of its
// reason codes; OTHER needs free text. Anything else is refused (INVALID_STATE_TRANSITION).

const REJECT = [
  'APPLICATION_WITHDRAWN',
  'APPLICATION_REJECTED_NOT_NEEDED',
  'APPLICATION_REJECTED_SAFEGUARDING',
  'APPLICATION_REJECTED_IDENTITY_NOT_VERIFIED',
  'APPLICATION_REJECTED_NO_CONSENT',
  'APPLICATION_REJECTED_COERCION',
  'APPLICATION_REJECTED_PROXY_LACKS_CAPACITY',
  'APPLICATION_REJECTED_NO_LEGAL_BASIS',
  'OTHER',
];
const DEACTIVATE = [
  'ROLE_DEACTIVATED_PATIENT_REQUEST',
  'ROLE_DEACTIVATED_PROXY_REQUEST',
  'ROLE_DEACTIVATED_END_DATE_REACHED',
  'ROLE_DEACTIVATED_SAFEGUARDING',
  'ROLE_DEACTIVATED_INACTIVE_ROLE',
  'ROLE_DEACTIVATED_PATIENT_DECEASED',
  'ROLE_DEACTIVATED_PROXY_DECEASED',
  'ROLE_DEACTIVATED_FAMILIAL_REASON',
  'ROLE_DEACTIVATED_CHANGE_IN_RELATIONSHIP',
  'ROLE_DEACTIVATED_PROXY_LACKS_CAPACITY',
  'ROLE_DEACTIVATED_SYSTEM_MISUSE',
  'ROLE_SUSPENDED_PENDING_REVIEW',
  'OTHER',
];

const TRANSITIONS: Record<string, string[]> = {
  'none>proposed': ['APPLICATION_SUBMITTED'],
  'none>active': ['ROLE_CREATED'],
  'proposed>active': ['ROLE_CREATED'],
  'proposed>rejected': REJECT,
  'proposed>inactive': ['APPLICATION_WITHDRAWN', 'INVITATION_EXPIRED'],
  'rejected>active': ['ROLE_ACTIVATED'],
  'inactive>active': ['ROLE_REACTIVATED'],
  'inactive>rejected': REJECT,
  'active>inactive': DEACTIVATE,
  // An unchanged status with a new version: the grantor changed the access or the period.
  'active>active': ['ROLE_CHANGED'],
  'proposed>entered-in-error': ['ENTERED_IN_ERROR'],
  'active>entered-in-error': ['ENTERED_IN_ERROR'],
  'inactive>entered-in-error': ['ENTERED_IN_ERROR'],
  'rejected>entered-in-error': ['ENTERED_IN_ERROR'],
};

export function transitionError(from: ConsentStatus | 'none', to: ConsentStatus, reason: string, text?: string): string | undefined {
  const allowed = TRANSITIONS[`${from}>${to}`];
  if (!allowed) return `a consent cannot go from ${from} to ${to}`;
  if (!allowed.includes(reason)) return `${reason} is not a reason for ${from} to ${to}`;
  if (reason === 'OTHER' && !text?.trim()) return 'the reason OTHER needs an explanation';
  return undefined;
}

export function deactivationReasons(): string[] {
  return [...DEACTIVATE];
}
