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
    expect(stores[0].db.prepare("SELECT version FROM schema_versions WHERE component = 'store'").get()).toEqual({ version: 2 });
    await Promise.all(stores.map((s) => s.close()));
  });

  it('adds the consent tables to a file made before them, keeping its data', async () => {
    const path = tempDb();
    const old = openSqliteStore(path);
    await old.accounts.createAccount({ id: 'acct-1', createdAt: 1, sealedProfile: 'sealed' });
    // Back to schema version 1: as a broker from before consents left the file.
    old.db.exec("DROP TABLE consents; DROP TABLE consent_versions; UPDATE schema_versions SET version = 1 WHERE component = 'store'");
    await old.close();

    const store = openSqliteStore(path);
    try {
      expect(store.db.prepare("SELECT version FROM schema_versions WHERE component = 'store'").get()).toEqual({ version: 2 });
      expect(await store.accounts.getAccount('acct-1')).toEqual({ id: 'acct-1', createdAt: 1, sealedProfile: 'sealed' });
      const c = { id: 'c1', version: 1, grantor: 'acct-1', status: 'active', record: 'jws', updatedAt: 1 };
      expect(await store.consents.create(c)).toBe(true);
      expect(await store.consents.listByGrantor('acct-1')).toEqual([c]);
    } finally {
      await store.close();
    }
  });

  it('commits consent writes with synchronous=FULL and puts NORMAL back', async () => {
    const store = openSqliteStore(tempDb());
    try {
      const seen: unknown[] = [];
      // Observe the setting inside the transaction: wrap the statement cache's first consent statement.
      const prepare = store.db.prepare.bind(store.db);
      store.db.prepare = ((sql: string) => {
        if (sql.startsWith('SELECT version FROM consents')) seen.push(prepare('PRAGMA synchronous').get()?.synchronous);
        return prepare(sql);
      }) as typeof store.db.prepare;
      const c = { id: 'c1', version: 1, grantor: 'a', status: 'active', record: 'jws', updatedAt: 1 };
      expect(await store.consents.create(c)).toBe(true);
      expect(seen).toEqual([2]);
      expect(store.db.prepare('PRAGMA synchronous').get()).toEqual({ synchronous: 1 });
      expect(await store.consents.update({ ...c, version: 2 }, 1)).toBe(true);
      expect(await store.consents.update({ ...c, version: 2 }, 1)).toBe(false);
      expect(store.db.prepare('PRAGMA synchronous').get()).toEqual({ synchronous: 1 });
    } finally {
      await store.close();
    }
  });

  it('lets one of 50 consent updates from one version through across two handles on one file', async () => {
    const path = tempDb();
    const [a, b] = [openSqliteStore(path), openSqliteStore(path)];
    try {
      for (let round = 0; round < 5; round++) {
        const v1 = { id: `consent-${round}`, version: 1, grantor: 'patient', status: 'proposed', record: 'v1', updatedAt: 1 };
        expect(await a.consents.create(v1)).toBe(true);
        expect(await b.consents.create({ ...v1, record: 'again' })).toBe(false);
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).consents.update({ ...v1, version: 2, grantee: `carer-${i}`, record: `v2-${i}` }, 1)),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        const winner = results.indexOf(true);
        expect(await b.consents.get(v1.id)).toMatchObject({ version: 2, grantee: `carer-${winner}` });
        expect((await a.consents.history(v1.id)).map((c) => c.record)).toEqual(['v1', `v2-${winner}`]);
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('keeps consent compare-and-set atomic across processes', async () => {
    const path = tempDb();
    const ids = Array.from({ length: 20 }, (_, i) => `consent-${i}`);
    const seed = openSqliteStore(path);
    for (const id of ids) await seed.consents.create({ id, version: 1, grantor: 'patient', status: 'proposed', record: 'v1', updatedAt: 1 });
    await seed.close();

    const module = pathToFileURL(join(import.meta.dirname, '../../src/store/sqlite/index.ts')).href;
    const startAt = Date.now() + 1500;
    const child = (n: number): string => `
      const { openSqliteStore } = await import(${JSON.stringify(module)});
      const store = openSqliteStore(${JSON.stringify(path)}, { busyTimeoutMs: 5000 });
      const ids = ${JSON.stringify(ids)};
      await new Promise((r) => setTimeout(r, ${startAt} - Date.now()));
      const won = [];
      for (const id of ids) {
        const next = { id, version: 2, grantor: 'patient', grantee: 'carer-${n}', status: 'active', record: 'v2-${n}', updatedAt: 2 };
        if (await store.consents.update(next, 1)) won.push(id + '=' + ${n});
      }
      await store.close();
      process.stdout.write(JSON.stringify(won));
    `;
    const outputs = await Promise.all(
      Array.from({ length: 4 }, (_, n) => run(process.execPath, ['--input-type=module', '--no-warnings', '-e', child(n)], { timeout: 20_000 })),
    );
    const won = outputs.flatMap(({ stdout }) => JSON.parse(stdout) as string[]);
    expect(won.map((w) => w.split('=')[0]).sort()).toEqual([...ids].sort());

    const check = openSqliteStore(path);
    try {
      for (const w of won) {
        const [id, n] = w.split('=');
        expect((await check.consents.history(id)).map((c) => c.record)).toEqual(['v1', `v2-${n}`]);
        expect((await check.consents.listByGrantee(`carer-${n}`)).map((c) => c.id)).toContain(id);
      }
    } finally {
      await check.close();
    }
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
