// A minimal cookie-keeping HTTP user agent for driving the login flow without a browser: it follows
// nothing by itself, so each test sees every redirect the broker sends.

export class UserAgent {
  readonly cookies = new Map<string, string>();

  async request(url: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookies.size) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }

  get(url: string): Promise<Response> {
    return this.request(url);
  }

  postForm(url: string, form: Record<string, string>): Promise<Response> {
    return this.request(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
  }
}

export function location(res: Response, base: string): string {
  const loc = res.headers.get('location');
  if (!loc) throw new Error(`expected a redirect, got ${res.status}`);
  return new URL(loc, base).href;
}

export function hiddenField(html: string, name: string): string {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  if (!m) throw new Error(`no hidden field ${name}`);
  return m[1].replace(/&amp;/g, '&');
}

/**
 * Runs the broker's interaction from an authorization URL to the client's redirect with the demo
 * upstream and the given persona. Returns the final redirect URL (carrying code or error).
 */
export async function loginThroughDemo(ua: UserAgent, authorizationUrl: string, persona: string, base: string): Promise<URL> {
  return loginThrough(ua, authorizationUrl, 'demo', base, async (res) => {
    const page = await (await ua.get(location(res, base))).text();
    return ua.postForm(`${base}/upstream/demo/callback`, { state: hiddenField(page, 'state'), secret: hiddenField(page, 'secret'), persona });
  });
}

/**
 * The broker's side of a login: chooser, then `upstream` (given the response that sends the browser
 * upstream, it returns the broker callback's response), then role choice, consent and the client redirect.
 */
export async function loginThrough(ua: UserAgent, authorizationUrl: string, upstreamId: string, base: string, upstream: (res: Response) => Promise<Response>, choices: Choices = {}): Promise<URL> {
  let res = await ua.get(authorizationUrl);
  const url = location(res, base);
  res = await ua.get(url);
  const chooser = await res.text();
  const uid = new URL(url).pathname.split('/').pop()!;
  res = await ua.postForm(`${base}/interaction/${uid}/login`, { csrf: hiddenField(chooser, 'csrf'), upstream: upstreamId });
  res = await upstream(res);
  return followToClient(ua, res, base, choices);
}

/** Answers to the broker's in-login questions: which staff role, and whom to act for (a consent id, or self). */
export interface Choices {
  role?: string;
  actAs?: string;
}

/** From a broker response after the upstream step to the client's redirect (role choice and consent on the way). */
export async function followToClient(ua: UserAgent, first: Response, base: string, choices: Choices = {}): Promise<URL> {
  let res = first;
  // resume -> role choice (staff with several roles) -> consent (auto for first-party) -> client redirect
  let pageUrl = `${base}/upstream/demo/callback`;
  for (let i = 0; i < 8; i++) {
    if (res.status === 200) {
      const html = await res.text();
      const uid2 = /action="\/interaction\/([^/"]+)\//.exec(html)?.[1];
      if (!uid2) throw new Error(`unexpected page at ${pageUrl}: ${html.slice(0, 300)}`);
      if (html.includes('/act-as"')) {
        res = await ua.postForm(`${base}/interaction/${uid2}/act-as`, { csrf: hiddenField(html, 'csrf'), acting: choices.actAs ?? 'self' });
      } else if (html.includes('/role"')) {
        const role = choices.role ?? /name="role" type="radio" value="([^"]+)"/.exec(html)![1];
        res = await ua.postForm(`${base}/interaction/${uid2}/role`, { csrf: hiddenField(html, 'csrf'), role });
      } else if (html.includes('/confirm"')) {
        res = await ua.postForm(`${base}/interaction/${uid2}/confirm`, { csrf: hiddenField(html, 'csrf') });
      } else {
        throw new Error(`unexpected page at ${pageUrl}: ${html.slice(0, 300)}`);
      }
      continue;
    }
    pageUrl = location(res, base);
    if (!pageUrl.startsWith(base)) return new URL(pageUrl);
    res = await ua.get(pageUrl);
  }
  throw new Error('too many redirects');
}
