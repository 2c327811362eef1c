// Parses the redis URLs the broker accepts. WHATWG URL cannot hold the comma-separated host lists of
// Sentinel and Cluster, so all forms go through one small parser and share its rules.
//
//   redis://[user:pass@]host[:port][/db]          standalone
//   rediss://[user:pass@]host[:port][/db]         standalone over TLS
//   redis+sentinel://[user:pass@]host:port,host:port/mastername[/db]   (credentials are the master's)
//   redis+cluster://[user:pass@]host:port,host:port                    (seed nodes)

export interface RedisHost {
  host: string;
  port: number;
}

interface Credentials {
  username?: string;
  password?: string;
}

export type RedisTarget =
  | ({ mode: 'standalone'; host: string; port: number; db: number; tls: boolean } & Credentials)
  | ({ mode: 'sentinel'; sentinels: RedisHost[]; name: string; db: number } & Credentials)
  | ({ mode: 'cluster'; nodes: RedisHost[] } & Credentials);

const SHAPE = /^([a-z][a-z0-9+]*):\/\/(?:([^@/]*)@)?([^/?#]+)(\/[^?#]*)?$/i;

// The URL may carry a password, and a malformed one may put it anywhere: errors never echo any part of it.
function fail(why: string): never {
  throw new Error(`invalid redis URL: ${why}`);
}

function parseHost(text: string, defaultPort: number): RedisHost {
  const m = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/i.exec(text);
  if (!m) fail('bad host');
  const port = m[3] === undefined ? defaultPort : Number(m[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail('bad port');
  return { host: m[1] ?? m[2], port };
}

function parseDb(text: string | undefined): number {
  if (text === undefined || text === '') return 0;
  if (!/^\d{1,5}$/.test(text)) fail('bad database number');
  return Number(text);
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return fail('bad percent-encoding');
  }
}

function parseCredentials(userinfo: string | undefined): Credentials {
  if (userinfo === undefined || userinfo === '') return {};
  const colon = userinfo.indexOf(':');
  const user = decode(colon === -1 ? userinfo : userinfo.slice(0, colon));
  const pass = colon === -1 ? undefined : decode(userinfo.slice(colon + 1));
  if (pass === undefined) return { username: user };
  // redis://:secret@host is the classic password-only form (the default user).
  return user === '' ? { password: pass } : { username: user, password: pass };
}

export function parseRedisUrl(url: string): RedisTarget {
  const m = SHAPE.exec(url.trim());
  if (!m) fail('expected scheme://[user:pass@]host:port[/...] without query or fragment');
  const scheme = m[1].toLowerCase();
  const credentials = parseCredentials(m[2]);
  const hosts = m[3].split(',');
  const path = (m[4] ?? '').split('/').slice(1);

  switch (scheme) {
    case 'redis':
    case 'rediss': {
      if (hosts.length !== 1) fail(`${scheme}:// takes one host; use redis+cluster:// or redis+sentinel:// for several`);
      if (path.length > 1) fail('path must be /<db>');
      const { host, port } = parseHost(hosts[0], 6379);
      return { mode: 'standalone', host, port, db: parseDb(path[0]), tls: scheme === 'rediss', ...credentials };
    }
    case 'redis+sentinel': {
      const name = path[0] ? decode(path[0]) : '';
      if (name === '') fail('redis+sentinel:// needs the master name as its path');
      if (path.length > 2) fail('path must be /<mastername>[/<db>]');
      return { mode: 'sentinel', sentinels: hosts.map((h) => parseHost(h, 26379)), name, db: parseDb(path[1]), ...credentials };
    }
    case 'redis+cluster': {
      if (path.length > 1 || (path.length === 1 && path[0] !== '')) fail('redis+cluster:// takes no path (cluster has no databases)');
      return { mode: 'cluster', nodes: hosts.map((h) => parseHost(h, 6379)), ...credentials };
    }
    default:
      return fail(`unsupported scheme "${scheme}:"`);
  }
}
