import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as oc from 'openid-client';
import { decodeJwt } from 'jose';
import { UserAgent, hiddenField, location } from '../helpers/browser.ts';
import { scriptedConnector } from '../helpers/scripted-connector.ts';
import { auditEntry, call, signIn, startDelegationBroker, type DelegationBroker } from '../delegation/helpers.ts';
import type { StoredEntry } from '../../src/audit/index.ts';

// A user sees and removes their linked logins (page and API), and links another login by proving both
// identities in one session. A link intent is single use and bound to the account session that made it;
// an identity linked to another account is never moved.

const upA = scriptedConnector('up-a');
const upB = scriptedConnector('up-b');
const P9 = { acr: 'P9.Cp.Cd', aal: 2, proofing: 'P9' as const, vot: 'P9.Cp.Cd' };
const id = (subject: string, name = 'Linda Link') => ({ subject, claims: { name }, assurance: P9 });

describe('linked logins', () => {
  let t: DelegationBroker;
  beforeAll(async () => {
    t = await startDelegationBroker({ connectors: [upA.connector, upB.connector] });
  });
  afterAll(async () => {
    await t?.close();
  });

  const links = (accountId: string) => t.broker.store.accounts.listLinks(accountId);

  /** A browser signed in to /account with `connector` (the identity queued first). */
  async function session(connector: typeof upA, subject: string) {
    connector.queue.push(id(subject));
    const ua = new UserAgent();
    const login = location(await ua.get(`${t.base}/account/links`), t.base);
    const callback = await signIn(ua, t, login, { connector: connector.connector.id }, `${t.base}/account/callback`);
    expect((await ua.get(callback.href)).status).toBe(303);
    const accountId = (await t.broker.store.accounts.findLink(connector.connector.id, subject))!.accountId;
    return { ua, accountId };
  }

  /** An API token of client broker-account with the account.links scope. */
  async function token(connector: typeof upA, subject: string, scope = 'openid account.links delegation.read') {
    connector.queue.push(id(subject));
    const verifier = oc.randomPKCECodeVerifier();
    const url = oc.buildAuthorizationUrl(t.account, { redirect_uri: `${t.base}/account/callback`, scope, resource: `${t.base}/api`, code_challenge: await oc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', prompt: 'login' });
    const back = await signIn(new UserAgent(), t, url.href, { connector: connector.connector.id }, `${t.base}/account/callback`);
    const tokens = await oc.authorizationCodeGrant(t.account, back, { pkceCodeVerifier: verifier });
    return { token: tokens.access_token, accountId: String(decodeJwt(tokens.access_token).sub) };
  }

  const page = async (ua: UserAgent, path: string) => {
    const res = await ua.get(`${t.base}${path}`);
    return { status: res.status, html: await res.text(), res };
  };

  /** Starts "Add a way to sign in" in `ua`; returns the URL that begins the upstream login. */
  async function startLink(ua: UserAgent, upstream: string): Promise<string> {
    const { html } = await page(ua, '/account/links');
    const res = await ua.postForm(`${t.base}/account/links/add`, { csrf: hiddenField(html, 'csrf'), upstream });
    expect(res.status).toBe(303);
    const start = location(res, t.base);
    expect(start).toMatch(new RegExp(`^${t.base}/link-upstream/[A-Za-z0-9_-]{20,}$`));
    return start;
  }

  /** Runs the upstream login of a link in `ua` (identity queued); returns the /account/links/done URL. */
  async function upstreamLogin(ua: UserAgent, start: string, connector: typeof upA, subject: string): Promise<string> {
    connector.queue.push(id(subject, 'Someone Else'));
    const seen = connector.requests.length;
    const callback = location(await ua.get(start), t.base);
    expect(connector.requests[seen]?.prompt).toBe('login');
    const done = location(await ua.get(callback), t.base);
    expect(done).toMatch(new RegExp(`^${t.base}/account/links/done\\?login=`));
    return done;
  }

  const linked = (type: 'account.linked' | 'account.unlinked', outcome: 'success' | 'failure', accountId: string, more: (e: StoredEntry) => boolean = () => true) =>
    auditEntry(t.broker, type, (e) => e.outcome === outcome && t.broker.ledger.open(e).subject === accountId && more(e));

  it('links a second provider proved in one session; either login then reaches the same account', async () => {
    const { ua, accountId } = await session(upA, 'a-link-1');
    const done = await upstreamLogin(ua, await startLink(ua, 'up-b'), upB, 'b-link-1');
    const res = await ua.get(done);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/account/links?done=linked');
    expect(await links(accountId)).toEqual(expect.arrayContaining([expect.objectContaining({ provider: 'up-b', subject: 'b-link-1', evidence: 'proved-in-session' })]));
    await linked('account.linked', 'success', accountId, (e) => e.details.provider === 'up-b' && e.details.evidence === 'proved-in-session');
    const shown = await page(ua, '/account/links?done=linked');
    expect(shown.html).toContain('That login has been added');
    expect(shown.html).toContain('Scripted up-b');
    expect(shown.html).toContain('You added it, signed in with both logins');
    // Either login now reaches the one account.
    expect((await token(upB, 'b-link-1')).accountId).toBe(accountId);
    expect((await token(upA, 'a-link-1')).accountId).toBe(accountId);
    // Linking the same login again is a no-op success.
    const again = await ua.get(await upstreamLogin(ua, await startLink(ua, 'up-b'), upB, 'b-link-1'));
    expect(again.headers.get('location')).toBe('/account/links?done=already-linked');
    expect((await links(accountId)).length).toBe(2);
  });

  it('lists and removes links (page and API); the last one cannot be removed; each removal is audited', async () => {
    const { ua, accountId } = await session(upA, 'a-list-1');
    const only = await page(ua, '/account/links');
    expect(only.status).toBe(200);
    expect(only.html).toContain('You cannot remove your only login');
    expect(only.html).not.toContain('data-testid="remove-link"');
    // A forged form for the last link: refused with a clear message, nothing removed, audited.
    const refused = await ua.postForm(`${t.base}/account/links/remove`, { csrf: hiddenField(only.html, 'csrf'), provider: 'up-a', subject: 'a-list-1' });
    expect(refused.status).toBe(409);
    expect(await refused.text()).toContain('You cannot remove your only way to sign in');
    await linked('account.unlinked', 'failure', accountId);
    // CSRF is required.
    expect((await ua.postForm(`${t.base}/account/links/remove`, { provider: 'up-a', subject: 'a-list-1' })).status).toBe(403);
    expect((await links(accountId)).length).toBe(1);

    await ua.get(await upstreamLogin(ua, await startLink(ua, 'up-b'), upB, 'b-list-1'));
    const { token: bearer } = await token(upA, 'a-list-1');
    const listed = await call<{ links: Array<Record<string, string>> }>(t, bearer, 'GET', '/api/account/links');
    expect(listed.status).toBe(200);
    expect(listed.body.links).toEqual([
      expect.objectContaining({ provider: 'up-a', providerName: 'Scripted up-a', subject: 'a-list-1', evidence: 'jit' }),
      expect.objectContaining({ provider: 'up-b', providerName: 'Scripted up-b', subject: 'b-list-1', evidence: 'proved-in-session' }),
    ]);
    expect(Date.parse(listed.body.links[0].linkedAt)).toBeGreaterThan(0);
    // Without the scope: refused.
    expect((await call(t, (await token(upA, 'a-list-1', 'openid delegation.read')).token, 'GET', '/api/account/links')).status).toBe(403);
    expect((await call(t, undefined, 'GET', '/api/account/links')).status).toBe(401);
    // Someone else's link, or none: 404.
    expect((await call(t, bearer, 'DELETE', '/api/account/links/up-b/b-link-1')).status).toBe(404);

    // Remove through the page.
    const two = await page(ua, '/account/links');
    expect(two.html.match(/data-testid="remove-link"/g)?.length).toBe(2);
    const removed = await ua.postForm(`${t.base}/account/links/remove`, { csrf: hiddenField(two.html, 'csrf'), provider: 'up-b', subject: 'b-list-1' });
    expect(removed.status).toBe(303);
    expect(removed.headers.get('location')).toBe('/account/links?done=removed');
    expect(await links(accountId)).toEqual([expect.objectContaining({ provider: 'up-a' })]);
    await linked('account.unlinked', 'success', accountId, (e) => e.details.provider === 'up-b');
    // The removed login no longer reaches this account.
    expect((await token(upB, 'b-list-1')).accountId).not.toBe(accountId);

    // Link another, and remove it through the API.
    await ua.get(await upstreamLogin(ua, await startLink(ua, 'up-b'), upB, 'b-list-2'));
    expect((await call(t, bearer, 'DELETE', `/api/account/links/up-b/${encodeURIComponent('b-list-2')}`)).status).toBe(204);
    await linked('account.unlinked', 'success', accountId, (e) => e.details.provider === 'up-b' && e.details.evidence === 'proved-in-session');
    const last = await call<{ error: string }>(t, bearer, 'DELETE', '/api/account/links/up-a/a-list-1');
    expect(last.status).toBe(409);
    expect(last.body.error).toBe('last_link');
    expect((await links(accountId)).length).toBe(1);
  });

  it('refuses to link an identity already linked to another account: nothing changed, audited', async () => {
    const other = await token(upB, 'b-taken-1');
    const { ua, accountId } = await session(upA, 'a-taken-1');
    const res = await ua.get(await upstreamLogin(ua, await startLink(ua, 'up-b'), upB, 'b-taken-1'));
    expect(res.status).toBe(409);
    const html = await res.text();
    expect(html).toContain('already belongs to another account');
    expect(html).toContain('nothing has been changed');
    expect(await links(accountId)).toEqual([expect.objectContaining({ provider: 'up-a', subject: 'a-taken-1' })]);
    expect(await links(other.accountId)).toEqual([expect.objectContaining({ provider: 'up-b', subject: 'b-taken-1', evidence: 'jit' })]);
    const entry = await linked('account.linked', 'failure', accountId, (e) => e.details.reason === 'identity already linked to another account');
    expect(entry.details).toMatchObject({ provider: 'up-b', evidence: 'proved-in-session' });
    // The other account's id is not disclosed in the entry.
    expect(JSON.stringify(t.broker.ledger.open(entry))).not.toContain(other.accountId);
  });

  it('link intents are single use and bound to the session that made them', async () => {
    const first = await session(upA, 'a-bind-1');
    const mallory = await session(upA, 'a-bind-2');
    const sameAccountElsewhere = await session(upA, 'a-bind-1');
    expect(sameAccountElsewhere.accountId).toBe(first.accountId);

    // A finished upstream login's hand-off URL opened in another signed-in browser: refused, nothing linked.
    const start = await startLink(first.ua, 'up-b');
    const done = await upstreamLogin(first.ua, start, upB, 'b-bind-1');
    const stolen = await mallory.ua.get(done);
    expect(stolen.status).toBe(403);
    expect(await stolen.text()).toContain('was not started in this session');
    await linked('account.linked', 'failure', mallory.accountId, (e) => e.details.reason === 'link intent belongs to another session');
    expect(await t.broker.store.accounts.findLink('up-b', 'b-bind-1')).toBeUndefined();
    // The hand-off was single use: not even its own browser can use it now.
    expect((await first.ua.get(done)).status).toBe(400);

    // The intent's start URL sent to someone else (login CSRF): their upstream login is not linked to this account.
    const victimDone = await upstreamLogin(mallory.ua, start, upB, 'b-bind-victim');
    expect((await mallory.ua.get(victimDone)).status).toBe(403);
    // ... nor in another browser of the same account (another session).
    const otherSession = await upstreamLogin(sameAccountElsewhere.ua, start, upB, 'b-bind-victim');
    expect((await sameAccountElsewhere.ua.get(otherSession)).status).toBe(403);
    // ... nor without any account session.
    const anonymous = new UserAgent();
    expect((await anonymous.get(await upstreamLogin(anonymous, start, upB, 'b-bind-victim'))).status).toBe(401);
    expect(await t.broker.store.accounts.findLink('up-b', 'b-bind-victim')).toBeUndefined();

    // The intent is still unused, so its own session can finish it once; then it is gone.
    const ok = await first.ua.get(await upstreamLogin(first.ua, start, upB, 'b-bind-1'));
    expect(ok.headers.get('location')).toBe('/account/links?done=linked');
    expect((await first.ua.get(start)).status).toBe(400);
    expect(await links(first.accountId)).toHaveLength(2);
    expect(await links(mallory.accountId)).toHaveLength(1);

    // Adding needs CSRF and a listed upstream.
    const { html } = await page(first.ua, '/account/links');
    expect((await first.ua.postForm(`${t.base}/account/links/add`, { upstream: 'up-b' })).status).toBe(403);
    const unknown = await first.ua.postForm(`${t.base}/account/links/add`, { csrf: hiddenField(html, 'csrf'), upstream: 'nope' });
    expect(unknown.status).toBe(400);
    expect(await unknown.text()).toContain('Choose one of the listed logins');
  });

  it('the dashboard links to the page, and the API is in the OpenAPI document', async () => {
    const { ua } = await session(upA, 'a-dash-1');
    expect((await page(ua, '/account')).html).toContain('href="/account/links"');
    const doc = (await call<{ paths: Record<string, Record<string, { security?: unknown }>> }>(t, undefined, 'GET', '/api/openapi.json')).body;
    expect(doc.paths['/api/account/links'].get.security).toEqual([{ bearer: ['account.links'] }, { broker: ['account.links'] }]);
    expect(doc.paths['/api/account/links/{provider}/{subject}'].delete).toBeDefined();
  });
});
