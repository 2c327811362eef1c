import { execFileSync } from 'node:child_process';

/**
 * Whether a peer binary is installed. Locally a missing peer skips its tests; under CI=true it is a failure,
 * because .ci/run installs every peer and a silent skip would hide a broken install.
 */
export function peerAvailable(binary: string): boolean {
  let found = false;
  try {
    execFileSync('sh', ['-c', `command -v ${binary}`], { stdio: 'ignore' });
    found = true;
  } catch {
    found = false;
  }
  if (!found && process.env.CI === 'true') {
    throw new Error(`peer ${binary} is not installed; .ci/run must install it`);
  }
  return found;
}
