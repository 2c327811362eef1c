import { createHash, randomBytes } from 'node:crypto';
import { Agent, request } from 'undici';
import { ISSUER } from '../servers/common.ts';

// A light cookie-keeping user agent for the browser-like flows (fixture logins and the login
// scenarios), on undici's request API with keep-alive (much lighter per request than fetch, which
// matters: the load generator shares its core with the upstream IdPs). It follows nothing by itself.
// Every server under test has the same issuer (bench/servers/common.ts); `origins` maps that logical
// origin to the port of the server a flow drives, so cookies and redirects stay per logical host.

export const agent = new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 60_000, connections: 512, pipelining: 1 });

export interface Page {
  status: number;
  url: string;
  location?: string;
  body: string;
  json<T = Record<string, unknown>>(): T;
}

export class Browser {
  readonly jars = new Map<string, Map<string, string>>();
  readonly origins: Map<string, string>;
  requests = 0;
  /** Requests to the issuer's origin (the broker), as opposed to upstream IdPs. */
  brokerRequests = 0;

  constructor(origins: Record<string, string>) {
    this.origins = new Map(Object.entries(origins));
  }

  async send(url: string, init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {}): Promise<Page> {
    const logical = new URL(url);
    const target = this.origins.get(logical.origin);
    const real = target ? `${target}${logical.pathname}${logical.search}` : url;
    const jar = this.jars.get(logical.host);
    // The Host a browser would send: absolute URLs the server builds then name the logical origin.
    const headers: Record<string, string> = { ...(target && { host: logical.host }), ...init.headers };
    if (jar?.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (init.form) {
      body = new URLSearchParams(init.form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    this.requests++;
    if (target) this.brokerRequests++;
    const res = await request(real, { dispatcher: agent, method: (init.method ?? (body ? 'POST' : 'GET')) as 'GET', headers, body });
    const setCookie = res.headers['set-cookie'];
    if (setCookie) {
      let j = jar;
      if (!j) {
        j = new Map();
        this.jars.set(logical.host, j);
      }
      for (const c of ([] as string[]).concat(setCookie)) {
        const [pair] = c.split(';');
        const i = pair.indexOf('=');
        const name = pair.slice(0, i).trim();
        const value = pair.slice(i + 1).trim();
        if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) j.delete(name);
        else j.set(name, value);
      }
    }
    const text = await res.body.text();
    const loc = res.headers.location;
    const location = typeof loc === 'string' ? new URL(loc, url).href : undefined;
    return {
      status: res.statusCode,
      url,
      location,
      body: text,
      json<T>() {
        return JSON.parse(text) as T;
      },
    };
  }

  get(url: string): Promise<Page> {
    return this.send(url);
  }

  post(url: string, form: Record<string, string>, headers?: Record<string, string>): Promise<Page> {
    return this.send(url, { method: 'POST', form, headers });
  }
}

/** A browser whose issuer origin is the broker on `port`. */
export function brokerBrowser(port: number): Browser {
  return new Browser({ [new URL(ISSUER).origin]: `http://127.0.0.1:${port}` });
}

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

function htmlDecode(s: string): string {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#0?39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#x2F;/gi, '/')
    .replace(/&#x3D;/gi, '=')
    .replace(/&#x2B;/gi, '+')
    .replace(/&amp;/g, '&');
}

/** Inputs of the first form in a page (or the one whose action matches), and its action. */
export function parseForm(html: string, pageUrl: string, action?: RegExp): { action: string; fields: Record<string, string> } {
  const forms = [...html.matchAll(/<form\b[^>]*>[\s\S]*?<\/form>/gi)].map((m) => m[0]);
  const form = action ? forms.find((f) => action.test(/\baction="([^"]*)"/i.exec(f)?.[1] ?? '')) : forms[0];
  if (!form) throw new Error(`no form in page ${pageUrl}: ${html.slice(0, 300)}`);
  const fields: Record<string, string> = {};
  for (const m of form.matchAll(/<input\b[^>]*>/gi)) {
    const name = /\bname="([^"]*)"/i.exec(m[0])?.[1];
    const value = /\bvalue="([^"]*)"/i.exec(m[0])?.[1] ?? '';
    const type = /\btype="([^"]*)"/i.exec(m[0])?.[1];
    if (name && type !== 'radio') fields[htmlDecode(name)] = htmlDecode(value);
  }
  return { action: new URL(htmlDecode(/\baction="([^"]*)"/i.exec(form)?.[1] ?? ''), pageUrl).href, fields };
}
