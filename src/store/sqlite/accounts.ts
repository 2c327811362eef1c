import type { Account, AccountStore, Link } from '../contracts.ts';
import { integer, text, type Row } from './rows.ts';
import type { Sql } from './sql.ts';

function toLink(row: Row): Link {
  return {
    provider: text(row, 'provider'),
    subject: text(row, 'subject'),
    accountId: text(row, 'account_id'),
    evidence: text(row, 'evidence'),
    createdAt: integer(row, 'created_at'),
  };
}

export function createSqliteAccountStore(sql: Sql): AccountStore {
  return {
    createAccount(account: Account) {
      return sql.run(() => {
        const result = sql
          .stmt('INSERT INTO accounts (id, created_at, sealed_profile) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING')
          .run(account.id, account.createdAt, account.sealedProfile);
        // Overwriting an existing account would silently detach its profile from its links.
        if (Number(result.changes) !== 1) throw new Error(`account ${account.id} already exists`);
      });
    },

    getAccount(id) {
      return sql.run(() => {
        const row = sql.stmt('SELECT id, created_at, sealed_profile FROM accounts WHERE id = ?').get(id);
        return row ? { id: text(row, 'id'), createdAt: integer(row, 'created_at'), sealedProfile: text(row, 'sealed_profile') } : undefined;
      });
    },

    updateAccount(id, sealedProfile) {
      return sql.run(() => {
        const result = sql.stmt('UPDATE accounts SET sealed_profile = ? WHERE id = ?').run(sealedProfile, id);
        if (Number(result.changes) !== 1) throw new Error(`account ${id} does not exist`);
      });
    },

    createLink(link) {
      // Insert-or-read in one IMMEDIATE transaction: the loser of a race always sees the winner's row,
      // even if a third party deletes and re-creates the link in between.
      return sql.immediate(() => {
        const inserted = sql
          .stmt(
            `INSERT INTO links (provider, subject, account_id, evidence, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (provider, subject) DO NOTHING`,
          )
          .run(link.provider, link.subject, link.accountId, link.evidence, link.createdAt);
        if (Number(inserted.changes) === 1) return { created: true as const };
        const row = sql.stmt('SELECT account_id FROM links WHERE provider = ? AND subject = ?').get(link.provider, link.subject);
        if (!row) throw new Error('link vanished inside a transaction');
        return { created: false as const, existingAccountId: text(row, 'account_id') };
      });
    },

    findLink(provider, subject) {
      return sql.run(() => {
        const row = sql.stmt('SELECT * FROM links WHERE provider = ? AND subject = ?').get(provider, subject);
        return row ? toLink(row) : undefined;
      });
    },

    listLinks(accountId) {
      return sql.run(() =>
        sql.stmt('SELECT * FROM links WHERE account_id = ? ORDER BY created_at, provider, subject').all(accountId).map(toLink),
      );
    },

    deleteLink(provider, subject, accountId) {
      return sql.run(() => {
        const result = sql.stmt('DELETE FROM links WHERE provider = ? AND subject = ? AND account_id = ?').run(provider, subject, accountId);
        return Number(result.changes) === 1;
      });
    },

    setIdentifier(kind, hashedValue, accountId) {
      return sql.immediate(() => {
        const inserted = sql
          .stmt('INSERT INTO identifiers (kind, hashed_value, account_id) VALUES (?, ?, ?) ON CONFLICT (kind, hashed_value) DO NOTHING')
          .run(kind, hashedValue, accountId);
        if (Number(inserted.changes) === 1) return { created: true as const };
        const row = sql.stmt('SELECT account_id FROM identifiers WHERE kind = ? AND hashed_value = ?').get(kind, hashedValue);
        if (!row) throw new Error('identifier vanished inside a transaction');
        return { created: false as const, existingAccountId: text(row, 'account_id') };
      });
    },

    findByIdentifier(kind, hashedValue) {
      return sql.run(() => {
        const row = sql.stmt('SELECT account_id FROM identifiers WHERE kind = ? AND hashed_value = ?').get(kind, hashedValue);
        return row ? text(row, 'account_id') : undefined;
      });
    },
  };
}
