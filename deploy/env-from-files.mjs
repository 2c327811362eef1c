// Secrets from files, for containers: for every environment variable NAME_FILE=/path, set NAME to the
// file's contents (one trailing newline removed) before the broker reads its configuration. This is
// how Docker secrets (/run/secrets/...) and Kubernetes secret volumes reach `${NAME}` in broker.yaml
// without the value being in the container's environment definition (`docker inspect`).
//
// Loaded by the image for every `node` it runs (NODE_OPTIONS=--import=/app/deploy/env-from-files.mjs),
// so `node src/main.ts start` and `node src/main.ts config check` see the same values. Without any
// *_FILE variable it does nothing.
//
// Refuses (exit 2, like a configuration error) when NAME and NAME_FILE are both set, when the file
// cannot be read, or when it is empty: a missing secret must stop start-up, not become "".

import { readFileSync } from 'node:fs';

const NAME = /^([A-Z_][A-Z0-9_]*)_FILE$/;

function fail(message) {
  process.stderr.write(`invalid configuration:\n  ${message}\n`);
  process.exit(2);
}

for (const [key, path] of Object.entries(process.env)) {
  const m = NAME.exec(key);
  if (!m || path === undefined || path === '') continue;
  const name = m[1];
  if (process.env[name] !== undefined) fail(`${name} and ${key} are both set; give one`);
  let value;
  try {
    value = readFileSync(path, 'utf8');
  } catch (err) {
    // The path is not secret; the contents are never printed.
    fail(`${key}: ${path} cannot be read (${err?.code ?? 'error'})`);
  }
  value = value.replace(/\r?\n$/, '');
  if (value === '') fail(`${key}: ${path} is empty`);
  process.env[name] = value;
  delete process.env[key];
}
