// Typed errors for the broker's own routes, mapped to HTTP in one place (web/error-handler.ts).
// oidc-provider's routes map their own errors to OAuth JSON; this covers everything else.

export class BrokerHttpError extends Error {
  readonly status: number;
  /** Shown to the user; never contains internal detail. */
  readonly publicMessage: string;
  readonly title: string;
  constructor(status: number, title: string, publicMessage: string) {
    super(publicMessage);
    this.status = status;
    this.title = title;
    this.publicMessage = publicMessage;
  }
}

export class BadRequestError extends BrokerHttpError {
  constructor(message: string, status = 400) {
    super(status, 'There is a problem with this request', message);
    this.name = 'BadRequestError';
  }
}

export class NotFoundError extends BrokerHttpError {
  constructor(message = 'The page you asked for does not exist.') {
    super(404, 'Page not found', message);
    this.name = 'NotFoundError';
  }
}

export class ForbiddenError extends BrokerHttpError {
  constructor(message = 'You cannot do this.') {
    super(403, 'You cannot do this', message);
    this.name = 'ForbiddenError';
  }
}

/** Sign-in failed upstream or could not be verified. Deliberately generic: the reason is audited, not shown. */
export class LoginFailedError extends BrokerHttpError {
  readonly reason: string;
  constructor(reason: string) {
    super(401, 'You could not be signed in', 'We could not verify your sign-in. Please go back to the service and try again.');
    this.name = 'LoginFailedError';
    this.reason = reason;
  }
}

/** An upstream identity provider is not working (down, or its circuit is open): the user can choose another. */
export class UpstreamNotRespondingError extends BrokerHttpError {
  /** For the log only. */
  readonly reason: string;
  readonly retryAfterSeconds: number;
  /** This sign-in's login chooser, to pick another upstream (none outside an authorization). */
  readonly chooser: string | undefined;
  constructor(displayName: string, reason: string, retryAfterSeconds: number, chooser?: string) {
    super(503, `${displayName} is not responding`, `${displayName} is not responding; try again in a few minutes or choose another way to sign in.`);
    this.name = 'UpstreamNotRespondingError';
    this.reason = reason;
    this.retryAfterSeconds = retryAfterSeconds;
    this.chooser = chooser;
  }
}

export class UnavailableError extends BrokerHttpError {
  constructor() {
    super(503, 'Sorry, the service is unavailable', 'The service cannot reach its data store. Please try again in a few seconds.');
    this.name = 'UnavailableError';
  }
}
