import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { configSchema, type BrokerConfig } from './schema.ts';
import { demoConfig } from './demo.ts';
import { exchangeConfigProblems } from './exchange.ts';

/** A configuration that cannot be used; `problems` name the path and what is wrong, one per line. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** `clients[1].redirect_uris[0]` from a zod issue path. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(root)';
}

// Interpolation happens on parsed values, not on the raw text, so a secret containing YAML syntax
// cannot change the structure of the file.
function interpolate(value: unknown, env: NodeJS.ProcessEnv, path: PropertyKey[], problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const v = env[name];
      if (v === undefined) {
        problems.push(`${formatPath(path)}: environment variable ${name} is not set`);
        return '';
      }
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, [...path, i], problems));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env, [...path, k], problems)]));
  }
  return value;
}

export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env): BrokerConfig {
  const problems: string[] = [];
  const interpolated = interpolate(raw ?? {}, env, [], problems);
  if (problems.length) throw new ConfigError(problems);
  if (env.PORT !== undefined && interpolated && typeof interpolated === 'object') {
    const port = Number(env.PORT);
    if (!Number.isInteger(port)) throw new ConfigError([`PORT: must be an integer, got ${JSON.stringify(env.PORT)}`]);
    (interpolated as Record<string, unknown>).port = port;
  }
  const result = configSchema.safeParse(interpolated);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`));
  }
  const cfg = result.data;
  // The exchange policy names clients and resources defined elsewhere in the file.
  const exchangeProblems = exchangeConfigProblems(cfg, env);
  if (exchangeProblems.length) throw new ConfigError(exchangeProblems);
  cfg.issuer ??= `http://localhost:${cfg.port}`;
  return cfg;
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): BrokerConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    if (err instanceof YAMLParseError) throw new ConfigError([`${file}: YAML syntax error: ${err.message.split('\n')[0]}`]);
    throw err;
  }
  return parseConfig(raw, env);
}

/** `--config FILE`, else BROKER_CONFIG, else the embedded demo profile. */
export function resolveConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): BrokerConfig {
  const path = file ?? env.BROKER_CONFIG;
  if (path) return loadConfigFile(path, env);
  const port = env.PORT !== undefined && /^\d+$/.test(env.PORT) ? Number(env.PORT) : 8080;
  return parseConfig(demoConfig(port), env);
}

export function configJsonSchema(): unknown {
  return z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' });
}
