import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { startRedis, type RedisPeer } from './redis.ts';

/** A real Redis Cluster of three masters on loopback (no replicas), created with redis-cli --cluster. */
export async function startRedisCluster(): Promise<{ url: string; nodes: RedisPeer[]; stop(): Promise<void> }> {
  const nodes: RedisPeer[] = [];
  for (let i = 0; i < 3; i++) nodes.push(await startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-announce-ip', '127.0.0.1']));
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'ignore' });
  const probe = new Redis({ port: nodes[0].port, host: '127.0.0.1' });
  probe.on('error', () => {});
  try {
    for (let i = 0; i < 100; i++) {
      if (String(await probe.cluster('INFO')).includes('cluster_state:ok')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    probe.disconnect();
  }
  return {
    url: `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`,
    nodes,
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
