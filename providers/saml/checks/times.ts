import { SamlXmlError } from '../xml.ts';

/** The clock and tolerances one verification runs with. */
export interface Clock {
  now: number;
  /** Tolerated clock difference, ms. */
  skew: number;
  /** Oldest IssueInstant accepted, ms. */
  maxAge: number;
}

export function notBefore(value: number | undefined, clock: Clock, what: string): void {
  if (value !== undefined && value > clock.now + clock.skew) throw new SamlXmlError(`${what}: not yet valid (NotBefore)`);
}

export function notOnOrAfter(value: number | undefined, clock: Clock, what: string): void {
  if (value !== undefined && clock.now >= value + clock.skew) throw new SamlXmlError(`${what}: expired (NotOnOrAfter)`);
}

export function issuedRecently(value: number | undefined, clock: Clock, what: string): void {
  if (value === undefined) throw new SamlXmlError(`${what}: missing IssueInstant`);
  if (value > clock.now + clock.skew) throw new SamlXmlError(`${what}: issued in the future`);
  if (value < clock.now - clock.maxAge - clock.skew) throw new SamlXmlError(`${what}: too old`);
}
