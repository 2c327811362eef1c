import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { OidcPayload, Store } from '../store/contracts.ts';
import { isStoreUnavailable } from '../store/errors.ts';
import { JWT_HANDLE_PREFIX, type JwtAccessTokenLookup } from './jwt-introspection.ts';

// Bridges oidc-provider's adapter interface to the store contracts. Three things oidc-provider leaves
// to the adapter are done here:
//  - an unreachable store becomes `temporarily_unavailable` (503), never a 500 or a partial answer;
//  - `consume` is atomic: the loser of a race on a code or refresh token gets invalid_grant and the
//    whole grant is revoked, exactly as oidc-provider does for a sequential reuse;
//  - JWT access tokens, which oidc-provider never stores, are resolved from their signature so they
//    can be introspected and revoked like opaque ones (see jwt-introspection.ts).

const GRANT_BOUND_MODELS = ['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest'];
const ACCESS_TOKEN_MODELS = new Set(['AccessToken', 'ClientCredentials']);

export const REVOKED_JTI_PREFIX = 'revoked-jti:';

export interface AdapterOptions {
  store: Store;
  jwtLookup: JwtAccessTokenLookup;
  /** Longest access-token lifetime: how long a revoked JWT's jti must be remembered. */
  maxAccessTokenTTL: number;
  onReuseDetected?: (model: string, grantId: string | undefined) => void;
}

/** Rethrows a store outage as oidc-provider's temporarily_unavailable (503); anything else unchanged. */
export function unavailable(err: unknown): never {
  if (isStoreUnavailable(err)) {
    const e = new errors.TemporarilyUnavailable('the authorization server cannot reach its store; try again shortly');
    // oidc-provider answers with err.statusCode; 503 tells clients and load balancers to retry.
    Object.assign(e, { status: 503, statusCode: 503 });
    throw e;
  }
  throw err;
}

async function guarded<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    return unavailable(err);
  }
}

export async function revokeGrant(store: Store, grantId: string): Promise<void> {
  await Promise.all([...GRANT_BOUND_MODELS.map((m) => store.oidc.revokeByGrantId(m, grantId)), store.oidc.destroy('Grant', grantId)]);
}

export function adapterFactory(options: AdapterOptions): new (model: string) => Adapter {
  const { store, jwtLookup } = options;

  return class StoreAdapter implements Adapter {
    readonly model: string;

    constructor(model: string) {
      this.model = model;
    }

    upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      return guarded(() => store.oidc.upsert(this.model, id, payload as OidcPayload, expiresIn || undefined));
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (ACCESS_TOKEN_MODELS.has(this.model) && id.startsWith(JWT_HANDLE_PREFIX)) {
        return guarded(() => jwtLookup(this.model, id.slice(JWT_HANDLE_PREFIX.length)));
      }
      return guarded(async () => (await store.oidc.find(this.model, id)) as AdapterPayload | undefined);
    }

    findByUid(uid: string): Promise<AdapterPayload | undefined> {
      return guarded(async () => (await store.oidc.findByUid(this.model, uid)) as AdapterPayload | undefined);
    }

    findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      return guarded(async () => (await store.oidc.findByUserCode(this.model, userCode)) as AdapterPayload | undefined);
    }

    async consume(id: string): Promise<void> {
      const won = await guarded(() => store.oidc.consume(this.model, id));
      if (won) return;
      // Someone else consumed it between oidc-provider's check and this call: treat as reuse.
      const record = await guarded(() => store.oidc.find(this.model, id));
      const grantId = typeof record?.grantId === 'string' ? record.grantId : undefined;
      if (grantId) await guarded(() => revokeGrant(store, grantId));
      options.onReuseDetected?.(this.model, grantId);
      if (this.model === 'PushedAuthorizationRequest') throw new errors.InvalidRequestUri('request_uri already used');
      throw new errors.InvalidGrant(`${this.model === 'RefreshToken' ? 'refresh token' : 'grant'} already used`);
    }

    async destroy(id: string): Promise<void> {
      await guarded(async () => {
        if (ACCESS_TOKEN_MODELS.has(this.model)) {
          // A JWT cannot be deleted; remembering its jti makes introspection answer inactive.
          await store.replay.rememberOnce(REVOKED_JTI_PREFIX + id, options.maxAccessTokenTTL);
        }
        await store.oidc.destroy(this.model, id);
      });
    }

    revokeByGrantId(grantId: string): Promise<void> {
      return guarded(() => store.oidc.revokeByGrantId(this.model, grantId));
    }
  };
}
