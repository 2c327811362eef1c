import { randomBytes } from 'node:crypto';
import type { AccountStore, OidcModelStore } from '../store/contracts.ts';
import type { UpstreamIdentity } from './upstream.ts';

// Linking another login to a signed-in account ("prove both identities in one session").
//
// 1. The account app, for a signed-in session, records a *link intent* server-side: a random id bound to
//    the account and to that session's id (sid), for one chosen upstream, single use, 10 minutes.
// 2. The interaction layer sends the browser to the upstream with a login transaction that names the
//    intent (prompt=login: the second identity is proved now, not reused from an upstream session).
// 3. The upstream callback verifies the login as for any sign-in, then parks the verified identity under a
//    model of its own (never accepted by a sign-in's upstream-done) and sends the browser to the account
//    app (/account/links/done), where the account session cookie (path /account) is visible.
// 4. There the parked login and its intent are consumed, and the link is made only if the browser presents
//    the very session (account and sid) the intent was made for. A link URL or an upstream login started
//    by someone else therefore links nothing: another browser, or another account, has another sid.
//
// No authorization through oidc-provider is involved: the link changes no broker session and issues
// no token, so there is nothing for the provider to do, and no custom authorization parameter is needed.

export const LINK_INTENT_MODEL = 'AccountLinkIntent';
/** A verified upstream login made for a link intent, between the callback and /account/links/done. */
export const LINKED_LOGIN_MODEL = 'VerifiedLinkLogin';
export const LINK_INTENT_TTL = 600;
const LINKED_LOGIN_TTL = 120;
export const PROVED_IN_SESSION = 'proved-in-session';
/** Where the upstream callback sends the browser after a link login. */
export const LINK_DONE_PATH = '/account/links/done';
/** Where the account app sends the browser to begin the upstream login of an intent. */
export const linkStartPath = (intentId: string): string => `/link-upstream/${encodeURIComponent(intentId)}`;

const ID = /^[A-Za-z0-9_-]{20,64}$/;

export interface LinkIntent {
  accountId: string;
  /** The account app session the intent belongs to. */
  sid: string;
  connectorId: string;
  createdAt: number;
}

export async function createLinkIntent(store: OidcModelStore, intent: Omit<LinkIntent, 'createdAt'>): Promise<string> {
  const id = randomBytes(24).toString('base64url');
  await store.upsert(LINK_INTENT_MODEL, id, { ...intent, createdAt: Math.floor(Date.now() / 1000) }, LINK_INTENT_TTL);
  return id;
}

/** The intent, if it exists, has not expired and has not been used. */
export async function findLinkIntent(store: OidcModelStore, id: string): Promise<LinkIntent | undefined> {
  if (!ID.test(id)) return undefined;
  const p = await store.find(LINK_INTENT_MODEL, id);
  if (!p || p.consumed || typeof p.accountId !== 'string' || typeof p.sid !== 'string' || typeof p.connectorId !== 'string') return undefined;
  return { accountId: p.accountId, sid: p.sid, connectorId: p.connectorId, createdAt: Number(p.createdAt) };
}

/** Uses the intent up; true for exactly one caller. */
export function consumeLinkIntent(store: OidcModelStore, id: string): Promise<boolean> {
  return store.consume(LINK_INTENT_MODEL, id);
}

export async function parkLinkedLogin(store: OidcModelStore, parked: { intentId: string; connectorId: string; identity: UpstreamIdentity }): Promise<string> {
  const handoff = randomBytes(24).toString('base64url');
  await store.upsert(LINKED_LOGIN_MODEL, handoff, { intentId: parked.intentId, connectorId: parked.connectorId, identity: { ...parked.identity } }, LINKED_LOGIN_TTL);
  return handoff;
}

/** The parked login, consumed (single use); undefined if unknown, expired or used. */
export async function takeLinkedLogin(store: OidcModelStore, handoff: string): Promise<{ intentId: string; connectorId: string; identity: UpstreamIdentity } | undefined> {
  if (!ID.test(handoff)) return undefined;
  const p = await store.find(LINKED_LOGIN_MODEL, handoff);
  if (!p || p.consumed || typeof p.intentId !== 'string' || typeof p.connectorId !== 'string' || !(await store.consume(LINKED_LOGIN_MODEL, handoff))) return undefined;
  return { intentId: p.intentId, connectorId: p.connectorId, identity: p.identity as UpstreamIdentity };
}

export type LinkOutcome = { result: 'linked' } | { result: 'already-linked' } | { result: 'linked-elsewhere' };

/** Links (provider, subject) to the account with evidence proved-in-session, atomically; never moves an existing link. */
export async function linkProvedInSession(accounts: AccountStore, accountId: string, identity: UpstreamIdentity): Promise<LinkOutcome> {
  const made = await accounts.createLink({ provider: identity.provider, subject: identity.subject, accountId, evidence: PROVED_IN_SESSION, createdAt: Math.floor(Date.now() / 1000) });
  if (made.created) return { result: 'linked' };
  return made.existingAccountId === accountId ? { result: 'already-linked' } : { result: 'linked-elsewhere' };
}
