import { parseRedisUrl } from '../store/redis/url.ts';

// What a Redis store URL must show before the broker trusts it with codes, replay markers and consents
// (catalogue HA-20): credentials, and TLS or an operator's explicit word that the network is private.
// Loopback is exempt: nothing else can reach it (local development, the test peers).

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1)$/i;

export function redisStoreProblems(url: string, allowPlaintext: boolean): string[] {
  if (!/^redis(s|\+sentinel|\+cluster)?:/i.test(url)) return [];
  let target;
  try {
    target = parseRedisUrl(url);
  } catch (err) {
    return [err instanceof Error ? err.message : 'invalid redis URL'];
  }
  const hosts = target.mode === 'standalone' ? [target.host] : target.mode === 'sentinel' ? target.sentinels.map((s) => s.host) : target.nodes.map((n) => n.host);
  if (hosts.every((h) => LOOPBACK.test(h))) return [];
  const problems: string[] = [];
  if (!target.password) problems.push('a Redis store off loopback needs credentials: redis://user:${REDIS_PASSWORD}@host (an ACL user, see deploy/redis/README.md)');
  const tls = target.mode === 'standalone' && target.tls;
  if (!tls && !allowPlaintext) problems.push('a Redis store off loopback needs TLS (rediss://), or storeOptions.allowPlaintext: true where the link runs only on a private network you control');
  return problems;
}
