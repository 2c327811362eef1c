import { randomUUID } from 'node:crypto';
import type { AccountStore } from '../store/contracts.ts';
import type { Sealer } from '../crypto/seal.ts';
import type { UpstreamIdentity } from './upstream.ts';
import type { LinkableConfig } from '../config/upstream-common.ts';
import { meetsAssurance } from './assurance.ts';

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
  /** Evidence, when this login was linked to an existing account just now. */
  linkedBy?: string;
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

  /** Verified linkable identifiers of this login: only those the config marks linkable, at the assurance it requires. */
  #identifiers(identity: UpstreamIdentity, linkable: LinkableConfig[]): Array<{ kind: string; hashed: string; evidence: string }> {
    return linkable.flatMap((l) => {
      const value = identity.claims[l.claim];
      if (typeof value !== 'string' || value === '') return [];
      if (!meetsAssurance(identity.assurance, { aal: l.minimumAal, proofing: l.minimumProofing })) return [];
      const level = l.minimumProofing ?? (l.minimumAal ? `AAL${l.minimumAal}` : 'asserted');
      return [{ kind: l.kind, hashed: this.#sealer.blindIndex(value, `identifier:${l.kind}`), evidence: `${l.kind}:${level}` }];
    });
  }

  async #saveProfile(accountId: string, profile: Profile): Promise<void> {
    await this.#store.updateAccount(accountId, this.#sealer.seal(JSON.stringify(profile), PROFILE_PURPOSE));
  }

  /**
   * The local account for an upstream identity:
   *  1. the account already linked to (provider, subject);
   *  2. else an account holding the same verified, linkable identifier (an NHS number from a P9 login,
   *     a CIS2 user id), linked now with that evidence. Never by e-mail: e-mail is not linkable;
   *  3. else, with `provision`, a new account (just-in-time), which records its verified identifiers.
   */
  async resolve(identity: UpstreamIdentity, profile: Profile, options: { provision: boolean; linkable?: LinkableConfig[] }): Promise<ResolvedAccount | undefined> {
    const now = Math.floor(Date.now() / 1000);
    const link = await this.#store.findLink(identity.provider, identity.subject);
    if (link) {
      const merged = { ...((await this.getProfile(link.accountId)) ?? {}), ...profile };
      await this.#saveProfile(link.accountId, merged);
      return { accountId: link.accountId, created: false, profile: merged };
    }
    const identifiers = this.#identifiers(identity, options.linkable ?? []);
    for (const id of identifiers) {
      const existing = await this.#store.findByIdentifier(id.kind, id.hashed);
      if (!existing) continue;
      const linked = await this.#store.createLink({ provider: identity.provider, subject: identity.subject, accountId: existing, evidence: id.evidence, createdAt: now });
      const accountId = linked.created ? existing : linked.existingAccountId;
      if (linked.created) await this.#events.onLinked?.(accountId, identity, id.evidence);
      const merged = { ...((await this.getProfile(accountId)) ?? {}), ...profile };
      await this.#saveProfile(accountId, merged);
      return { accountId, created: false, profile: merged, linkedBy: linked.created ? id.evidence : undefined };
    }
    if (!options.provision) return undefined;
    const accountId = randomUUID();
    await this.#store.createAccount({ id: accountId, createdAt: now, sealedProfile: this.#sealer.seal(JSON.stringify(profile), PROFILE_PURPOSE) });
    const linked = await this.#store.createLink({ provider: identity.provider, subject: identity.subject, accountId, evidence: 'jit', createdAt: now });
    if (!linked.created) {
      // Lost a race with a parallel first login of the same identity: use the winner's account.
      return { accountId: linked.existingAccountId, created: false, profile };
    }
    for (const id of identifiers) await this.#store.setIdentifier(id.kind, id.hashed, accountId);
    await this.#events.onAccountCreated?.(accountId, identity);
    await this.#events.onLinked?.(accountId, identity, 'jit');
    return { accountId, created: true, profile };
  }

  /** The account holding a verified identifier (e.g. an NHS number from a P9 login), if any. */
  async findByIdentifier(kind: string, value: string): Promise<string | undefined> {
    return this.#store.findByIdentifier(kind, this.#sealer.blindIndex(value, `identifier:${kind}`));
  }

  async links(accountId: string) {
    return this.#store.listLinks(accountId);
  }

  /** A user removes one of their own links; never the last one (the account would become unreachable). */
  async unlink(accountId: string, provider: string, subject: string): Promise<boolean> {
    const links = await this.#store.listLinks(accountId);
    if (links.length <= 1) return false;
    return this.#store.deleteLink(provider, subject, accountId);
  }
}
