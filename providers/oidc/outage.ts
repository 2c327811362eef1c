// Which failures of an upstream request mean the upstream is not working (and count toward its circuit
// breaker), as opposed to an answer that was refused. The line is drawn so that nothing a browser or an
// attacker can put on the callback (a made-up code, a foreign state, an injected code, a tampered iss)
// lands on the outage side: those come back as OAuth errors (4xx) or fail a claim check. What counts is
// what only the upstream's own endpoints produce: no answer in time, no connection, a 5xx, or a body
// that is not the JSON it must be.

function field(err: unknown, name: string): unknown {
  return err !== null && typeof err === 'object' ? (err as Record<string, unknown>)[name] : undefined;
}

function isTimeout(err: unknown): boolean {
  const name = field(err, 'name');
  return name === 'TimeoutError' || name === 'AbortError';
}

/** undici's fetch failures: refused, reset, DNS, a socket closed mid-answer. */
function isNetwork(err: unknown): boolean {
  return err instanceof TypeError && (err.message === 'fetch failed' || err.message === 'terminated');
}

/** The HTTP status behind an openid-client error: its own `status`, or the Response it carries as its cause. */
function statusOf(err: unknown): number | undefined {
  const direct = field(err, 'status');
  if (typeof direct === 'number') return direct;
  const cause = field(err, 'cause');
  return cause instanceof Response ? cause.status : undefined;
}

/** Statuses that only say the server is unavailable, whatever the request carried. */
const UNAVAILABLE = new Set([502, 503, 504]);

/**
 * `carriesBrowserInput`: the request carried what came back on the callback (the token endpoint gets the
 * browser's code). Some servers answer a malformed code with a 500; counting that would let anyone who
 * can start a login open the circuit, so there only gateway and unavailability statuses count.
 */
export function isUpstreamOutage(err: unknown, carriesBrowserInput = false): boolean {
  if (isTimeout(err) || isTimeout(field(err, 'cause')) || isNetwork(err) || isNetwork(field(err, 'cause'))) return true;
  const code = field(err, 'code');
  if (code === 'OAUTH_TIMEOUT' || code === 'OAUTH_ABORT') return true;
  // A 200 whose JSON is broken.
  if (code === 'OAUTH_PARSE_ERROR') return true;
  const status = statusOf(err) ?? 0;
  if (code === 'OAUTH_RESPONSE_IS_NOT_JSON' || code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' || code === 'OAUTH_RESPONSE_BODY_ERROR') {
    // A 5xx of any kind, or a success that is not JSON (an HTML page where tokens should be). A 4xx is an
    // answer, JSON or not (invalid_grant for a made-up or replayed code, a WAF page refusing odd input):
    // never an outage, or anyone could open the circuit by posting garbage.
    const serverError = carriesBrowserInput ? UNAVAILABLE.has(status) : status >= 500;
    return serverError || (code === 'OAUTH_RESPONSE_IS_NOT_JSON' && status >= 200 && status < 300);
  }
  return false;
}
