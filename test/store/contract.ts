// The store conformance suite (after Dex's storage/conformance): every backend runs exactly these tests.
// Tests use fresh random ids, so they never depend on each other or on what the store held before; that
// lets them run concurrently (the TTL tests mostly wait), which also puts the store under mixed load.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Link, OidcPayload, Store, StoredConsent, StoredKey } from '../../src/store/contracts.ts';

const PARALLEL = 50;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function fresh(label: string): string {
  return `${label}-${randomUUID()}`;
}

function parallel<T>(n: number, op: (i: number) => Promise<T>): Promise<T[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => op(i)));
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export function storeContract(name: string, open: () => Promise<Store>, cleanup?: () => Promise<void>): void {
  describe.concurrent(`store contract: ${name}`, () => {
    let store: Store;

    beforeAll(async () => {
      store = await open();
    });

    afterAll(async () => {
      await store?.close();
      await cleanup?.();
    });

    it('answers ping and names its kind', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
      expect(['sqlite', 'redis']).toContain(store.kind);
    });

    describe('oidc models', () => {
      it('round-trips a payload exactly', async () => {
        const id = fresh('rt');
        const payload: OidcPayload = {
          iat: 1_712_345_678,
          exp: 1_712_349_278,
          accountId: 'acc-1',
          scope: 'openid profile',
          // Shapes a naive JSON rewrite would damage: empty array and object, unicode, precise floats.
          resource: [],
          claims: { id_token: { acr: { essential: true, values: ['urn:aal3'] } } },
          extra: {},
          ratio: 0.1234567890123456,
          note: 'Zoë — ✓ {braces} : colons',
          flag: false,
          nothing: null,
          grantId: fresh('grant'),
        };
        await store.oidc.upsert('AccessToken', id, payload, 60);
        expect(await store.oidc.find('AccessToken', id)).toEqual(payload);
        expect(await store.oidc.find('AccessToken', fresh('missing'))).toBeUndefined();
        expect(await store.oidc.find('RefreshToken', id)).toBeUndefined();
      });

      it('stores a record without expiry', async () => {
        const id = fresh('forever');
        await store.oidc.upsert('Client', id, { client_id: id }, undefined);
        expect(await store.oidc.find('Client', id)).toEqual({ client_id: id });
      });

      it('upsert replaces the payload and its indexes', async () => {
        const id = fresh('replace');
        const [uid1, uid2, grant1, grant2] = [fresh('uid'), fresh('uid'), fresh('grant'), fresh('grant')];
        await store.oidc.upsert('Session', id, { uid: uid1, grantId: grant1, v: 1 }, 60);
        await store.oidc.upsert('Session', id, { uid: uid2, grantId: grant2, v: 2 }, 60);

        expect(await store.oidc.find('Session', id)).toEqual({ uid: uid2, grantId: grant2, v: 2 });
        expect(await store.oidc.findByUid('Session', uid1)).toBeUndefined();
        expect(await store.oidc.findByUid('Session', uid2)).toEqual({ uid: uid2, grantId: grant2, v: 2 });

        await store.oidc.revokeByGrantId('Session', grant1);
        expect(await store.oidc.find('Session', id)).toBeDefined();
        await store.oidc.revokeByGrantId('Session', grant2);
        expect(await store.oidc.find('Session', id)).toBeUndefined();
      });

      it('keeps `consumed` given in an upserted payload', async () => {
        const id = fresh('preconsumed');
        await store.oidc.upsert('RefreshToken', id, { accountId: 'a', consumed: 1_700_000_000 }, 60);
        expect(await store.oidc.find('RefreshToken', id)).toEqual({ accountId: 'a', consumed: 1_700_000_000 });
        expect(await store.oidc.consume('RefreshToken', id)).toBe(false);
      });

      it('finds by uid and by userCode, within one model only', async () => {
        const [id1, id2, uid, userCode] = [fresh('id'), fresh('id'), fresh('uid'), fresh('UC')];
        await store.oidc.upsert('Interaction', id1, { uid, kind: 'interaction' }, 60);
        await store.oidc.upsert('DeviceCode', id2, { userCode, kind: 'device' }, 60);

        expect(await store.oidc.findByUid('Interaction', uid)).toEqual({ uid, kind: 'interaction' });
        expect(await store.oidc.findByUserCode('DeviceCode', userCode)).toEqual({ userCode, kind: 'device' });
        expect(await store.oidc.findByUid('Session', uid)).toBeUndefined();
        expect(await store.oidc.findByUserCode('Interaction', userCode)).toBeUndefined();
        expect(await store.oidc.findByUid('Interaction', fresh('nouid'))).toBeUndefined();
        expect(await store.oidc.findByUserCode('DeviceCode', fresh('NOUC'))).toBeUndefined();
      });

      it('expires records after expiresIn, and consume keeps the expiry', async () => {
        const [short, forever, consumed, long, uid] = [fresh('short'), fresh('forever'), fresh('consumed'), fresh('long'), fresh('uid')];
        await store.oidc.upsert('AuthorizationCode', short, { uid, n: 1 }, 1);
        await store.oidc.upsert('AuthorizationCode', forever, { n: 2 }, undefined);
        await store.oidc.upsert('AuthorizationCode', consumed, { n: 3 }, 1);
        await store.oidc.upsert('AuthorizationCode', long, { n: 4 }, 60);
        expect(await store.oidc.consume('AuthorizationCode', consumed)).toBe(true);
        expect(await store.oidc.findByUid('AuthorizationCode', uid)).toEqual({ uid, n: 1 });

        await sleep(1200);

        expect(await store.oidc.find('AuthorizationCode', short)).toBeUndefined();
        expect(await store.oidc.findByUid('AuthorizationCode', uid)).toBeUndefined();
        expect(await store.oidc.consume('AuthorizationCode', short)).toBe(false);
        expect(await store.oidc.find('AuthorizationCode', consumed)).toBeUndefined();
        expect(await store.oidc.find('AuthorizationCode', forever)).toEqual({ n: 2 });
        expect(await store.oidc.find('AuthorizationCode', long)).toEqual({ n: 4 });
      });

      it('consume marks a record once, with epoch seconds', async () => {
        const id = fresh('code');
        await store.oidc.upsert('AuthorizationCode', id, { accountId: 'acc', scope: 'openid' }, 60);
        const before = nowSeconds();
        expect(await store.oidc.consume('AuthorizationCode', id)).toBe(true);
        const after = nowSeconds();

        const record = await store.oidc.find('AuthorizationCode', id);
        expect(record).toMatchObject({ accountId: 'acc', scope: 'openid' });
        expect(typeof record?.consumed).toBe('number');
        expect(record?.consumed).toBeGreaterThanOrEqual(before);
        expect(record?.consumed).toBeLessThanOrEqual(after);

        expect(await store.oidc.consume('AuthorizationCode', id)).toBe(false);
        expect(await store.oidc.consume('AuthorizationCode', fresh('missing'))).toBe(false);
        expect(await store.oidc.consume('RefreshToken', id)).toBe(false);
        // consume on a missing record must not create one.
        expect(await store.oidc.find('RefreshToken', id)).toBeUndefined();
      });

      it('destroy removes the record and its lookups', async () => {
        const [id, uid] = [fresh('sess'), fresh('uid')];
        await store.oidc.upsert('Session', id, { uid }, 60);
        await store.oidc.upsert('Grant', id, { kept: true }, 60);
        await store.oidc.destroy('Session', id);
        expect(await store.oidc.find('Session', id)).toBeUndefined();
        expect(await store.oidc.findByUid('Session', uid)).toBeUndefined();
        expect(await store.oidc.consume('Session', id)).toBe(false);
        expect(await store.oidc.find('Grant', id)).toEqual({ kept: true });
        await expect(store.oidc.destroy('Session', fresh('missing'))).resolves.toBeUndefined();
      });

      it("revokeByGrantId removes only that grant's records of that model", async () => {
        const [grant, other] = [fresh('grant'), fresh('grant')];
        const [at1, at2, atOther, rt] = [fresh('at'), fresh('at'), fresh('at'), fresh('rt')];
        await store.oidc.upsert('AccessToken', at1, { grantId: grant }, 60);
        await store.oidc.upsert('AccessToken', at2, { grantId: grant }, undefined);
        await store.oidc.upsert('AccessToken', atOther, { grantId: other }, 60);
        await store.oidc.upsert('RefreshToken', rt, { grantId: grant }, 60);

        await store.oidc.revokeByGrantId('AccessToken', grant);

        expect(await store.oidc.find('AccessToken', at1)).toBeUndefined();
        expect(await store.oidc.find('AccessToken', at2)).toBeUndefined();
        expect(await store.oidc.find('AccessToken', atOther)).toEqual({ grantId: other });
        expect(await store.oidc.find('RefreshToken', rt)).toEqual({ grantId: grant });
        await expect(store.oidc.revokeByGrantId('AccessToken', fresh('unknown'))).resolves.toBeUndefined();

        // Records issued under the grant after a revocation are revocable again.
        const at3 = fresh('at');
        await store.oidc.upsert('AccessToken', at3, { grantId: grant }, 60);
        await store.oidc.revokeByGrantId('AccessToken', grant);
        expect(await store.oidc.find('AccessToken', at3)).toBeUndefined();
      });

      it(`lets exactly one of ${PARALLEL} parallel consumes of one id through`, async () => {
        for (let round = 0; round < 5; round++) {
          const id = fresh('race');
          await store.oidc.upsert('RefreshToken', id, { grantId: 'g' }, 60);
          const results = await parallel(PARALLEL, () => store.oidc.consume('RefreshToken', id));
          expect(results.filter(Boolean)).toHaveLength(1);
        }
      });
    });

    describe('accounts, links and identifiers', () => {
      function link(accountId: string, overrides: Partial<Link> = {}): Link {
        return { provider: 'nhs-login', subject: fresh('sub'), accountId, evidence: 'nhs_number:P9', createdAt: 1_712_000_000, ...overrides };
      }

      it('creates, reads and updates an account', async () => {
        const id = fresh('acct');
        await store.accounts.createAccount({ id, createdAt: 1_712_000_000, sealedProfile: 'sealed-v1' });
        expect(await store.accounts.getAccount(id)).toEqual({ id, createdAt: 1_712_000_000, sealedProfile: 'sealed-v1' });

        await store.accounts.updateAccount(id, 'sealed-v2');
        expect(await store.accounts.getAccount(id)).toEqual({ id, createdAt: 1_712_000_000, sealedProfile: 'sealed-v2' });
        expect(await store.accounts.getAccount(fresh('missing'))).toBeUndefined();
      });

      it('refuses to overwrite an account or update a missing one', async () => {
        const id = fresh('acct');
        await store.accounts.createAccount({ id, createdAt: 1, sealedProfile: 'original' });
        await expect(store.accounts.createAccount({ id, createdAt: 2, sealedProfile: 'intruder' })).rejects.toThrow();
        expect(await store.accounts.getAccount(id)).toEqual({ id, createdAt: 1, sealedProfile: 'original' });

        const missing = fresh('missing');
        await expect(store.accounts.updateAccount(missing, 'x')).rejects.toThrow();
        expect(await store.accounts.getAccount(missing)).toBeUndefined();
      });

      it('creates a link once and reports the owner on conflict', async () => {
        const [a, b] = [fresh('acct'), fresh('acct')];
        const first = link(a);
        expect(await store.accounts.createLink(first)).toEqual({ created: true });
        expect(await store.accounts.findLink(first.provider, first.subject)).toEqual(first);

        expect(await store.accounts.createLink({ ...first, accountId: b, evidence: 'jit' })).toEqual({ created: false, existingAccountId: a });
        expect(await store.accounts.createLink(first)).toEqual({ created: false, existingAccountId: a });
        expect(await store.accounts.findLink(first.provider, first.subject)).toEqual(first);

        expect(await store.accounts.findLink(first.provider, fresh('other'))).toBeUndefined();
        expect(await store.accounts.findLink('cis2', first.subject)).toBeUndefined();
      });

      it('keeps (provider, subject) pairs apart even when they contain separators', async () => {
        const [a, b] = [fresh('acct'), fresh('acct')];
        const s = fresh('s');
        expect(await store.accounts.createLink(link(a, { provider: 'p:x', subject: s }))).toEqual({ created: true });
        expect(await store.accounts.createLink(link(b, { provider: 'p', subject: `x:${s}` }))).toEqual({ created: true });
        expect(await store.accounts.createLink(link(b, { provider: 'p{x}', subject: s }))).toEqual({ created: true });
        expect((await store.accounts.findLink('p:x', s))?.accountId).toBe(a);
        expect((await store.accounts.findLink('p', `x:${s}`))?.accountId).toBe(b);
        expect((await store.accounts.findLink('p{x}', s))?.accountId).toBe(b);
      });

      it("lists exactly an account's links", async () => {
        const [a, b] = [fresh('acct'), fresh('acct')];
        const mine = [link(a, { provider: 'cis2', createdAt: 10 }), link(a, { provider: 'nhs-login', createdAt: 20 }), link(a, { provider: 'saml:trust-x', createdAt: 30 })];
        const theirs = link(b);
        for (const l of [...mine, theirs]) await store.accounts.createLink(l);
        // A lost race must not make the loser list someone else's link.
        await store.accounts.createLink({ ...theirs, accountId: a });

        const listed = await store.accounts.listLinks(a);
        const byKey = (l: Link): string => `${l.provider}\u0000${l.subject}`;
        expect([...listed].sort((x, y) => byKey(x).localeCompare(byKey(y)))).toEqual([...mine].sort((x, y) => byKey(x).localeCompare(byKey(y))));
        expect(await store.accounts.listLinks(b)).toEqual([theirs]);
        expect(await store.accounts.listLinks(fresh('nobody'))).toEqual([]);
      });

      it('deletes a link only for its owner, after which it can be linked afresh', async () => {
        const [owner, other] = [fresh('acct'), fresh('acct')];
        const l = link(owner);
        await store.accounts.createLink(l);

        expect(await store.accounts.deleteLink(l.provider, l.subject, other)).toBe(false);
        expect(await store.accounts.findLink(l.provider, l.subject)).toEqual(l);

        expect(await store.accounts.deleteLink(l.provider, l.subject, owner)).toBe(true);
        expect(await store.accounts.findLink(l.provider, l.subject)).toBeUndefined();
        expect(await store.accounts.listLinks(owner)).toEqual([]);
        expect(await store.accounts.deleteLink(l.provider, l.subject, owner)).toBe(false);

        expect(await store.accounts.createLink({ ...l, accountId: other })).toEqual({ created: true });
        expect(await store.accounts.listLinks(other)).toEqual([{ ...l, accountId: other }]);
        expect(await store.accounts.listLinks(owner)).toEqual([]);
      });

      it('maps identifiers to accounts once per (kind, value)', async () => {
        const [a, b, value] = [fresh('acct'), fresh('acct'), fresh('hmac')];
        expect(await store.accounts.setIdentifier('nhs_number', value, a)).toEqual({ created: true });
        expect(await store.accounts.findByIdentifier('nhs_number', value)).toBe(a);

        expect(await store.accounts.setIdentifier('nhs_number', value, b)).toEqual({ created: false, existingAccountId: a });
        expect(await store.accounts.setIdentifier('nhs_number', value, a)).toEqual({ created: false, existingAccountId: a });
        expect(await store.accounts.findByIdentifier('nhs_number', value)).toBe(a);

        expect(await store.accounts.setIdentifier('gmc_number', value, b)).toEqual({ created: true });
        expect(await store.accounts.findByIdentifier('gmc_number', value)).toBe(b);
        expect(await store.accounts.findByIdentifier('nhs_number', fresh('unknown'))).toBeUndefined();
      });

      it(`creates exactly one of ${PARALLEL} parallel links of one (provider, subject)`, async () => {
        const subject = fresh('sub');
        const accounts = Array.from({ length: PARALLEL }, () => fresh('acct'));
        const results = await parallel(PARALLEL, (i) => store.accounts.createLink(link(accounts[i], { subject })));

        const winners = accounts.filter((_, i) => results[i].created);
        expect(winners).toHaveLength(1);
        for (const r of results) if (!r.created) expect(r.existingAccountId).toBe(winners[0]);
        expect((await store.accounts.findLink('nhs-login', subject))?.accountId).toBe(winners[0]);
        expect(await store.accounts.listLinks(winners[0])).toHaveLength(1);
        const losers = accounts.filter((a) => a !== winners[0]);
        const loserLists = await Promise.all(losers.map((a) => store.accounts.listLinks(a)));
        expect(loserLists.every((list) => list.length === 0)).toBe(true);
      });

      it(`maps exactly one of ${PARALLEL} parallel identifier claims`, async () => {
        const value = fresh('hmac');
        const accounts = Array.from({ length: PARALLEL }, () => fresh('acct'));
        const results = await parallel(PARALLEL, (i) => store.accounts.setIdentifier('nhs_number', value, accounts[i]));
        const winners = accounts.filter((_, i) => results[i].created);
        expect(winners).toHaveLength(1);
        expect(await store.accounts.findByIdentifier('nhs_number', value)).toBe(winners[0]);
      });
    });

    describe('signing keys', () => {
      it('puts, lists, replaces and deletes keys', async () => {
        const tag = fresh('kid');
        const ours = async (): Promise<StoredKey[]> => (await store.keys.listKeys()).filter((k) => k.kid.startsWith(tag));
        const k1: StoredKey = {
          kid: `${tag}-1`,
          alg: 'ES256',
          use: 'sig',
          publicJwk: { kty: 'EC', crv: 'P-256', x: 'x1', y: 'y1' },
          sealedPrivateJwk: 'sealed-1',
          createdAt: 1_700_000_000,
          activatesAt: 1_700_000_000,
        };
        const k2: StoredKey = {
          kid: `${tag}-2`,
          alg: 'RSA-OAEP-256',
          use: 'enc',
          publicJwk: { kty: 'RSA', n: 'n2', e: 'AQAB' },
          sealedPrivateJwk: 'sealed-2',
          createdAt: 1_700_000_100,
          activatesAt: 1_700_000_200,
          retiresAt: 1_800_000_000,
          removeAfter: 1_900_000_000,
        };
        expect(await ours()).toEqual([]);
        await store.keys.putKey(k1);
        await store.keys.putKey(k2);
        expect((await ours()).sort((a, b) => a.kid.localeCompare(b.kid))).toEqual([k1, k2]);

        const retired = { ...k1, retiresAt: 1_750_000_000, removeAfter: 1_760_000_000 };
        await store.keys.putKey(retired);
        expect((await ours()).sort((a, b) => a.kid.localeCompare(b.kid))).toEqual([retired, k2]);

        await store.keys.deleteKey(k1.kid);
        expect(await ours()).toEqual([k2]);
        await expect(store.keys.deleteKey(`${tag}-missing`)).resolves.toBeUndefined();
        expect(await ours()).toEqual([k2]);
      });
    });

    describe('replay cache', () => {
      it('remembers a key once', async () => {
        const [key, other] = [fresh('jti'), fresh('jti')];
        expect(await store.replay.has(key)).toBe(false);
        expect(await store.replay.rememberOnce(key, 60)).toBe(true);
        expect(await store.replay.rememberOnce(key, 60)).toBe(false);
        expect(await store.replay.has(key)).toBe(true);
        expect(await store.replay.has(other)).toBe(false);
        expect(await store.replay.rememberOnce(other, 60)).toBe(true);
      });

      it('forgets a key after its ttl', async () => {
        const [short, long] = [fresh('jti'), fresh('jti')];
        expect(await store.replay.rememberOnce(short, 1)).toBe(true);
        expect(await store.replay.rememberOnce(long, 60)).toBe(true);
        await sleep(1200);
        expect(await store.replay.has(short)).toBe(false);
        expect(await store.replay.has(long)).toBe(true);
        expect(await store.replay.rememberOnce(short, 60)).toBe(true);
        expect(await store.replay.rememberOnce(short, 60)).toBe(false);
      });

      it(`lets exactly one of ${PARALLEL} parallel rememberOnce calls through`, async () => {
        const key = fresh('jti');
        const results = await parallel(PARALLEL, () => store.replay.rememberOnce(key, 60));
        expect(results.filter(Boolean)).toHaveLength(1);
      });
    });

    describe('rate limits', () => {
      // Long enough that crossing a window boundary mid-test is practically impossible.
      const LONG = 1_000_000;

      it('counts hits per key and window length, with the window end as resetAt', async () => {
        const [key, other] = [fresh('ip'), fresh('ip')];
        const expectedReset = (Math.floor(Date.now() / (LONG * 1000)) + 1) * LONG;
        expect(await store.rateLimits.hit(key, LONG)).toEqual({ count: 1, resetAt: expectedReset });
        expect(await store.rateLimits.hit(key, LONG)).toEqual({ count: 2, resetAt: expectedReset });
        expect(await store.rateLimits.hit(key, LONG)).toEqual({ count: 3, resetAt: expectedReset });
        expect((await store.rateLimits.hit(other, LONG)).count).toBe(1);
        expect((await store.rateLimits.hit(key, LONG / 2)).count).toBe(1);
      });

      it('starts a new count when the window rolls over', async () => {
        const key = fresh('ip');
        // Start just after a second boundary so both hits land in one 1 s window.
        await sleep(1000 - (Date.now() % 1000) + 20);
        const first = await store.rateLimits.hit(key, 1);
        const second = await store.rateLimits.hit(key, 1);
        expect(first.count).toBe(1);
        expect(second).toEqual({ count: 2, resetAt: first.resetAt });
        expect(first.resetAt * 1000).toBeGreaterThan(Date.now());

        await sleep(first.resetAt * 1000 - Date.now() + 50);
        expect(await store.rateLimits.hit(key, 1)).toEqual({ count: 1, resetAt: first.resetAt + 1 });
      });

      it(`counts ${PARALLEL} parallel hits exactly once each`, async () => {
        const key = fresh('ip');
        const results = await parallel(PARALLEL, () => store.rateLimits.hit(key, LONG));
        expect(results.map((r) => r.count).sort((a, b) => a - b)).toEqual(Array.from({ length: PARALLEL }, (_, i) => i + 1));
      });
    });

    describe('consents', () => {
      function consent(overrides: Partial<StoredConsent> = {}): StoredConsent {
        return { id: fresh('consent'), version: 1, grantor: fresh('patient'), status: 'proposed', record: fresh('jws'), updatedAt: 1_712_000_000, ...overrides };
      }
      /** The next version of `c`: a new record text, one second later, plus `changes`. */
      function next(c: StoredConsent, changes: Partial<StoredConsent> = {}): StoredConsent {
        return { ...c, version: c.version + 1, record: fresh('jws'), updatedAt: c.updatedAt + 1, ...changes };
      }

      it('round-trips consents with and without the optional fields', async () => {
        const full = consent({
          // Separators and braces must not leak into key names or hash tags.
          id: `${fresh('consent')}:{x}/y`,
          grantee: fresh('carer'),
          status: 'active',
          record: 'eyJhbGciOiJFUzI1NiJ9.eyJ6b8OrIjoi4pyTIn0.sig — Zoë ✓ {braces} : colons \n newline',
          endsAt: 1_800_000_000,
        });
        const bare = consent();
        expect(await store.consents.create(full)).toBe(true);
        expect(await store.consents.create(bare)).toBe(true);

        expect(await store.consents.get(full.id)).toEqual(full);
        expect(await store.consents.get(bare.id)).toEqual(bare);
        expect(await store.consents.get(bare.id)).not.toHaveProperty('grantee');
        expect(await store.consents.get(bare.id)).not.toHaveProperty('endsAt');
        expect(await store.consents.history(full.id)).toEqual([full]);
        expect(await store.consents.get(fresh('missing'))).toBeUndefined();
        expect(await store.consents.history(fresh('missing'))).toEqual([]);
      });

      it('create refuses an existing id and writes nothing', async () => {
        const original = consent({ grantee: fresh('carer'), endsAt: 100 });
        expect(await store.consents.create(original)).toBe(true);
        const intruder = consent({ id: original.id, grantor: fresh('patient'), grantee: fresh('carer'), record: 'intruder', status: fresh('active'), endsAt: 50 });
        expect(await store.consents.create(intruder)).toBe(false);

        expect(await store.consents.get(original.id)).toEqual(original);
        expect(await store.consents.history(original.id)).toEqual([original]);
        expect(await store.consents.listByGrantor(intruder.grantor)).toEqual([]);
        expect(await store.consents.listByGrantee(intruder.grantee ?? '')).toEqual([]);
        expect(await store.consents.listByGrantor(original.grantor)).toEqual([original]);
        expect(await store.consents.listEnding(1000, [intruder.status], 10)).toEqual([]);
      });

      it('create rejects a first version other than 1', async () => {
        const c = consent({ version: 2 });
        await expect(store.consents.create(c)).rejects.toThrow(/version 1/);
        expect(await store.consents.get(c.id)).toBeUndefined();
        expect(await store.consents.listByGrantor(c.grantor)).toEqual([]);
      });

      it('update is a compare-and-set on the version and keeps every version', async () => {
        const v1 = consent();
        await store.consents.create(v1);
        const v2 = next(v1, { status: 'active' });
        expect(await store.consents.update(v2, 1)).toBe(true);
        expect(await store.consents.get(v1.id)).toEqual(v2);

        // Stale: another writer also started from version 1.
        expect(await store.consents.update(next(v1, { record: 'stale' }), 1)).toBe(false);
        // From a version that does not exist yet.
        expect(await store.consents.update({ ...next(v2), version: 4 }, 3)).toBe(false);
        // Of a consent that does not exist: nothing is created.
        const ghost = consent();
        expect(await store.consents.update(next(ghost), 1)).toBe(false);
        expect(await store.consents.get(ghost.id)).toBeUndefined();
        expect(await store.consents.history(ghost.id)).toEqual([]);
        expect(await store.consents.get(v1.id)).toEqual(v2);

        const v3 = next(v2, { status: 'inactive' });
        expect(await store.consents.update(v3, 2)).toBe(true);
        expect(await store.consents.get(v1.id)).toEqual(v3);
        expect(await store.consents.history(v1.id)).toEqual([v1, v2, v3]);
      });

      it('update rejects a next version other than expectedVersion + 1, writing nothing', async () => {
        const v1 = consent();
        await store.consents.create(v1);
        const v2 = next(v1);
        await expect(store.consents.update({ ...v2, version: 3 }, 1)).rejects.toThrow(/expectedVersion \+ 1/);
        await expect(store.consents.update({ ...v2, version: 1 }, 1)).rejects.toThrow(/expectedVersion \+ 1/);
        await expect(store.consents.update({ ...v2, version: 1 }, 0)).rejects.toThrow(RangeError);
        expect(await store.consents.history(v1.id)).toEqual([v1]);
        // Still at version 1: the correct update goes through.
        expect(await store.consents.update(v2, 1)).toBe(true);
        expect(await store.consents.history(v1.id)).toEqual([v1, v2]);
      });

      it('lists the newest versions by grantor and by grantee, ordered by updatedAt then id', async () => {
        const [patient, carer, other] = [fresh('patient'), fresh('carer'), fresh('carer')];
        const base = fresh('consent');
        const late = consent({ id: `${base}-c`, grantor: patient, grantee: carer, updatedAt: 30 });
        const tieB = consent({ id: `${base}-b`, grantor: patient, grantee: carer, updatedAt: 10 });
        const tieA = consent({ id: `${base}-a`, grantor: patient, updatedAt: 10 }); // invitation pending: no grantee
        for (const c of [late, tieB, tieA]) expect(await store.consents.create(c)).toBe(true);

        expect(await store.consents.listByGrantor(patient)).toEqual([tieA, tieB, late]);
        expect(await store.consents.listByGrantee(carer)).toEqual([tieB, late]);

        // The invitation is accepted: the consent moves into the carer's list, as its newest version.
        const accepted = next(tieA, { grantee: carer, status: 'active', updatedAt: 40 });
        expect(await store.consents.update(accepted, 1)).toBe(true);
        expect(await store.consents.listByGrantee(carer)).toEqual([tieB, late, accepted]);
        expect(await store.consents.listByGrantor(patient)).toEqual([tieB, late, accepted]);

        // A lost race must not list the consent under the loser's grantee.
        const loser = fresh('carer');
        expect(await store.consents.update(next(tieA, { grantee: loser }), 1)).toBe(false);
        expect(await store.consents.listByGrantee(loser)).toEqual([]);

        // The grantee changes: it leaves the old list and joins the new one.
        const moved = next(late, { grantee: other, updatedAt: 50 });
        expect(await store.consents.update(moved, 1)).toBe(true);
        expect(await store.consents.listByGrantee(carer)).toEqual([tieB, accepted]);
        expect(await store.consents.listByGrantee(other)).toEqual([moved]);

        // So does a changed grantor.
        const newPatient = fresh('patient');
        const handedOver = next(tieB, { grantor: newPatient });
        expect(await store.consents.update(handedOver, 1)).toBe(true);
        expect(await store.consents.listByGrantor(patient)).toEqual([accepted, moved]);
        expect(await store.consents.listByGrantor(newPatient)).toEqual([handedOver]);
        expect(await store.consents.listByGrantee(carer)).toEqual([handedOver, accepted]);

        expect(await store.consents.listByGrantor(fresh('nobody'))).toEqual([]);
        expect(await store.consents.listByGrantee(fresh('nobody'))).toEqual([]);
      });

      it('listEnding finds newest versions ending by a time, by status, in (endsAt, id) order, up to a limit', async () => {
        // Statuses are opaque to the store; fresh ones keep this test apart from the others running alongside.
        const [active, proposed, inactive] = [fresh('active'), fresh('proposed'), fresh('inactive')];
        const base = fresh('consent');
        const a100 = consent({ id: `${base}-1`, status: active, endsAt: 100 });
        const a200y = consent({ id: `${base}-2y`, status: active, endsAt: 200 });
        const a200x = consent({ id: `${base}-2x`, status: active, endsAt: 200 });
        const a300 = consent({ id: `${base}-3`, status: active, endsAt: 300 });
        const open = consent({ id: `${base}-4`, status: active });
        const p150 = consent({ id: `${base}-5`, status: proposed, endsAt: 150 });
        const i50 = consent({ id: `${base}-6`, status: inactive, endsAt: 50 });
        for (const c of [a100, a200y, a200x, a300, open, p150, i50]) expect(await store.consents.create(c)).toBe(true);

        expect(await store.consents.listEnding(200, [active], 100)).toEqual([a100, a200x, a200y]);
        expect(await store.consents.listEnding(99, [active], 100)).toEqual([]);
        expect(await store.consents.listEnding(1000, [active, proposed], 100)).toEqual([a100, p150, a200x, a200y, a300]);
        expect(await store.consents.listEnding(1000, [active, proposed, active], 3)).toEqual([a100, p150, a200x]);
        expect(await store.consents.listEnding(1000, [active], 1)).toEqual([a100]);
        expect(await store.consents.listEnding(1000, [inactive], 100)).toEqual([i50]);
        expect(await store.consents.listEnding(1000, [], 100)).toEqual([]);
        expect(await store.consents.listEnding(1000, [active], 0)).toEqual([]);
        expect(await store.consents.listEnding(1000, [fresh('unknown')], 100)).toEqual([]);

        // Indexes follow the newest version: a status change moves it, a new endsAt moves it in time,
        // a removed endsAt drops it.
        const a100off = next(a100, { status: inactive });
        const a300sooner = next(a300, { endsAt: 10 });
        const a200xLater = next(a200x, { endsAt: 5000 });
        const a200yOpen = next(a200y, { endsAt: undefined });
        for (const c of [a100off, a300sooner, a200xLater, a200yOpen]) expect(await store.consents.update(c, 1)).toBe(true);

        expect(await store.consents.listEnding(1000, [active], 100)).toEqual([a300sooner]);
        expect(await store.consents.listEnding(1000, [inactive], 100)).toEqual([i50, a100off]);
        expect(await store.consents.listEnding(5000, [active, inactive], 100)).toEqual([a300sooner, i50, a100off, a200xLater]);
      });

      it(`lets exactly one of ${PARALLEL} parallel updates from one version win`, async () => {
        for (let round = 0; round < 3; round++) {
          const v1 = consent({ status: 'proposed', endsAt: 1000 });
          await store.consents.create(v1);
          const candidates = Array.from({ length: PARALLEL }, (_, i) => next(v1, { grantee: fresh('carer'), status: 'active', endsAt: 1000 + i }));
          const results = await parallel(PARALLEL, (i) => store.consents.update(candidates[i], 1));

          const winners = candidates.filter((_, i) => results[i]);
          expect(winners).toHaveLength(1);
          const [winner] = winners;
          expect(await store.consents.get(v1.id)).toEqual(winner);
          expect(await store.consents.history(v1.id)).toEqual([v1, winner]);
          expect(await store.consents.listByGrantor(v1.grantor)).toEqual([winner]);
          const granteeLists = await Promise.all(candidates.map((c) => store.consents.listByGrantee(c.grantee ?? '')));
          expect(granteeLists.filter((l) => l.length > 0)).toEqual([[winner]]);
          // The next version can only be written from the winner's.
          const v3 = next(winner);
          expect(await store.consents.update(v3, 2)).toBe(true);
          expect(await store.consents.history(v1.id)).toEqual([v1, winner, v3]);
        }
      });

      it(`creates exactly one of ${PARALLEL} parallel consents with one id`, async () => {
        const id = fresh('consent');
        const candidates = Array.from({ length: PARALLEL }, () => consent({ id, grantee: fresh('carer') }));
        const results = await parallel(PARALLEL, (i) => store.consents.create(candidates[i]));
        const winners = candidates.filter((_, i) => results[i]);
        expect(winners).toHaveLength(1);
        expect(await store.consents.history(id)).toEqual(winners);
        const grantorLists = await Promise.all(candidates.map((c) => store.consents.listByGrantor(c.grantor)));
        expect(grantorLists.filter((l) => l.length > 0)).toEqual([winners]);
      });
    });
  });
}
