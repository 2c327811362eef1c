import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';

/** A broker running as its own OS process (npm start's entry point), for multi-instance and crash tests. */
export interface BrokerProcess {
  port: number;
  child: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** What the process wrote to stdout (its log lines) so far; the last megabyte at most. */
  output(): string;
}

export async function startBrokerProcess(config: Record<string, unknown>, dir: string, port: number, env: Record<string, string> = {}): Promise<BrokerProcess> {
  const file = join(dir, `broker-${port}.yaml`);
  writeFileSync(file, stringify({ ...config, port, host: '127.0.0.1' }));
  const child = spawn(process.execPath, [resolve('src/main.ts'), 'start', '--config', file], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += String(d)));
  let stdout = '';
  child.stdout?.on('data', (d) => (stdout = (stdout + String(d)).slice(-1_000_000)));
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`broker exited: ${stderr}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    child,
    output: () => stdout,
    stop(signal = 'SIGTERM') {
      return new Promise((r) => {
        // Already gone: exited by itself (exitCode) or killed by a signal (signalCode; exitCode stays null).
        if (child.exitCode !== null || child.signalCode !== null) return r(child.exitCode);
        child.once('exit', (code) => r(code));
        child.kill(signal);
      });
    },
  };
}
