import type { Context } from 'koa';
import type { Store } from '../store/contracts.ts';
import type { Connector, RecheckResult, SessionRechecker } from './upstream.ts';

// Broker sessions whose login can stop holding after the fact: a smartcard certificate can be revoked
// while the browser keeps the broker's single sign-on session (CC-22). Such a session is bounded in age
// (the upstream's maxSessionAge) and, whenever it is reused for a new authorization, its connector
// re-checks the login (revocation, through the same CRL cache and OCSP client as a login). A session that
// fails either is ended the way an upstream logout ends one: the OP's login policy asks for a fresh login
// (oidc/provider.ts), and keeps asking until one replaces the session's login.
//
// The record is kept per OP session (its uid), from the login's interaction result (oidc/interactions.ts).
// Smartcard sessions are also the transient ones (their cookie ends with the browser), so a transient
// session without its record (lost, expired, or from before re-checks) is never reused either.

const MODEL = 'SessionRecheck';

/** What a login whose session must be re-checked carries in its interaction result, to the login policy. */
export interface RecheckOnReuse {
  connectorId: string;
  recheck: Record<string, unknown>;
  /** Seconds the session may be reused after the login. */
  maxAge: number;
}

/** The connectors' re-checks, by connector id, built once by the composition root and handed to the OP's login policy. */
export interface SessionRechecks {
  rechecks: ReadonlyMap<string, SessionRechecker>;
  /** Told once when a session is ended (for the log and audit; the reason holds no personal data). */
  ended?: (ctx: Context, connectorId: string, reason: string) => void | Promise<void>;
}

export function sessionRechecksOf(connectors: readonly Connector[], ended?: SessionRechecks['ended']): SessionRechecks {
  const rechecks = new Map<string, SessionRechecker>();
  for (const c of connectors) if (c.sessionRecheck) rechecks.set(c.id, c.sessionRecheck);
  return { rechecks, ended };
}

export interface OpSession {
  uid: string;
  loginTs?: number;
  transient?: boolean;
}

/**
 * A login has just been made in this session: remember what reusing the session will need (or forget what
 * an earlier login of the session needed). `ttl` is the OP session's lifetime.
 */
export async function bindSession(store: Store, session: OpSession, onReuse: RecheckOnReuse | undefined, ttl: number): Promise<void> {
  if (!onReuse || session.loginTs === undefined) {
    // Only when there is one: a delete is a replica-acknowledged write (waitReplicas), and most logins
    // (not smartcards) never had a record; losing one fails safe anyway (the next reuse asks for a login).
    if (await store.oidc.find(MODEL, session.uid)) await store.oidc.destroy(MODEL, session.uid);
    return;
  }
  await store.oidc.upsert(MODEL, session.uid, { connectorId: onReuse.connectorId, loginTs: session.loginTs, notAfter: session.loginTs + onReuse.maxAge, recheck: onReuse.recheck }, ttl);
}

export type ReuseDecision = { reuse: true } | { reuse: false; reason: string };

/** Whether this existing session may be reused for a new authorization without a fresh login. */
export async function mayReuseSession(store: Store, checks: SessionRechecks, session: OpSession, ttl: number, ctx: Context, now = Date.now()): Promise<ReuseDecision> {
  const record = await store.oidc.find(MODEL, session.uid);
  if (!record) return session.transient ? { reuse: false, reason: 'a smartcard session without its re-check record' } : { reuse: true };
  if (record.loginTs !== session.loginTs) return { reuse: false, reason: 'the re-check record is for another sign-in' };
  if (typeof record.ended === 'string') return { reuse: false, reason: record.ended };
  const connectorId = String(record.connectorId);
  const end = async (reason: string): Promise<ReuseDecision> => {
    // Kept, marked ended: the session stays refused until a fresh login replaces the record.
    await store.oidc.upsert(MODEL, session.uid, { ...record, ended: reason }, ttl);
    await checks.ended?.(ctx, connectorId, reason);
    return { reuse: false, reason };
  };
  if (typeof record.notAfter !== 'number' || now / 1000 >= record.notAfter) return end('session re-check: the maximum session age for this sign-in has passed');
  const rechecker = checks.rechecks.get(connectorId);
  if (!rechecker) return end('session re-check: the upstream is no longer configured');
  let result: RecheckResult;
  try {
    result = await rechecker.recheck(record.recheck as Record<string, unknown>);
  } catch {
    result = { valid: false, reason: 'the re-check failed' };
  }
  if (!result.valid) return end(`session re-check: ${result.reason}`);
  // The OP session slides with each use; so does its record.
  await store.oidc.upsert(MODEL, session.uid, record, ttl);
  return { reuse: true };
}
