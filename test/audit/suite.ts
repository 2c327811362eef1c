import { CompactSign, generateKeyPair } from 'jose';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { entryHash } from '../../src/audit/chain.ts';
import { CHECKPOINT_TYP } from '../../src/audit/checkpoint.ts';
import type { AuditEvent, StoredEntry } from '../../src/audit/entry.ts';
import { LedgerCorruptError } from '../../src/audit/errors.ts';
import { createLedger, type Ledger, type LedgerOptions } from '../../src/audit/ledger.ts';
import { createAuditMetrics } from '../../src/audit/metrics.ts';
import { verifyLedger } from '../../src/audit/verify.ts';
import { whoActedForMe } from '../../src/audit/whoActedForMe.ts';
import { makeKeys, type Harness, type Keys } from './helpers.ts';

const NHS_NUMBER = '9434765919';
const T0 = Date.parse('2025-01-01T00:00:00.000Z');

interface ManualClock {
  minute: number;
  clock: () => Date;
  at(i: number): Date;
}

/** A clock the test sets: `fill` puts entry i at minute i-1, so entry times are known exactly. */
function manualClock(): ManualClock {
  const c: ManualClock = { minute: 0, clock: () => new Date(T0 + 60_000 * c.minute), at: (i) => new Date(T0 + 60_000 * i) };
  return c;
}

function event(i: number, over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: 'token.issued',
    outcome: 'success',
    actor: `carer-${i % 3}`,
    subject: `patient-${i % 5}`,
    client: `client-${i % 2}`,
    consent: `consent-${i % 4}`,
    requestId: `req-${i}`,
    details: { grant_type: 'authorization_code', scope: 'openid patient/*.read', n: i },
    ...over,
  };
}

/** The stored entries re-chained from `from` on, as an attacker who recomputes hashes would. */
function rechain(entries: StoredEntry[], fromIndex: number): StoredEntry[] {
  const out = entries.slice(0, fromIndex);
  let prev = fromIndex > 0 ? out[fromIndex - 1].hash : '0'.repeat(64);
  for (let i = fromIndex; i < entries.length; i++) {
    const e = { ...entries[i], seq: i + 1, prev };
    const { hash: _h, ...unhashed } = e;
    const hash = entryHash(prev, unhashed);
    out.push({ ...e, hash });
    prev = hash;
  }
  return out;
}

export function ledgerSuite(name: string, make: () => Promise<Harness> | Harness): void {
  describe(`audit ledger on ${name}`, () => {
    let harness: Harness | undefined;
    let ledger: Ledger | undefined;
    let keys: Keys;

    afterEach(async () => {
      await ledger?.close();
      await harness?.close();
      ledger = undefined;
      harness = undefined;
    });

    async function setup(options: LedgerOptions = {}): Promise<{ ledger: Ledger; harness: Harness }> {
      keys = await makeKeys();
      harness = await make();
      ledger = createLedger(harness.backend, keys.sealer, keys.signer, { checkpointEvery: 10, checkpointIntervalSeconds: 0, ...options });
      return { ledger, harness };
    }

    async function fill(l: Ledger, n: number, over: (i: number) => Partial<AuditEvent> = () => ({}), clock?: ManualClock): Promise<StoredEntry[]> {
      const out: StoredEntry[] = [];
      for (let i = 1; i <= n; i++) {
        if (clock) clock.minute = i - 1;
        out.push(await l.append(event(i, over(i))));
      }
      return out;
    }

    it('appends, reads back in order and opens sealed fields', async () => {
      const { ledger } = await setup();
      const appended = await fill(ledger, 5, () => ({ personal: { nhs_number: NHS_NUMBER, name: 'Jane Smith' } }));
      expect(appended.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
      const read = await ledger.read({ fromSeq: 1, toSeq: 10 });
      expect(read).toEqual(appended);
      expect(read[0].prev).toBe('0'.repeat(64));
      for (let i = 1; i < read.length; i++) expect(read[i].prev).toBe(read[i - 1].hash);
      expect(read[0].actor).not.toBe('carer-1');
      const opened = ledger.open(read[0]);
      expect(opened.actor).toBe('carer-1');
      expect(opened.subject).toBe('patient-1');
      expect(opened.personal).toEqual({ nhs_number: NHS_NUMBER, name: 'Jane Smith' });
      expect(await ledger.head()).toEqual({ seq: 5, hash: read[4].hash, time: read[4].time });
      expect(await ledger.read({ fromSeq: 2, limit: 2 })).toEqual(appended.slice(1, 3));
    });

    it('queries by subject, actor, client, consent, type and time, with order and cursors', async () => {
      const c = manualClock();
      const { ledger } = await setup({ clock: c.clock });
      await fill(ledger, 40, (i) => (i % 10 === 0 ? { type: 'consent.revoked' } : {}), c);
      const bySubject = await ledger.query({ subject: 'patient-2' });
      expect(bySubject.map((e) => e.seq)).toEqual([2, 7, 12, 17, 22, 27, 32, 37]);
      const byActor = await ledger.query({ actor: 'carer-0', order: 'desc', limit: 3 });
      expect(byActor.map((e) => e.seq)).toEqual([39, 36, 33]);
      const both = await ledger.query({ subject: 'patient-1', client: 'client-0' });
      expect(both.map((e) => e.seq)).toEqual([6, 16, 26, 36]);
      expect((await ledger.query({ consent: 'consent-3', limit: 100 })).map((e) => e.seq)).toEqual([3, 7, 11, 15, 19, 23, 27, 31, 35, 39]);
      expect((await ledger.query({ type: 'consent.revoked' })).map((e) => e.seq)).toEqual([10, 20, 30, 40]);
      // Entry i was stamped at minute i-1; from is inclusive, to exclusive.
      const window = await ledger.query({ from: c.at(9), to: c.at(14) });
      expect(window.map((e) => e.seq)).toEqual([10, 11, 12, 13, 14]);
      const windowed = await ledger.query({ from: c.at(9).toISOString(), to: c.at(30), client: 'client-1', order: 'desc' });
      expect(windowed.map((e) => e.seq)).toEqual([29, 27, 25, 23, 21, 19, 17, 15, 13, 11]);
      const page1 = await ledger.query({ client: 'client-0', limit: 4 });
      const page2 = await ledger.query({ client: 'client-0', limit: 4, afterSeq: page1[3].seq });
      expect([...page1, ...page2].map((e) => e.seq)).toEqual([2, 4, 6, 8, 10, 12, 14, 16]);
      const all: number[] = [];
      for await (const e of ledger.scan({ subject: 'patient-0', limit: 2 })) all.push(e.seq);
      expect(all).toEqual([5, 10, 15, 20, 25, 30, 35, 40]);
      expect(await ledger.query({ subject: 'nobody' })).toEqual([]);
      await expect(ledger.query({ limit: 0 })).rejects.toThrow(/invalid ledger query/);
    });

    it('answers queries over many entries, including ones appended since the last search-index batch', async () => {
      const { ledger } = await setup({ checkpointEvery: 100 });
      await fill(ledger, 300);
      expect((await ledger.query({ actor: 'carer-1', limit: 1000 })).map((e) => e.seq)).toEqual(Array.from({ length: 100 }, (_, i) => 3 * i + 1));
      await fill(ledger, 20);
      const latest = await ledger.query({ subject: 'patient-3', order: 'desc', limit: 3 });
      expect(latest.map((e) => e.seq)).toEqual([318, 313, 308]);
      const consent = await ledger.query({ consent: 'consent-0', afterSeq: 296, limit: 5 });
      expect(consent.map((e) => e.seq)).toEqual([300, 304, 308, 312, 316]);
    });

    it('keeps personal data and identities out of the raw storage', async () => {
      const { ledger, harness } = await setup();
      await ledger.append({
        type: 'upstream.login.success',
        outcome: 'success',
        actor: 'account-7f3a',
        subject: 'account-7f3a',
        details: { provider: 'nhs-login', vot: 'P9.Cp.Cd', patient: { nhs_number: NHS_NUMBER }, note: `verified ${NHS_NUMBER.slice(0, 3)}` },
        personal: { given_name: 'Zebedee', family_name: 'Quillfeather' },
      });
      // An NHS number slipped into details by mistake, spaced the way people write it.
      const e = await ledger.append({ type: 'account.linked', outcome: 'success', subject: 'account-7f3a', details: { linked: '943 476 5919' } });
      const text = await harness.raw.dumpText();
      for (const secret of [NHS_NUMBER, '943 476 5919', 'Zebedee', 'Quillfeather', 'account-7f3a']) expect(text).not.toContain(secret);
      expect(e.details).toEqual({});
      expect(ledger.open(e).personal).toEqual({ linked: '943 476 5919' });
      const first = (await ledger.read())[0];
      expect(first.details).toEqual({ provider: 'nhs-login', vot: 'P9.Cp.Cd', patient: {}, note: 'verified 943' });
      expect(ledger.open(first).personal).toEqual({ 'patient.nhs_number': NHS_NUMBER, given_name: 'Zebedee', family_name: 'Quillfeather' });
      expect((await verifyLedger(harness.backend, keys.jwks)).ok).toBe(true);
    });

    it('drops anything that looks like a secret from details', async () => {
      const { ledger, harness } = await setup();
      const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl';
      const e = await ledger.append({
        type: 'token.exchanged',
        outcome: 'success',
        details: {
          grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
          access_token: 'at-SECRET-1',
          refresh_token: 'rt-SECRET-2',
          nested: { client_secret: 'cs-SECRET-3', password: 'pw-SECRET-4', ok: 1, list: [jwt, 'fine'] },
          code: 'code-SECRET-5',
          assertion: 'saml-SECRET-6',
          private_key: '-----BEGIN PRIVATE KEY-----SECRET-7',
          idToken: 'id-SECRET-8',
          header: 'Bearer abcdefghijklmnop-SECRET-9',
        },
        personal: { password: 'pw-SECRET-10', name: 'Ann' },
      });
      expect(e.details).toEqual({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        nested: { ok: 1, list: ['fine'] },
        _redacted: ['access_token', 'refresh_token', 'nested.client_secret', 'nested.password', 'nested.list[0]', 'code', 'assertion', 'private_key', 'idToken', 'header', 'personal.password'],
      });
      expect(ledger.open(e).personal).toEqual({ name: 'Ann' });
      const text = await harness.raw.dumpText();
      expect(text).not.toMatch(/SECRET/);
      expect(text).not.toContain(jwt);
      await expect(ledger.append({ type: 'token.issued', outcome: 'success', token: 'x' } as AuditEvent)).rejects.toThrow(/invalid audit event/);
      await expect(ledger.append({ type: 'not.a.type', outcome: 'success' } as unknown as AuditEvent)).rejects.toThrow(/invalid audit event/);
    });

    it('verifies an honest chain with checkpoints', async () => {
      const { ledger, harness } = await setup();
      const entries = await fill(ledger, 55);
      const res = await verifyLedger(harness.backend, keys.jwks, { batchSize: 7 });
      expect(res).toEqual({ ok: true, count: 55, firstSeq: 1, head: { seq: 55, hash: entries[54].hash }, checkpoints: 5, lastCheckpointSeq: 50 });
      expect(await ledger.checkpoint()).toMatchObject({ seq: 55 });
      expect((await verifyLedger(harness.backend, keys.jwks)).ok).toBe(true);
      const empty = await make();
      expect(await verifyLedger(empty.backend, keys.jwks)).toMatchObject({ ok: true, count: 0, head: { seq: 0 } });
      await empty.close();
    });

    describe('tampering is found at exactly the sequence number', () => {
      async function tampered(mutate: (entries: StoredEntry[], h: Harness) => Promise<void>): Promise<unknown> {
        const { ledger, harness } = await setup();
        const entries = await fill(ledger, 60);
        expect((await verifyLedger(harness.backend, keys.jwks)).ok).toBe(true);
        await mutate(entries, harness);
        return verifyLedger(harness.backend, keys.jwks, { batchSize: 16 });
      }
      const at = (rows: StoredEntry[]) => rows.map((entry, i) => ({ seq: i + 1, entry }));

      it('one field of one entry changed', async () => {
        const res = await tampered((_e, h) => h.raw.editField(17, 'client', 'evil-client'));
        expect(res).toMatchObject({ ok: false, firstBadSeq: 17 });
      });

      it('details of one entry changed', async () => {
        const res = await tampered((_e, h) => h.raw.editField(33, 'details', '{"grant_type":"authorization_code","n":34,"scope":"openid"}'));
        expect(res).toMatchObject({ ok: false, firstBadSeq: 33 });
      });

      it('one entry deleted', async () => {
        const res = await tampered((e, h) => h.raw.replaceEntries(at(e).filter((r) => r.seq !== 23)));
        expect(res).toMatchObject({ ok: false, firstBadSeq: 23, reason: expect.stringMatching(/missing/) });
      });

      it('one entry deleted and the rest renumbered', async () => {
        const res = await tampered((e, h) => h.raw.replaceEntries(at(e.filter((x) => x.seq !== 23))));
        expect(res).toMatchObject({ ok: false, firstBadSeq: 23 });
      });

      it('the last entry deleted', async () => {
        const res = await tampered((e, h) => h.raw.replaceEntries(at(e.slice(0, 59))));
        expect(res).toMatchObject({ ok: false, firstBadSeq: 60 });
      });

      it('two entries swapped', async () => {
        const res = await tampered((e, h) => {
          const rows = e.slice();
          [rows[29], rows[30]] = [rows[30], rows[29]];
          return h.raw.replaceEntries(at(rows));
        });
        expect(res).toMatchObject({ ok: false, firstBadSeq: 30 });
      });

      it('two distant entries swapped', async () => {
        const res = await tampered((e, h) => {
          const rows = e.slice();
          [rows[11], rows[44]] = [rows[44], rows[11]];
          return h.raw.replaceEntries(at(rows));
        });
        expect(res).toMatchObject({ ok: false, firstBadSeq: 12 });
      });

      it('one entry inserted (copied from elsewhere)', async () => {
        const res = await tampered((e, h) => {
          const rows = e.slice();
          rows.splice(39, 0, { ...e[5] });
          return h.raw.replaceEntries(at(rows));
        });
        expect(res).toMatchObject({ ok: false, firstBadSeq: 40 });
      });

      it('one entry inserted with a correctly computed link', async () => {
        const res = await tampered((e, h) => {
          const forged = { ...e[40], seq: 42, type: 'consent.accepted' as const, prev: e[40].hash };
          const { hash: _h, ...unhashed } = forged;
          const rows = [...e.slice(0, 41), { ...forged, hash: entryHash(e[40].hash, unhashed) }, ...e.slice(41)];
          return h.raw.replaceEntries(at(rows));
        });
        expect(res).toMatchObject({ ok: false, firstBadSeq: 42, reason: expect.stringMatching(/entry 42 was inserted/) });
      });

      it('an entry changed and every later hash recomputed is caught by the next checkpoint', async () => {
        const res = await tampered((e, h) => {
          const rows = e.slice();
          rows[43] = { ...rows[43], client: 'evil-client' };
          return h.raw.replaceEntries(at(rechain(rows, 43)));
        });
        expect(res).toMatchObject({ ok: false, firstBadSeq: 50, reason: expect.stringMatching(/after 40 were changed, inserted or rewritten/) });
      });

      it('a checkpoint signed by another key', async () => {
        const res = await tampered(async (e, h) => {
          const other = await generateKeyPair('ES256');
          const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify({ seq: 30, head: e[29].hash, iat: 1 })))
            .setProtectedHeader({ alg: 'ES256', kid: 'audit-1', typ: CHECKPOINT_TYP })
            .sign(other.privateKey);
          await h.raw.replaceCheckpoint(30, jws);
        });
        expect(res).toMatchObject({ ok: false, firstBadSeq: 30, reason: expect.stringMatching(/signature invalid/) });
      });

      it('a checkpoint whose payload was edited', async () => {
        const res = await tampered(async (e, h) => {
          const cps = await h.backend.checkpoints();
          const cp = cps.find((c) => c.seq === 20);
          if (!cp) throw new Error('no checkpoint at 20');
          const [hdr, , sig] = cp.jws.split('.');
          const payload = Buffer.from(JSON.stringify({ seq: 20, head: e[20].hash, iat: 1 })).toString('base64url');
          await h.raw.replaceCheckpoint(20, `${hdr}.${payload}.${sig}`);
        });
        expect(res).toMatchObject({ ok: false, firstBadSeq: 20 });
      });
    });

    it('prunes whole old segments and stays verifiable from the anchor checkpoint', async () => {
      const c = manualClock();
      const { ledger, harness } = await setup({ clock: c.clock });
      await fill(ledger, 95, () => ({}), c);
      // Entry i is at minute i-1; entries 1..44 are before minute 44, so the newest checkpoint among them is 40.
      const result = await ledger.prune(c.at(44));
      expect(result).toEqual({ removed: 40, anchorSeq: 40 });
      expect(await harness.backend.firstSeq()).toBe(41);
      expect((await harness.backend.checkpoints()).map((cp) => cp.seq)).toEqual([40, 50, 60, 70, 80, 90]);
      const res = await verifyLedger(harness.backend, keys.jwks);
      expect(res).toMatchObject({ ok: true, count: 56, firstSeq: 41, head: { seq: 96 } });
      const last = (await ledger.read({ fromSeq: 96 }))[0];
      expect(last).toMatchObject({ type: 'audit.pruned', details: { anchorSeq: 40, removed: 40 } });
      // Queries no longer see pruned entries (and their index entries are gone with them).
      expect((await ledger.query({ subject: 'patient-2' })).map((e) => e.seq)).toEqual([42, 47, 52, 57, 62, 67, 72, 77, 82, 87, 92]);
      expect(await ledger.prune(c.at(44))).toEqual({ removed: 0, anchorSeq: null });
      await ledger.append(event(1));
      expect((await verifyLedger(harness.backend, keys.jwks)).ok).toBe(true);

      // The anchor is what vouches for everything removed: altering it must fail verification there.
      const cps = await harness.backend.checkpoints();
      const anchor = cps[0];
      const [hdr, payload, sig] = anchor.jws.split('.');
      const bad = `${hdr}.${payload}.${sig.slice(0, -4)}${sig.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
      await harness.raw.replaceCheckpoint(40, bad);
      expect(await verifyLedger(harness.backend, keys.jwks)).toMatchObject({ ok: false, firstBadSeq: 40, reason: expect.stringMatching(/anchor checkpoint/) });
      await harness.raw.replaceCheckpoint(40, anchor.jws);
      expect((await verifyLedger(harness.backend, keys.jwks)).ok).toBe(true);
    });

    it('refuses to prune a segment that was tampered with', async () => {
      const c = manualClock();
      const { ledger, harness } = await setup({ clock: c.clock });
      await fill(ledger, 30, () => ({}), c);
      await harness.raw.editField(5, 'client', 'evil');
      await expect(ledger.prune(c.at(25))).rejects.toBeInstanceOf(LedgerCorruptError);
      expect(await harness.backend.firstSeq()).toBe(1);
      expect(await verifyLedger(harness.backend, keys.jwks)).toMatchObject({ ok: false, firstBadSeq: 5 });
    });

    it('detects entries removed without an anchoring checkpoint', async () => {
      const { ledger, harness } = await setup();
      const entries = await fill(ledger, 25);
      await harness.raw.replaceEntries(entries.slice(14).map((entry) => ({ seq: entry.seq, entry })));
      expect(await verifyLedger(harness.backend, keys.jwks)).toMatchObject({ ok: false, firstBadSeq: 11 });
    });

    it('answers "who acted for me" newest first', async () => {
      const { ledger } = await setup();
      await ledger.append({ type: 'token.issued', outcome: 'success', actor: 'patient-a', subject: 'patient-a', client: 'app', details: { scope: 'openid' } });
      await ledger.append({ type: 'token.issued', outcome: 'success', actor: 'carer-b', subject: 'patient-a', client: 'app', consent: 'c-1', details: { act: { sub: 'carer-b' }, scope: 'patient/*.read' } });
      await ledger.append({ type: 'token.issued', outcome: 'success', actor: 'carer-b', subject: 'patient-z', client: 'app', consent: 'c-9', details: { act: { sub: 'carer-b' } } });
      await ledger.append({ type: 'consent.accepted', outcome: 'success', actor: 'carer-b', subject: 'patient-a', consent: 'c-1', details: { act: { sub: 'carer-b' } } });
      await ledger.append({ type: 'token.exchanged', outcome: 'success', actor: 'svc', subject: 'patient-a', client: 'fhir-svc', consent: 'c-1', details: { act: { sub: 'svc', act: { sub: 'carer-b' } }, audience: 'https://fhir.example' } });
      const list = await whoActedForMe(ledger, 'patient-a');
      expect(list).toEqual([
        expect.objectContaining({ seq: 5, type: 'token.exchanged', actors: ['svc', 'carer-b'], consent: 'c-1', client: 'fhir-svc', audience: 'https://fhir.example' }),
        expect.objectContaining({ seq: 2, type: 'token.issued', actors: ['carer-b'], consent: 'c-1', scope: 'patient/*.read' }),
      ]);
      expect(await whoActedForMe(ledger, 'patient-a', { limit: 1 })).toHaveLength(1);
      expect(await whoActedForMe(ledger, 'nobody')).toEqual([]);
    });

    it('signs a checkpoint on a timer when the head moved', async () => {
      const { ledger, harness } = await setup({ checkpointEvery: 0, checkpointIntervalSeconds: 0.05 });
      await fill(ledger, 3);
      const deadline = Date.now() + 3000;
      while ((await harness.backend.latestCheckpoint())?.seq !== 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect((await harness.backend.latestCheckpoint())?.seq).toBe(3);
      expect((await verifyLedger(harness.backend, keys.jwks)).ok).toBe(true);
    });

    it('counts entries and append latency on the given registry', async () => {
      const registry = new Registry();
      const { ledger } = await setup({ metrics: createAuditMetrics(registry) });
      await fill(ledger, 4, (i) => (i === 4 ? { type: 'replay.detected', outcome: 'failure' } : {}));
      const text = await registry.metrics();
      expect(text).toMatch(/broker_audit_entries_total\{type="token.issued",outcome="success"\} 3/);
      expect(text).toMatch(/broker_audit_entries_total\{type="replay.detected",outcome="failure"\} 1/);
      expect(text).toMatch(new RegExp(`broker_audit_append_duration_seconds_count\\{backend="${harness?.backend.kind}"\\} 4`));
    });
  });
}
