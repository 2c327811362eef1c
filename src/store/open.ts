import type { Store } from './contracts.ts';
import { openRedisStore, type RedisStoreOptions } from './redis/index.ts';
import { openSqliteStore, type SqliteStoreOptions } from './sqlite/index.ts';

export interface OpenStoreOptions {
  sqlite?: SqliteStoreOptions;
  redis?: RedisStoreOptions;
}

const REDIS_SCHEMES = ['redis:', 'rediss:', 'redis+sentinel:', 'redis+cluster:'];

/**
 * Opens the store a URL names: `sqlite:<path>` (`sqlite:./data/broker.db`, `sqlite:///abs/path.db`,
 * `sqlite::memory:`) or `redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://`
 * (forms in src/store/redis/url.ts).
 */
export function openStore(url: string, options: OpenStoreOptions = {}): Store {
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0].toLowerCase();
  if (scheme === 'sqlite:') {
    let path = url.slice('sqlite:'.length);
    // sqlite:///var/lib/broker.db is the URL spelling of an absolute path; sqlite://x would name a host.
    if (path.startsWith('//')) {
      if (!path.startsWith('///')) throw new Error('store URL "sqlite://..." is ambiguous; write sqlite:./relative.db or sqlite:///absolute.db');
      path = path.slice(2);
    }
    if (path === '') throw new Error('store URL "sqlite:" needs a path, for example sqlite:./data/broker.db or sqlite::memory:');
    return openSqliteStore(path, options.sqlite);
  }
  if (scheme !== undefined && REDIS_SCHEMES.includes(scheme)) return openRedisStore(url, options.redis);
  // Only the scheme is echoed: the rest of a URL may carry a password.
  throw new Error(`unsupported store URL scheme ${scheme === undefined ? '(none)' : `"${scheme}"`}; expected sqlite:, ${REDIS_SCHEMES.join(', ')}`);
}
