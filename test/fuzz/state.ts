import { DatabaseSync } from 'node:sqlite';

// What a rejected request must not add to: OIDC models (grants, codes, sessions, interactions, tokens;
// replay markers excluded, since recording a refused jti is the point), accounts, upstream links and
// consent records with their versions. Rows only ever grow from a request; the store's expiry purge may
// shrink them at any time, which is not the request's doing, so callers compare with "more than before".
export function stateRows(dbFile: string): number {
  const db = new DatabaseSync(dbFile, { readOnly: true });
  try {
    const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
    return (
      count("SELECT COUNT(*) AS n FROM oidc_models WHERE model NOT IN ('ReplayDetection')") +
      count('SELECT COUNT(*) AS n FROM accounts') +
      count('SELECT COUNT(*) AS n FROM links') +
      count('SELECT COUNT(*) AS n FROM consents') +
      count('SELECT COUNT(*) AS n FROM consent_versions')
    );
  } finally {
    db.close();
  }
}
