import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Redis } from 'ioredis';
import { exportJWK, generateKeyPair, type JSONWebKeySet } from 'jose';
import { createSealer, type Sealer } from '../../src/crypto/seal.ts';
import type { LedgerBackend } from '../../src/audit/backend.ts';
import { sqliteLedgerBackend } from '../../src/audit/backends/sqlite.ts';
import { redisLedgerBackend } from '../../src/audit/backends/redis.ts';
import type { CheckpointSigner } from '../../src/audit/checkpoint.ts';
import type { StoredEntry } from '../../src/audit/entry.ts';
import { canonicalJson } from '../../src/audit/chain.ts';

export interface Keys {
  sealKey: Buffer;
  sealer: Sealer;
  signer: CheckpointSigner;
  jwks: JSONWebKeySet;
  privateJwk: Record<string, unknown>;
}

export async function makeKeys(kid = 'audit-1'): Promise<Keys> {
  const sealKey = randomBytes(32);
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const pub = await exportJWK(publicKey);
  const priv = await exportJWK(privateKey);
  return {
    sealKey,
    sealer: createSealer([sealKey]),
    signer: { key: privateKey, kid },
    jwks: { keys: [{ ...pub, kid, alg: 'ES256', use: 'sig' }] },
    privateJwk: { ...priv, kid, alg: 'ES256' },
  };
}

/** Direct access to the storage, bypassing the ledger: what an attacker with a copy of the database has. */
export interface Raw {
  /** Every stored byte of entries, checkpoints and head, as text, for plaintext scans. */
  dumpText(): Promise<string>;
  /** Replaces all entries with these, each stored at the given position (seq column / stream id). */
  replaceEntries(rows: { seq: number; entry: StoredEntry }[]): Promise<void>;
  replaceCheckpoint(seq: number, jws: string): Promise<void>;
  /** Edits one stored column/field of one entry in place. */
  editField(seq: number, field: 'client' | 'details', value: string): Promise<void>;
}

export interface Harness {
  backend: LedgerBackend;
  raw: Raw;
  close(): Promise<void>;
}

export function sqliteHarness(): Harness & { path: string; db: DatabaseSync } {
  const dir = mkdtempSync(join(tmpdir(), 'audit-sqlite-'));
  const path = join(dir, 'broker.db');
  const db = new DatabaseSync(path);
  const backend = sqliteLedgerBackend(db);
  const raw: Raw = {
    async dumpText() {
      const rows = [
        ...db.prepare('SELECT * FROM audit_entries').all(),
        ...db.prepare('SELECT * FROM audit_checkpoints').all(),
        ...db.prepare('SELECT * FROM audit_head').all(),
      ];
      // The file bytes too (main file and WAL): a copied database is exactly what must not leak.
      const files = [path, `${path}-wal`].filter(existsSync).map((f) => readFileSync(f).toString('latin1'));
      return JSON.stringify(rows) + files.join('');
    },
    async replaceEntries(rows) {
      db.exec('BEGIN');
      db.exec('DELETE FROM audit_entries');
      const ins = db.prepare(
        'INSERT INTO audit_entries (seq, time, type, outcome, actor, actor_idx, subject, subject_idx, client, consent, request_id, details, personal, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      );
      for (const { seq, entry: e } of rows) {
        ins.run(seq, e.time, e.type, e.outcome, e.actor, e.actorIndex, e.subject, e.subjectIndex, e.client, e.consent, e.requestId, canonicalJson(e.details), e.personal, e.prev, e.hash);
      }
      db.exec('COMMIT');
    },
    async replaceCheckpoint(seq, jws) {
      db.prepare('UPDATE audit_checkpoints SET jws = ? WHERE seq = ?').run(jws, seq);
    },
    async editField(seq, field, value) {
      db.prepare(`UPDATE audit_entries SET ${field === 'client' ? 'client' : 'details'} = ? WHERE seq = ?`).run(value, seq);
    },
  };
  return {
    backend,
    raw,
    path,
    db,
    async close() {
      if (db.isOpen) db.close();
    },
  };
}

export function redisHarness(url: string): Harness & { redis: Redis; prefix: string } {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  const prefix = `test-${randomUUID()}:`;
  const backend = redisLedgerBackend(redis, { prefix });
  const stream = `${prefix}{audit}:entries`;
  const cps = `${prefix}{audit}:checkpoints`;
  const raw: Raw = {
    async dumpText() {
      const keys = await redis.keys(`${prefix}*`);
      const parts: string[] = [JSON.stringify(keys)];
      parts.push(JSON.stringify(await redis.xrange(stream, '-', '+')));
      parts.push(JSON.stringify(await redis.zrangebyscore(cps, '-inf', '+inf')));
      parts.push(JSON.stringify(await redis.hgetall(`${prefix}{audit}:head`)));
      for (const k of keys) parts.push(String(await redis.type(k)));
      return parts.join('\n');
    },
    async replaceEntries(rows) {
      await redis.del(stream);
      for (const { seq, entry } of rows) {
        const { seq: _s, ...rest } = entry;
        await redis.xadd(stream, `${seq}-0`, 'e', JSON.stringify(rest));
      }
    },
    async replaceCheckpoint(seq, jws) {
      await redis.zremrangebyscore(cps, seq, seq);
      await redis.zadd(cps, seq, `${seq}:${jws}`);
    },
    async editField(seq, field, value) {
      const all = await redis.xrange(stream, '-', '+');
      await redis.del(stream);
      for (const [id, fields] of all) {
        let body = fields[1];
        if (id === `${seq}-0`) {
          const obj = JSON.parse(body) as Record<string, unknown>;
          obj[field] = field === 'details' ? JSON.parse(value) : value;
          body = JSON.stringify(obj);
        }
        await redis.xadd(stream, id, 'e', body);
      }
    },
  };
  return {
    backend,
    raw,
    redis,
    prefix,
    async close() {
      redis.disconnect();
    },
  };
}
