// Rate limits count in fixed windows (a minute, an hour) aligned to the clock. A test that sends a
// burst and expects the limit to bite must not straddle a window boundary, where counts restart.

/** Waits, if needed, until at least `marginSeconds` remain in the current window of `windowSeconds`. */
export async function awayFromWindowEdge(windowSeconds: number, marginSeconds = 20): Promise<void> {
  const windowMs = windowSeconds * 1000;
  const left = windowMs - (Date.now() % windowMs);
  if (left < marginSeconds * 1000) await new Promise((r) => setTimeout(r, left + 50));
}
