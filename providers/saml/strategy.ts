import passport from 'passport';
import { Strategy as SamlStrategy, type PassportSamlConfig, type Profile, type VerifiedCallback } from '@node-saml/passport-saml';

// @node-saml/passport-saml as a passport Strategy on the connector's own Authenticator, with
// `session: false`: the broker owns the session. Passport is written for Express, so each call gets a
// minimal request and a response that only records what the strategy does (redirect, page, success,
// fail, error); Koa then answers. Nothing here writes to the real socket.

export type StrategyOutcome =
  | { kind: 'redirect'; url: string }
  | { kind: 'page'; html: string }
  | { kind: 'success'; profile: Profile }
  | { kind: 'fail'; reason: string }
  | { kind: 'error'; error: unknown }
  | { kind: 'pass' };

export interface StrategyCall {
  method: 'GET' | 'POST';
  url: string;
  query?: Record<string, string>;
  body?: Record<string, string>;
  headers?: Record<string, string | string[] | undefined>;
}

interface ProfileHolder {
  samlProfile: Profile;
}

function isProfileHolder(user: unknown): user is ProfileHolder {
  return typeof user === 'object' && user !== null && 'samlProfile' in user && typeof (user as ProfileHolder).samlProfile === 'object';
}

// The strategy only hands the verified profile on; every decision is taken by the connector after.
const signonVerify = (profile: Profile | null, done: VerifiedCallback): void => {
  if (!profile) done(null, undefined, { message: 'no profile' });
  else done(null, { samlProfile: profile });
};
const logoutVerify = (profile: Profile | null, done: VerifiedCallback): void => {
  done(null, profile ? { samlProfile: profile } : undefined);
};

type Middleware = (req: object, res: object, next: (err?: unknown) => void) => void;

export class PassportSaml {
  readonly #authenticator = new passport.Authenticator();
  readonly #strategies = new Map<string, SamlStrategy>();

  /** Registers (or replaces) a strategy under `name`. */
  use(name: string, options: PassportSamlConfig): SamlStrategy {
    const strategy = new SamlStrategy({ ...options, name, passReqToCallback: false }, signonVerify, logoutVerify);
    // passport-saml is typed against its own nested @types/express 4, @types/passport against
    // express 5; the runtime objects are the same passport-strategy class.
    this.#authenticator.use(name, strategy as unknown as passport.Strategy);
    this.#strategies.set(name, strategy);
    return strategy;
  }

  unuse(name: string): void {
    this.#authenticator.unuse(name);
    this.#strategies.delete(name);
  }

  names(): string[] {
    return [...this.#strategies.keys()];
  }

  get(name: string): SamlStrategy | undefined {
    return this.#strategies.get(name);
  }

  run(name: string, call: StrategyCall): Promise<StrategyOutcome> {
    return new Promise<StrategyOutcome>((resolve) => {
      const headers = new Map<string, string>();
      const res = {
        statusCode: 200,
        setHeader(key: string, value: string | number): void {
          headers.set(key.toLowerCase(), String(value));
        },
        end(): void {
          const location = headers.get('location');
          resolve(location ? { kind: 'redirect', url: location } : { kind: 'error', error: new Error('strategy ended the response without a redirect') });
        },
        send(body: string): void {
          resolve({ kind: 'page', html: body });
        },
      };
      const req = { method: call.method, url: call.url, query: call.query ?? {}, body: call.body ?? {}, headers: call.headers ?? {}, res };
      const callback = (err: unknown, user: unknown, info: unknown): void => {
        if (err) resolve({ kind: 'error', error: err });
        else if (isProfileHolder(user)) resolve({ kind: 'success', profile: user.samlProfile });
        else resolve({ kind: 'fail', reason: typeof info === 'object' && info !== null && 'message' in info ? String(info.message) : 'no user' });
      };
      const middleware: Middleware = this.#authenticator.authenticate(name, { session: false, failWithError: false }, callback);
      try {
        middleware(req, res, (err) => resolve(err ? { kind: 'error', error: err } : { kind: 'pass' }));
      } catch (error) {
        resolve({ kind: 'error', error });
      }
    });
  }
}
