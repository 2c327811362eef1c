import type { Store } from '../store/contracts.ts';
import { revokeGrant } from './adapter.ts';

// Which grants an account holds, and when an upstream last ended its session, so that an upstream
// logout (OIDC back-channel logout, SAML LogoutRequest) ends the broker's session and every grant of
// that account, on every instance.

const GRANTS_MODEL = 'AccountGrants';
const LOGOUT_MODEL = 'AccountLoggedOut';
const MAX_TRACKED = 200;

export async function rememberGrant(store: Store, accountId: string, grantId: string, ttl: number): Promise<void> {
  const current = ((await store.oidc.find(GRANTS_MODEL, accountId))?.grantIds as string[] | undefined) ?? [];
  const grantIds = [...current.filter((g) => g !== grantId), grantId].slice(-MAX_TRACKED);
  await store.oidc.upsert(GRANTS_MODEL, accountId, { grantIds }, ttl);
}

/** Revokes every grant of the account and marks its sessions as ended before now. */
export async function endAccountSessions(store: Store, accountId: string, ttl: number): Promise<number> {
  const grantIds = ((await store.oidc.find(GRANTS_MODEL, accountId))?.grantIds as string[] | undefined) ?? [];
  await store.oidc.upsert(LOGOUT_MODEL, accountId, { at: Math.floor(Date.now() / 1000) }, ttl);
  for (const grantId of grantIds) await revokeGrant(store, grantId);
  await store.oidc.destroy(GRANTS_MODEL, accountId);
  return grantIds.length;
}

/** Whether a session that logged in at `loginTs` was ended by an upstream logout since. */
export async function sessionEnded(store: Store, accountId: string, loginTs: number | undefined): Promise<boolean> {
  const marker = await store.oidc.find(LOGOUT_MODEL, accountId);
  return typeof marker?.at === 'number' && (loginTs ?? 0) <= marker.at;
}
