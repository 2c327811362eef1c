// The single-audience policy for subject and actor tokens from the trusted issuers (catalogue JW-17).
//
// RFC 7519 4.1.3 lets `aud` be one string or an array of them, and only asks the recipient to find
// itself among them; jose's `audience` option does exactly that. But a token whose audience is the
// broker and someone else was issued to both: the other party received it too and can present it here
// as the user, so the broker would be accepting a token it cannot know was meant for it alone. RFC 8725
// 3.9 asks for audience checks that keep a token meant for one relying party from being used at
// another; the strict reading, taken here, is that a token the broker exchanges must have been issued
// for exactly one audience, and that audience one the issuer's configuration names (exact string match,
// no normalisation).
//
// An array holding exactly one value is accepted: RFC 7519 4.1.3 makes a single string the special
// form of a one-element array, the same statement, so refusing it would refuse honest issuers for their
// JSON style. Real subject tokens fit: NHS CIS2 and NHS login ID tokens carry `aud` as one string, the
// client id (with `azp` equal to it at CIS2; nhs-interfaces.md 1.7 and 2.4), and the broker's own tokens
// are not under this policy (their audience is the resource they were issued for).

/** The token's one audience, or undefined when it has none, several, or is not a string. */
export function soleAudience(aud: unknown): string | undefined {
  if (typeof aud === 'string') return aud === '' ? undefined : aud;
  if (Array.isArray(aud) && aud.length === 1 && typeof aud[0] === 'string' && aud[0] !== '') return aud[0];
  return undefined;
}

export const SOLE_AUDIENCE = 'a token exchanged here must have exactly one audience';
