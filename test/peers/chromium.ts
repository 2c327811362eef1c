import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

// Debian's Chromium driven by playwright-core. The flags keep it off this machine's closed network
// (background networking otherwise floods refused connections); a fresh profile per context.

const CHROMIUM = '/usr/bin/chromium';

function chromiumInstalled(): boolean {
  const found = existsSync(CHROMIUM);
  if (!found && process.env.CI === 'true') throw new Error('chromium is not installed; .ci/run must install it');
  return found;
}

export const chromiumAvailable = chromiumInstalled();

export function launchChromium(name: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), `chromium-${name}-`)), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
