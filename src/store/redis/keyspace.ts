// Every key name in one place. Parts are URI-encoded so ids containing ':' '{' or '}' can neither collide
// ("a:b"+"c" vs "a"+"b:c") nor break the hash tag. The `{...}` hash tag covers the part that identifies
// the record, so keys one script touches hash to one Cluster slot and unrelated records spread out.

const enc = encodeURIComponent;

export interface Keyspace {
  oidc(model: string, id: string): string;
  oidcUid(model: string, uid: string): string;
  oidcUserCode(model: string, userCode: string): string;
  oidcGrant(model: string, grantId: string): string;
  account(id: string): string;
  accountLinks(accountId: string): string;
  /** The member naming a link inside accountLinks, and from which its key is derived. */
  linkMember(provider: string, subject: string): string;
  link(member: string): string;
  identifier(kind: string, hashedValue: string): string;
  /** A consent's current pointer (hash); its tag `{consent:<id>}` is the slot of everything per consent. */
  consent(id: string): string;
  /** A consent's versions (list, oldest first), in the pointer's slot. */
  consentVersions(id: string): string;
  /** Sorted sets of consent ids by grantor / grantee account, in the account's slot. */
  consentsByGrantor(accountId: string): string;
  consentsByGrantee(accountId: string): string;
  /** Sorted set of a status's consents by endsAt, one slot per status. */
  consentsEnding(status: string): string;
  signingKeys(): string;
  replay(key: string): string;
  rateLimit(key: string, windowMs: number, windowStart: number): string;
}

export function createKeyspace(prefix: string): Keyspace {
  if (/[{}]/.test(prefix)) throw new Error('redis key prefix must not contain { or } (they would become the hash tag)');
  return {
    oidc: (model, id) => `${prefix}oidc:{${enc(model)}:${enc(id)}}`,
    oidcUid: (model, uid) => `${prefix}oidc-uid:{${enc(model)}:${enc(uid)}}`,
    oidcUserCode: (model, userCode) => `${prefix}oidc-user-code:{${enc(model)}:${enc(userCode)}}`,
    oidcGrant: (model, grantId) => `${prefix}oidc-grant:{${enc(model)}:${enc(grantId)}}`,
    account: (id) => `${prefix}account:{${enc(id)}}`,
    accountLinks: (accountId) => `${prefix}account-links:{${enc(accountId)}}`,
    linkMember: (provider, subject) => `${enc(provider)}:${enc(subject)}`,
    link: (member) => `${prefix}link:{${member}}`,
    identifier: (kind, hashedValue) => `${prefix}identifier:{${enc(kind)}:${enc(hashedValue)}}`,
    consent: (id) => `${prefix}{consent:${enc(id)}}`,
    consentVersions: (id) => `${prefix}{consent:${enc(id)}}:versions`,
    consentsByGrantor: (accountId) => `${prefix}consent-grantor:{${enc(accountId)}}`,
    consentsByGrantee: (accountId) => `${prefix}consent-grantee:{${enc(accountId)}}`,
    consentsEnding: (status) => `${prefix}consent-ending:{${enc(status)}}`,
    signingKeys: () => `${prefix}signing-keys`,
    replay: (key) => `${prefix}replay:{${enc(key)}}`,
    rateLimit: (key, windowMs, windowStart) => `${prefix}rate:{${enc(key)}}:${windowMs}:${windowStart}`,
  };
}
