import type { StoredConsent } from './contracts.ts';

// Argument checks every consent store backend applies. Misuse is a bug in the caller, not a lost race:
// these throw rather than returning false, which a caller would take for "someone else updated it"
// and retry for ever.

function checkFields(consent: StoredConsent): void {
  if (!Number.isFinite(consent.updatedAt)) throw new TypeError('consent updatedAt must be a finite number');
  if (consent.endsAt !== undefined && !Number.isFinite(consent.endsAt)) throw new TypeError('consent endsAt must be a finite number when given');
}

export function checkCreate(consent: StoredConsent): void {
  if (consent.version !== 1) throw new RangeError(`a consent is created at version 1, not ${consent.version}`);
  checkFields(consent);
}

export function checkUpdate(consent: StoredConsent, expectedVersion: number): void {
  if (!Number.isSafeInteger(expectedVersion) || expectedVersion < 1) throw new RangeError(`expectedVersion must be a positive integer, not ${expectedVersion}`);
  if (consent.version !== expectedVersion + 1) {
    throw new RangeError(`consent version must be expectedVersion + 1 (${expectedVersion + 1}), not ${consent.version}`);
  }
  checkFields(consent);
}
