import { randomUUID } from 'node:crypto';
import type { AccountStore } from '../store/contracts.ts';
import type { Sealer } from '../crypto/seal.ts';
import type { UpstreamIdentity } from './upstream.ts';

// Local accounts and their links to upstream identities. Profiles are sealed before they reach the
// store, so names and NHS numbers are never stored in clear.

const PROFILE_PURPOSE = 'account-profile';

export interface Profile {
  [claim: string]: unknown;
}

export interface ResolvedAccount {
  accountId: string;
  created: boolean;
  profile: Profile;
}

export interface AccountEvents {
  onAccountCreated?(accountId: string, identity: UpstreamIdentity): void | Promise<void>;
  onLinked?(accountId: string, identity: UpstreamIdentity, evidence: string): void | Promise<void>;
}

export class AccountService {
  readonly #store: AccountStore;
  readonly #sealer: Sealer;
  readonly #events: AccountEvents;

  constructor(store: AccountStore, sealer: Sealer, events: AccountEvents = {}) {
    this.#store = store;
    this.#sealer = sealer;
    this.#events = events;
  }

  async getProfile(accountId: string): Promise<Profile | undefined> {
    const account = await this.#store.getAccount(accountId);
    if (!account) return undefined;
    return JSON.parse(this.#sealer.open(account.sealedProfile, PROFILE_PURPOSE)) as Profile;
  }

  /**
   * The account linked to this upstream identity; with `provision`, a new account is created and linked
   * just in time. Linking to an existing account by other evidence is the federation issue's work.
   */
  async resolve(identity: UpstreamIdentity, options: { provision: boolean }): Promise<ResolvedAccount | undefined> {
    const link = await this.#store.findLink(identity.provider, identity.subject);
    if (link) {
      const profile = { ...((await this.getProfile(link.accountId)) ?? {}), ...identity.claims };
      await this.#store.updateAccount(link.accountId, this.#sealer.seal(JSON.stringify(profile), PROFILE_PURPOSE));
      return { accountId: link.accountId, created: false, profile };
    }
    if (!options.provision) return undefined;
    const accountId = randomUUID();
    const profile = { ...identity.claims };
    await this.#store.createAccount({ id: accountId, createdAt: Math.floor(Date.now() / 1000), sealedProfile: this.#sealer.seal(JSON.stringify(profile), PROFILE_PURPOSE) });
    const linked = await this.#store.createLink({ provider: identity.provider, subject: identity.subject, accountId, evidence: 'jit', createdAt: Math.floor(Date.now() / 1000) });
    if (!linked.created) {
      // Lost a race with a parallel first login of the same identity: use the winner's account.
      return { accountId: linked.existingAccountId, created: false, profile };
    }
    await this.#events.onAccountCreated?.(accountId, identity);
    await this.#events.onLinked?.(accountId, identity, 'jit');
    return { accountId, created: true, profile };
  }
}
