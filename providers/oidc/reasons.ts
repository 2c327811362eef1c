// A short, token-free description of why an upstream exchange failed, for the log and audit: the
// error, its code and the cause openid-client wraps (which names the failing claim or check).

function field(err: unknown, name: string): unknown {
  return err !== null && typeof err === 'object' ? (err as Record<string, unknown>)[name] : undefined;
}

function isTimeout(err: unknown): boolean {
  const name = field(err, 'name');
  return name === 'TimeoutError' || name === 'AbortError' || field(field(err, 'cause'), 'name') === 'TimeoutError';
}

export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return 'unknown error';
  if (isTimeout(err)) return 'upstream timed out';
  const parts: string[] = [];
  const upstreamError = field(err, 'error');
  if (typeof upstreamError === 'string') parts.push(`upstream error ${upstreamError.slice(0, 64)}`);
  const code = field(err, 'code');
  if (typeof code === 'string') parts.push(code);
  parts.push(err.message.slice(0, 200));
  const cause = err.cause;
  if (cause instanceof Error) {
    if (isTimeout(cause)) parts.push('timed out');
    else if (cause.message !== err.message) parts.push(cause.message.slice(0, 200));
  }
  const causeCode = field(cause, 'code');
  if (typeof causeCode === 'string' && causeCode !== code) parts.push(causeCode);
  return parts.join(': ');
}
