import { createHash } from 'node:crypto';
import type { RedisClient } from './client.ts';

export interface LuaScript {
  readonly source: string;
  readonly sha: string;
}

export function lua(source: string): LuaScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * EVALSHA, falling back to EVAL when the server has not cached the script (after a restart or failover,
 * or on a cluster node that has not seen it). Every key the script touches is passed in `keys`, so
 * Cluster routes it, and they must share a hash slot.
 */
export async function runScript(client: RedisClient, script: LuaScript, keys: string[], args: (string | number)[]): Promise<unknown> {
  try {
    return await client.evalsha(script.sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('NOSCRIPT')) return client.eval(script.source, keys.length, ...keys, ...args);
    throw err;
  }
}
