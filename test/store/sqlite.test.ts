import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import { openStore } from '../../src/store/open.ts';
import { openSqliteDatabase, openSqliteStore, type SqliteStore } from '../../src/store/sqlite/index.ts';
import { storeContract } from './contract.ts';

const run = promisify(execFile);
const dirs: string[] = [];

function tempDb(): string {
  const dir = mkdtempSync(join(tmpdir(), 'broker-sqlite-'));
  dirs.push(dir);
  return join(dir, 'broker.db');
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

storeContract('sqlite (file)', async () => openSqliteStore(tempDb()));
storeContract('sqlite (:memory:)', async () => openSqliteStore(':memory:'));

describe('sqlite store', () => {
  it('runs the file in WAL mode with synchronous=NORMAL and a busy timeout', async () => {
    const store = openSqliteStore(tempDb());
    try {
      expect(store.db.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
      expect(store.db.prepare('PRAGMA synchronous').get()).toEqual({ synchronous: 1 });
      expect(store.db.prepare('PRAGMA busy_timeout').get()).toEqual({ timeout: 2000 });
    } finally {
      await store.close();
    }
  });

  it('lets one of 50 consumes through across two handles on one file', async () => {
    const path = tempDb();
    const [a, b] = [openSqliteStore(path), openSqliteStore(path)];
    try {
      for (let round = 0; round < 5; round++) {
        const id = `code-${round}`;
        await a.oidc.upsert('AuthorizationCode', id, { grantId: 'g' }, 60);
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).oidc.consume('AuthorizationCode', id)));
        expect(results.filter(Boolean)).toHaveLength(1);
      }
      const links = await Promise.all(
        Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).accounts.createLink({ provider: 'p', subject: 's', accountId: `acct-${i}`, evidence: 'jit', createdAt: 1 })),
      );
      expect(links.filter((r) => r.created)).toHaveLength(1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('keeps consume and rememberOnce atomic across processes', async () => {
    const path = tempDb();
    const ids = Array.from({ length: 40 }, (_, i) => `rt-${i}`);
    const seed = openSqliteStore(path);
    for (const id of ids) await seed.oidc.upsert('RefreshToken', id, { grantId: 'g' }, 600);
    await seed.close();

    // Each child opens the file itself, waits for a common start instant, then races for every id.
    const module = pathToFileURL(join(import.meta.dirname, '../../src/store/sqlite/index.ts')).href;
    const startAt = Date.now() + 1500;
    const child = `
      const { openSqliteStore } = await import(${JSON.stringify(module)});
      const store = openSqliteStore(${JSON.stringify(path)}, { busyTimeoutMs: 5000 });
      const ids = ${JSON.stringify(ids)};
      await new Promise((r) => setTimeout(r, ${startAt} - Date.now()));
      const won = [];
      for (const id of ids) {
        if (await store.oidc.consume('RefreshToken', id)) won.push('consume:' + id);
        if (await store.replay.rememberOnce('jti:' + id, 600)) won.push('replay:' + id);
      }
      await store.close();
      process.stdout.write(JSON.stringify(won));
    `;
    const outputs = await Promise.all(
      Array.from({ length: 4 }, () => run(process.execPath, ['--input-type=module', '--no-warnings', '-e', child], { timeout: 20_000 })),
    );
    const won = outputs.flatMap(({ stdout }) => JSON.parse(stdout) as string[]);
    expect(won.sort()).toEqual([...ids.map((id) => `consume:${id}`), ...ids.map((id) => `replay:${id}`)].sort());
  });

  it('fails with StoreUnavailableError once closed', async () => {
    const store = openSqliteStore(':memory:');
    await store.close();
    await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.oidc.consume('AuthorizationCode', 'x')).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.accounts.createLink({ provider: 'p', subject: 's', accountId: 'a', evidence: 'e', createdAt: 1 })).rejects.toBeInstanceOf(
      StoreUnavailableError,
    );
    await expect(store.replay.rememberOnce('k', 1)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.close()).resolves.toBeUndefined();
  });

  it('fails with StoreUnavailableError when the write lock is held beyond busy_timeout', async () => {
    const path = tempDb();
    const store = openSqliteStore(path, { busyTimeoutMs: 100 });
    const holder = openSqliteDatabase(path);
    try {
      await store.oidc.upsert('AuthorizationCode', 'held', {}, 60);
      holder.exec('BEGIN IMMEDIATE');
      const started = Date.now();
      await expect(store.oidc.consume('AuthorizationCode', 'held')).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.accounts.setIdentifier('k', 'v', 'a')).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(1000);
      holder.exec('ROLLBACK');
      expect(await store.oidc.consume('AuthorizationCode', 'held')).toBe(true);
    } finally {
      holder.close();
      await store.close();
    }
  });

  it('purges expired rows', async () => {
    const store: SqliteStore = openSqliteStore(':memory:', { purgeIntervalMs: 0 });
    try {
      await store.oidc.upsert('Session', 'gone', {}, 0.05);
      await store.oidc.upsert('Session', 'kept', {}, 60);
      await store.replay.rememberOnce('gone', 0.05);
      await store.rateLimits.hit('gone', 0.05);
      await new Promise((r) => setTimeout(r, 100));
      await store.purgeExpired();
      const count = (table: string): unknown => store.db.prepare(`SELECT count(*) AS n FROM ${table}`).get()?.n;
      expect(count('oidc_models')).toBe(1);
      expect(count('replay')).toBe(0);
      expect(count('rate_limits')).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('refuses a file migrated by a newer broker', async () => {
    const path = tempDb();
    const db = openSqliteDatabase(path);
    db.exec("UPDATE schema_versions SET version = 99 WHERE component = 'store'");
    db.close();
    expect(() => openSqliteStore(path)).toThrow(/newer than this broker/);
  });

  it('lets several stores migrate one new file at once', async () => {
    const path = tempDb();
    const stores = Array.from({ length: 3 }, () => openSqliteStore(path));
    await Promise.all(stores.map((s) => s.ping()));
    expect(stores[0].db.prepare("SELECT version FROM schema_versions WHERE component = 'store'").get()).toEqual({ version: 1 });
    await Promise.all(stores.map((s) => s.close()));
  });
});

describe('openStore', () => {
  it('opens sqlite for sqlite: URLs', async () => {
    const memory = openStore('sqlite::memory:');
    const file = openStore(`sqlite:${tempDb()}`);
    const absolute = openStore(`sqlite://${tempDb()}`);
    try {
      expect([memory.kind, file.kind, absolute.kind]).toEqual(['sqlite', 'sqlite', 'sqlite']);
      await file.replay.rememberOnce('k', 60);
      expect(await file.replay.has('k')).toBe(true);
      expect(await absolute.replay.has('k')).toBe(false);
    } finally {
      await Promise.all([memory.close(), file.close(), absolute.close()]);
    }
  });

  it('refuses unknown schemes and ambiguous sqlite URLs with a clear message', () => {
    expect(() => openStore('postgres://user:secret@db/broker')).toThrow(/unsupported store URL scheme "postgres:"/);
    expect(() => openStore('postgres://user:secret@db/broker')).not.toThrow(/secret/);
    expect(() => openStore('./data/broker.db')).toThrow(/unsupported store URL scheme/);
    expect(() => openStore('sqlite:')).toThrow(/needs a path/);
    expect(() => openStore('sqlite://relative.db')).toThrow(/ambiguous/);
  });
});
