// The storage contracts every backend (sqlite, redis) implements. One conformance suite
// (test/store/contract.ts) runs against each backend; atomicity is part of the contract.
//
// Backends throw StoreUnavailableError (src/store/errors.ts) when the store cannot be reached,
// so callers can fail closed (503) instead of guessing.

/** The JSON payload oidc-provider hands its adapter. Opaque to the store except for the index fields. */
export interface OidcPayload {
  [key: string]: unknown;
  grantId?: string;
  uid?: string;
  userCode?: string;
  consumed?: unknown;
}

export interface OidcModelStore {
  /** Insert or replace; `expiresIn` seconds (undefined = no expiry). Indexes grantId, uid, userCode when present. */
  upsert(model: string, id: string, payload: OidcPayload, expiresIn: number | undefined): Promise<void>;
  find(model: string, id: string): Promise<OidcPayload | undefined>;
  findByUid(model: string, uid: string): Promise<OidcPayload | undefined>;
  findByUserCode(model: string, userCode: string): Promise<OidcPayload | undefined>;
  /**
   * Marks the record consumed (payload.consumed = epoch seconds) if and only if it exists and is not consumed
   * yet. Atomic: of any number of concurrent calls for one id, exactly one returns true.
   */
  consume(model: string, id: string): Promise<boolean>;
  destroy(model: string, id: string): Promise<void>;
  /** Deletes every record of `model` that carries this grantId. */
  revokeByGrantId(model: string, grantId: string): Promise<void>;
}

export interface Account {
  id: string;
  createdAt: number;
  /** Profile claims, sealed (AES-256-GCM) by the identity layer; the store never sees plaintext personal data. */
  sealedProfile: string;
}

export interface Link {
  provider: string;
  subject: string;
  accountId: string;
  /** Why this link was made (for example "nhs_number:P9", "jit"); kept for audit and for the user to review. */
  evidence: string;
  createdAt: number;
}

export interface AccountStore {
  createAccount(account: Account): Promise<void>;
  getAccount(id: string): Promise<Account | undefined>;
  updateAccount(id: string, sealedProfile: string): Promise<void>;
  /**
   * Creates a link unless (provider, subject) is linked already. Atomic: of concurrent calls for one
   * (provider, subject) exactly one gets 'created'. Returns the existing link's account otherwise.
   */
  createLink(link: Link): Promise<{ created: true } | { created: false; existingAccountId: string }>;
  findLink(provider: string, subject: string): Promise<Link | undefined>;
  listLinks(accountId: string): Promise<Link[]>;
  /** Removes the link only if it belongs to accountId. */
  deleteLink(provider: string, subject: string, accountId: string): Promise<boolean>;
  /**
   * Secondary lookup by a verified, linkable identifier (for example an NHS number), stored as a keyed hash
   * by the caller so the raw identifier never reaches the store.
   */
  setIdentifier(kind: string, hashedValue: string, accountId: string): Promise<{ created: true } | { created: false; existingAccountId: string }>;
  findByIdentifier(kind: string, hashedValue: string): Promise<string | undefined>;
}

export interface StoredKey {
  kid: string;
  alg: string;
  use: 'sig' | 'enc';
  /** Public JWK, JSON. */
  publicJwk: Record<string, unknown>;
  /** Private JWK, sealed under the key-encryption key. */
  sealedPrivateJwk: string;
  createdAt: number;
  /** Epoch seconds from which the key may sign. Before that it is published for verification only. */
  activatesAt: number;
  /** Epoch seconds after which it no longer signs; it stays published until `removeAfter`. */
  retiresAt?: number;
  removeAfter?: number;
}

export interface KeyStore {
  listKeys(): Promise<StoredKey[]>;
  putKey(key: StoredKey): Promise<void>;
  deleteKey(kid: string): Promise<void>;
}

export interface ReplayCache {
  /** True the first time a key is seen within ttl seconds, false afterwards. Atomic across processes. */
  rememberOnce(key: string, ttlSeconds: number): Promise<boolean>;
  /** True if the key has been remembered and has not expired. */
  has(key: string): Promise<boolean>;
}

export interface RateLimitStore {
  /** Counts one hit in the fixed window of `windowSeconds` that contains now; returns the count so far. */
  hit(key: string, windowSeconds: number): Promise<{ count: number; resetAt: number }>;
}

/**
 * One version of a consent (delegation) record. The record itself is a signed JWS, sealed by the
 * delegation layer: the store only sees opaque text plus the index fields it needs to find records.
 */
export interface StoredConsent {
  id: string;
  version: number;
  /** Patient's account id (random, not personal data). */
  grantor: string;
  /** Carer's account id; undefined while an invitation is pending. */
  grantee?: string;
  status: string;
  /** The sealed, signed record text. */
  record: string;
  updatedAt: number;
  /** Epoch seconds at which the consent's period ends (for expiry), if it has an end. */
  endsAt?: number;
}

export interface ConsentStore {
  /** Stores version 1. False (and nothing written) if the id exists. */
  create(consent: StoredConsent): Promise<boolean>;
  /**
   * Compare-and-set: writes `consent` (whose version must be expectedVersion + 1) only if the current
   * version is `expectedVersion`. Atomic: of concurrent updates from one version, exactly one wins.
   * Every version is kept (history); indexes follow the newest.
   */
  update(consent: StoredConsent, expectedVersion: number): Promise<boolean>;
  /** The newest version. Cost independent of the number of consents stored. */
  get(id: string): Promise<StoredConsent | undefined>;
  /** All versions, oldest first. */
  history(id: string): Promise<StoredConsent[]>;
  listByGrantor(accountId: string): Promise<StoredConsent[]>;
  listByGrantee(accountId: string): Promise<StoredConsent[]>;
  /** Newest versions whose endsAt <= at and whose status is one of `statuses` (expiry sweep), up to limit. */
  listEnding(at: number, statuses: string[], limit: number): Promise<StoredConsent[]>;
}

export interface Store {
  readonly kind: 'sqlite' | 'redis';
  readonly oidc: OidcModelStore;
  readonly accounts: AccountStore;
  readonly consents: ConsentStore;
  readonly keys: KeyStore;
  readonly replay: ReplayCache;
  readonly rateLimits: RateLimitStore;
  /** Resolves when the store answers; throws StoreUnavailableError otherwise. Bounded by a short timeout. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
