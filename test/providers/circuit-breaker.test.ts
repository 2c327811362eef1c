import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createOidcConnector } from '../../providers/oidc/index.ts';
import type { OidcUpstreamConfig } from '../../src/config/upstream-oidc.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { REDIRECT } from '../helpers/broker.ts';
import { CIS2_ISSUER_PATH } from '../peers/fake-cis2.ts';
import { freePort } from '../peers/ports.ts';
import { Browser, hidden, startHarness, type Harness, type LoginOutcome } from './oidc/harness.ts';

// The per-upstream circuit breaker, through the broker, against real upstreams (the fake CIS2 and NHS
// login OPs, and the demo upstream): an upstream that is slow, down or answers garbage gives a clear page
// in bounded time; after `failureThreshold` outages in a row its circuit opens and logins fail fast
// without being sent there; after `openSeconds` one trial goes through and a good login closes it.
// Meanwhile the other upstreams work, also while the first one hangs. Refused logins (garbage, replayed
// or forged callbacks) never count, so an attacker cannot open the circuit for everyone.
//
//   cis2       threshold 3, open 2 s: the state machine
//   cis2-b     threshold 1000 (never opens): which failures are outages, one by one
//   cis2-down  nothing listens on its port since start-up: discovery failures, threshold 2
//   nhs-login  and demo: the bystanders

const METRICS_TOKEN = 'metrics-token-0123456789';
const OPEN_SECONDS = 2;
const THRESHOLD = 3;
/** The CIS2 connectors' bound on every upstream request. */
const TIMEOUT_MS = 2000;
const NOT_RESPONDING = 'is not responding; try again in a few minutes or choose another way to sign in';
const GENERIC = 'We could not verify your sign-in';
const HTML_ERROR = '<html><body><h1>502 Bad Gateway</h1></body></html>';

function notResponding(outcome: LoginOutcome): void {
  expect(outcome.kind).toBe('page');
  if (outcome.kind !== 'page') return;
  expect(outcome.status).toBe(503);
  expect(outcome.html).toContain(NOT_RESPONDING);
}

function refused(outcome: LoginOutcome): void {
  expect(outcome.kind).toBe('page');
  if (outcome.kind !== 'page') return;
  expect(outcome.status).toBe(401);
  expect(outcome.html).toContain(GENERIC);
}

describe('per-upstream circuit breaker', () => {
  let h: Harness;
  let deadPort: number;

  beforeAll(async () => {
    deadPort = await freePort();
    const downConfig = (cis2Config: (extra?: Partial<OidcUpstreamConfig>) => OidcUpstreamConfig) =>
      cis2Config({ id: 'cis2-down', displayName: 'CIS2 (down)', issuer: `http://127.0.0.1:${deadPort}${CIS2_ISSUER_PATH}` });
    h = await startHarness({
      cis2: { timeoutMs: TIMEOUT_MS },
      extra: async ({ cis2Config, deps }) => [
        await createOidcConnector(cis2Config({ id: 'cis2-b', displayName: 'CIS2 B' }), deps),
        await createOidcConnector(downConfig(cis2Config), deps),
      ],
      // The breaker settings come from the upstream entries of the configuration, as in production (the
      // connectors themselves are the harness's, already built against the fakes).
      configure: (input, { cis2Config }) => {
        const entry = (c: OidcUpstreamConfig, circuitBreaker: { failureThreshold: number; openSeconds: number }) => ({ ...c, circuitBreaker }) as NonNullable<ConfigInput['upstreams']>[number];
        input.upstreams = [
          entry(cis2Config(), { failureThreshold: THRESHOLD, openSeconds: OPEN_SECONDS }),
          entry(cis2Config({ id: 'cis2-b', displayName: 'CIS2 B' }), { failureThreshold: 1000, openSeconds: 60 }),
          entry(downConfig(cis2Config), { failureThreshold: 2, openSeconds: 60 }),
        ];
        input.metrics = { bearerToken: METRICS_TOKEN };
      },
    });
  });

  afterAll(async () => {
    await h?.close();
  });

  async function metric(name: string, upstream: string): Promise<number> {
    const res = await fetch(`${h.base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    const text = await res.text();
    const m = new RegExp(`^${name}\\{upstream="${upstream}"\\} (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  }
  const circuit = (upstream: string) => metric('broker_upstream_circuit_state', upstream);

  async function waitForCircuit(upstream: string, value: number, withinMs: number): Promise<void> {
    const until = Date.now() + withinMs;
    while ((await circuit(upstream)) !== value) {
      if (Date.now() > until) throw new Error(`circuit of ${upstream} never became ${value}`);
      await sleep(50);
    }
  }

  function circuitLogs(upstream: string, since: number): string[] {
    return h.logs.slice(since).flatMap((l) => (l.upstream === upstream && typeof l.msg === 'string' && l.msg.startsWith('upstream circuit') ? [String(l.to)] : []));
  }

  /** A login to CIS2 whose token endpoint answers an HTML 502: one outage. */
  async function outage(upstream = 'cis2'): Promise<LoginOutcome> {
    h.cis2.faults.token = { status: 502, body: HTML_ERROR };
    try {
      return await h.attempt(upstream, 'gp');
    } finally {
      h.cis2.faults = {};
    }
  }

  /** Back to closed whatever the state: wait out the cool-down (and any trial slot), then a good login. */
  async function closeCircuit(): Promise<void> {
    h.cis2.faults = {};
    h.cis2.tokenDelayMs = 0;
    const until = Date.now() + 2 * OPEN_SECONDS * 1000 + 2000;
    while ((await circuit('cis2')) !== 0) {
      if ((await circuit('cis2')) === 1) await h.fullLogin('cis2', 'gp').catch(() => {});
      if (Date.now() > until) throw new Error('the circuit of cis2 did not close');
      await sleep(100);
    }
    await h.fullLogin('cis2', 'gp');
  }

  /** The broker's login chooser for a new authorization, in this browser. */
  async function chooser(browser: Browser): Promise<{ uid: string; csrf: string; html: string }> {
    const c = await h.clientLogin({ login_hint: 'gp' });
    let url = c.authorizationUrl;
    let res = await browser.get(url);
    for (let loc = res.headers.get('location'); loc; loc = res.headers.get('location')) {
      url = new URL(loc, url).href;
      res = await browser.get(url);
    }
    const html = await res.text();
    return { uid: new URL(url).pathname.split('/').pop()!, csrf: hidden(html, 'csrf'), html };
  }

  /** Chooses an upstream on the chooser; the broker's answer and how long it took. */
  async function choose(browser: Browser, ch: { uid: string; csrf: string }, upstream: string) {
    const t0 = performance.now();
    const res = await browser.postForm(`${h.base}/interaction/${ch.uid}/login`, { csrf: ch.csrf, upstream });
    const html = await res.text();
    return { res, html, ms: performance.now() - t0 };
  }

  /** A new browser's authorization, and its choice of `upstream`. */
  async function chooseAfresh(upstream: string) {
    const browser = new Browser();
    return choose(browser, await chooser(browser), upstream);
  }

  /** Follows the broker's redirects from `url` to the client (a code) or to a page. */
  async function follow(browser: Browser, url: string): Promise<{ code?: string; status: number }> {
    let res = await browser.get(url);
    for (let loc = res.headers.get('location'); loc; loc = res.headers.get('location')) {
      url = new URL(loc, url).href;
      if (url.startsWith(REDIRECT)) return { code: new URL(url).searchParams.get('code') ?? undefined, status: res.status };
      res = await browser.get(url);
    }
    return { status: res.status };
  }

  /** A whole login through the demo upstream (its persona page included), up to the client's code. */
  async function demoLogin(): Promise<string | undefined> {
    const browser = new Browser();
    const ch = await chooser(browser);
    const chosen = await choose(browser, ch, 'demo');
    const page = await browser.get(new URL(chosen.res.headers.get('location')!, h.base).href);
    const html = await page.text();
    const res = await browser.postForm(`${h.base}/upstream/demo/callback`, { state: hidden(html, 'state'), secret: hidden(html, 'secret'), persona: 'patient' });
    return (await follow(browser, new URL(res.headers.get('location')!, h.base).href)).code;
  }

  describe('what counts as an outage (cis2-b): a clear 503 page within the bound, never a hang', () => {
    async function outageOf(set: () => void, reason: RegExp, options: { boundMs?: number; rotate?: boolean } = {}): Promise<void> {
      // A new signing key makes the next ID token name an unknown kid: the broker must refetch the JWKS.
      if (options.rotate) await h.cis2.rotateKeys();
      set();
      const since = h.logs.length;
      let outcome: LoginOutcome;
      try {
        outcome = await h.attempt('cis2-b', 'gp');
      } finally {
        h.cis2.faults = {};
        h.cis2.tokenDelayMs = 0;
      }
      notResponding(outcome);
      expect(outcome.kind === 'page' && outcome.elapsedMs).toBeLessThan(options.boundMs ?? 1000);
      expect(h.reasons(since).some((r) => reason.test(r))).toBe(true);
      // Back to normal at once: the next login works (and fetches the JWKS it could not get).
      await h.fullLogin('cis2-b', 'gp');
    }

    const SLOW = { boundMs: TIMEOUT_MS + 1500 };
    it('token endpoint slower than timeoutMs', () => outageOf(() => void (h.cis2.tokenDelayMs = 10_000), /^cis2-b: token endpoint: .*timed out/, SLOW));
    it('token endpoint 502 with an HTML page', () => outageOf(() => void (h.cis2.faults.token = { status: 502, body: HTML_ERROR }), /^cis2-b: token endpoint: /));
    it('token endpoint 503 with a JSON error body', () => outageOf(() => void (h.cis2.faults.token = { status: 503, body: '{"error":"temporarily_unavailable"}', contentType: 'application/json' }), /^cis2-b: token endpoint: .*OAUTH_RESPONSE_IS_NOT_CONFORM/));
    it('token endpoint 200 with HTML', () => outageOf(() => void (h.cis2.faults.token = { status: 200, body: HTML_ERROR }), /^cis2-b: token endpoint: .*OAUTH_RESPONSE_IS_NOT_JSON/));
    it('token endpoint 200 with JSON cut short', () => outageOf(() => void (h.cis2.faults.token = { status: 200, body: '{"access_token":"abc","tok', contentType: 'application/json' }), /^cis2-b: token endpoint: .*OAUTH_PARSE_ERROR/));
    it('userinfo 500', () => outageOf(() => void (h.cis2.faults.userinfo = { status: 500, body: HTML_ERROR }), /^cis2-b: userinfo: /));
    it('userinfo slower than timeoutMs', () => outageOf(() => void (h.cis2.faults.userinfo = { delayMs: 10_000 }), /^cis2-b: userinfo: .*timed out/, SLOW));
    it('JWKS 500 when a rotated key must be fetched', () => outageOf(() => void (h.cis2.faults.jwks = { status: 500, body: HTML_ERROR }), /^cis2-b: ID token keys: JWKS: /, { rotate: true }));
    it('JWKS answering HTML', () => outageOf(() => void (h.cis2.faults.jwks = { status: 200, body: HTML_ERROR }), /^cis2-b: ID token keys: JWKS: .*not JSON/, { rotate: true }));
    it('JWKS slower than timeoutMs', () => outageOf(() => void (h.cis2.faults.jwks = { delayMs: 10_000 }), /^cis2-b: ID token keys: JWKS: /, { rotate: true, ...SLOW }));

    it('upstream down (port closed) between the redirect and the callback', async () => {
      const since = h.logs.length;
      const outcome = await h.attempt('cis2-b', 'gp', {
        onCallback: async (u) => {
          await h.cis2.stop();
          return u;
        },
      });
      await h.cis2.restart();
      notResponding(outcome);
      expect(outcome.kind === 'page' && outcome.elapsedMs).toBeLessThan(1000);
      expect(h.reasons(since).some((r) => /^cis2-b: token endpoint: .*(fetch failed|ECONNREFUSED)/.test(r))).toBe(true);
    });

    it('but a 4xx is an answer, not an outage, and so is a token endpoint 500 (the code it choked on came from the browser): the generic refusal page', async () => {
      for (const fault of [{ status: 400, body: '{"error":"invalid_grant"}', contentType: 'application/json' }, { status: 403, body: '<html>Request blocked</html>' }, { status: 500, body: '{"error":"server_error"}', contentType: 'application/json' }, { status: 500, body: HTML_ERROR }]) {
        h.cis2.faults.token = fault;
        try {
          refused(await h.attempt('cis2-b', 'gp'));
        } finally {
          h.cis2.faults = {};
        }
      }
    });
  });

  describe('the state machine (cis2: threshold 3, open 2 s)', () => {
    it('opens after 3 outages in a row: then fails fast (< 50 ms) with the page, sends nobody upstream; NHS login and demo keep working', async () => {
      const since = h.logs.length;
      for (let i = 0; i < THRESHOLD - 1; i++) notResponding(await outage());
      expect(await circuit('cis2')).toBe(0);
      notResponding(await outage());
      expect(await circuit('cis2')).toBe(2);

      const browser = new Browser();
      const ch = await chooser(browser);
      // The chooser flags the upstream and preselects another.
      expect(ch.html).toContain('data-testid="not-responding-cis2"');
      expect(ch.html).not.toMatch(/value="cis2" checked/);
      expect(ch.html).not.toContain('data-testid="not-responding-nhs-login"');
      const authorizeBefore = h.cis2.received.authorize.length;
      const tokenBefore = h.cis2.received.token.length;
      const times: number[] = [];
      for (let i = 0; i < 7; i++) {
        const { res, html, ms } = await choose(browser, ch, 'cis2');
        times.push(ms);
        expect(res.status).toBe(503);
        expect(res.headers.get('location')).toBeNull();
        const retryAfter = Number(res.headers.get('retry-after'));
        expect(retryAfter).toBeGreaterThanOrEqual(1);
        expect(retryAfter).toBeLessThanOrEqual(OPEN_SECONDS);
        // The display name, the nhsuk error layout, and a way back to the chooser.
        expect(html).toContain(`NHS CIS2 (fake) ${NOT_RESPONDING}`);
        expect(html).toContain('nhsuk-heading-l');
        expect(html).toContain(`href="/interaction/${ch.uid}"`);
      }
      times.sort((a, b) => a - b);
      expect(times[3]).toBeLessThan(50);
      expect(h.cis2.received.authorize.length).toBe(authorizeBefore);
      expect(h.cis2.received.token.length).toBe(tokenBefore);
      expect(await metric('broker_upstream_circuit_rejections_total', 'cis2')).toBeGreaterThanOrEqual(7);

      // "Choose another way to sign in" leads back to the chooser, where NHS login works.
      const back = await browser.get(`${h.base}/interaction/${ch.uid}`);
      expect(back.status).toBe(200);
      expect(await back.text()).toContain('name="upstream"');
      const { claims } = await h.fullLogin('nhs-login', 'p9');
      expect(claims.sub).toBeTruthy();
      expect(await demoLogin()).toBeTruthy();
      expect(await circuit('nhs-login')).toBe(0);
      expect(await circuit('demo')).toBe(0);
      // Logged once per change, however many logins were refused, and in the audit ledger.
      expect(circuitLogs('cis2', since)).toEqual(['open']);
      const audited = await h.broker.ledger.query({ type: 'upstream.circuit.changed', order: 'desc', limit: 1 });
      expect(audited[0]).toMatchObject({ outcome: 'failure', details: { provider: 'cis2', from: 'closed', to: 'open' } });
    });

    it('half-open after the cool-down: one trial goes through, the others still fail fast; a good login closes it', async () => {
      expect(await circuit('cis2')).toBe(2);
      const since = h.logs.length;
      await waitForCircuit('cis2', 1, OPEN_SECONDS * 1000 + 2000);

      // The trial: sent upstream, and stopped at the broker's callback for now.
      const trialBrowser = new Browser();
      const c = await h.clientLogin({ login_hint: 'gp' });
      const trial = await h.login(trialBrowser, c.authorizationUrl, { upstream: 'cis2', stopAtCallback: true });
      expect(trial.callback).toBeTruthy();

      // While the trial is out, everyone else gets the page at once.
      const other = await chooseAfresh('cis2');
      expect(other.res.status).toBe(503);

      const done = await follow(trialBrowser, trial.callback!);
      expect(done.code).toBeTruthy();
      expect(await circuit('cis2')).toBe(0);
      await h.fullLogin('cis2', 'gp');
      expect(circuitLogs('cis2', since)).toEqual(['half-open', 'closed']);
    });

    it('a failed trial opens it again at once; a trial that never comes back frees the slot after the cool-down', async () => {
      for (let i = 0; i < THRESHOLD; i++) await outage();
      await waitForCircuit('cis2', 1, OPEN_SECONDS * 1000 + 2000);
      notResponding(await outage());
      expect(await circuit('cis2')).toBe(2);
      const { ms } = await chooseAfresh('cis2');
      expect(ms).toBeLessThan(200);

      await waitForCircuit('cis2', 1, OPEN_SECONDS * 1000 + 2000);
      // This trial's user walks away at the upstream.
      const walked = await h.attempt('cis2', 'gp', { stopAtCallback: true });
      expect(walked.callback).toBeTruthy();
      expect((await chooseAfresh('cis2')).res.status).toBe(503);
      await sleep(OPEN_SECONDS * 1000 + 100);
      await h.fullLogin('cis2', 'gp');
      expect(await circuit('cis2')).toBe(0);
    });

    it('a hanging upstream holds nobody else up: NHS login signs in while CIS2 logins wait out their timeout', async () => {
      await closeCircuit();
      const since = h.logs.length;
      h.cis2.tokenDelayMs = 10_000;
      try {
        const reached: Array<Promise<void>> = [];
        const hanging = Array.from({ length: 4 }, () => {
          let arrived!: () => void;
          reached.push(new Promise<void>((r) => (arrived = r)));
          return h.attempt('cis2', 'gp', { onCallback: (u) => (arrived(), u) }).then((outcome) => ({ outcome, at: performance.now() }));
        });
        await Promise.all(reached);
        // The four callbacks are now waiting on the CIS2 token endpoint (for TIMEOUT_MS).
        await sleep(100);
        const t0 = performance.now();
        await h.fullLogin('nhs-login', 'p9');
        const nhsDone = performance.now();
        expect(await demoLogin()).toBeTruthy();
        const demoDone = performance.now();
        const results = await Promise.all(hanging);
        for (const r of results) {
          notResponding(r.outcome);
          expect(r.outcome.kind === 'page' && r.outcome.elapsedMs).toBeLessThan(TIMEOUT_MS + 1500);
          // Neither bystander waited for the hanging upstream.
          expect(r.at).toBeGreaterThan(demoDone);
        }
        expect(nhsDone - t0).toBeLessThan(TIMEOUT_MS);
      } finally {
        h.cis2.tokenDelayMs = 0;
      }
      // Four outages at once with a threshold of three: open, logged once.
      expect(await circuit('cis2')).toBe(2);
      expect(circuitLogs('cis2', since)).toEqual(['open']);
      await closeCircuit();
    });
  });

  describe('refused logins never count, so nobody can open the circuit for everyone', () => {
    it('a flood of garbage, replayed, foreign-state and forged callbacks: closed; outages between them still add up', async () => {
      await closeCircuit();
      const since = h.logs.length;
      notResponding(await outage());

      // No transaction at all: refused before any connector runs.
      for (let i = 0; i < 10; i++) {
        const res = await fetch(`${h.base}/upstream/cis2/callback?code=${randomBytes(16).toString('hex')}&state=${randomBytes(24).toString('base64url')}`);
        expect(res.status).toBe(401);
      }
      // Real transactions with a made-up code: the connector asks the upstream, which refuses it (400).
      for (let i = 0; i < 2 * THRESHOLD; i++) {
        refused(await h.attempt('cis2', 'gp', { onCallback: (u) => (u.searchParams.set('code', randomBytes(32).toString('base64url')), u) }));
      }
      notResponding(await outage());
      // A replayed callback, a callback for another upstream, an ID token signed with a foreign key, a wrong nonce.
      const first = await h.attempt('cis2', 'gp', { onCallback: (u) => (u.searchParams.set('code', 'made-up'), u) });
      refused(first);
      for (let i = 0; i < THRESHOLD; i++) refused(await h.login(new Browser(), first.callback!, { upstream: 'cis2' }));
      refused(await h.attempt('cis2', 'gp', { onCallback: (u) => new URL(u.href.replace('/upstream/cis2/', '/upstream/cis2-b/')) }));
      for (const tamper of [{ sign: 'foreign' as const }, { nonce: 'not-the-nonce' }, { sign: 'forged' as const }]) {
        h.cis2.tamper = tamper;
        refused(await h.attempt('cis2', 'gp'));
      }
      expect(await circuit('cis2')).toBe(0);
      expect(circuitLogs('cis2', since)).toEqual([]);

      // The third outage opens it: the refusals neither counted nor reset the count.
      notResponding(await outage());
      expect(await circuit('cis2')).toBe(2);
      await closeCircuit();
    });

    it('a key rotation at the upstream is not an outage (RP-07): two outages, a rotation, a good login resets', async () => {
      await closeCircuit();
      notResponding(await outage());
      notResponding(await outage());
      const fetches = h.cis2.received.jwks;
      const kid = await h.cis2.rotateKeys();
      await h.fullLogin('cis2', 'gp');
      expect(h.cis2.received.idTokenKids.at(-1)).toBe(kid);
      expect(h.cis2.received.jwks).toBeGreaterThan(fetches);
      expect(await circuit('cis2')).toBe(0);
      // The count started again: two more outages do not open it.
      notResponding(await outage());
      notResponding(await outage());
      expect(await circuit('cis2')).toBe(0);
      await h.fullLogin('cis2', 'gp');
    });
  });

  describe('an upstream down since start-up (cis2-down, threshold 2): discovery failures count', () => {
    it('503 pages in bounded time, then the circuit opens and answers at once', async () => {
      const since = h.logs.length;
      for (let i = 0; i < 2; i++) {
        const outcome = await h.attempt('cis2-down', 'gp');
        notResponding(outcome);
        expect(outcome.kind === 'page' && outcome.elapsedMs).toBeLessThan(2000);
      }
      expect(await circuit('cis2-down')).toBe(2);
      const outcome = await h.attempt('cis2-down', 'gp');
      notResponding(outcome);
      expect(h.reasons(since).some((r) => /^cis2-down: circuit open/.test(r))).toBe(true);
      expect(circuitLogs('cis2-down', since)).toEqual(['open']);
      // Its neighbours on the same chooser are unaffected.
      await h.fullLogin('nhs-login', 'p9');
      await h.fullLogin('cis2-b', 'gp');
    });
  });
});
