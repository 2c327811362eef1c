import { createHash, randomBytes } from 'node:crypto';
import { REDIRECT } from '../helpers/broker.ts';
import { UserAgent, hiddenField, location } from '../helpers/browser.ts';

// A real login transaction up to the moment the broker sends the browser upstream, so a fuzzed upstream
// answer reaches the connector's checks instead of stopping at "no such transaction".

export interface StartedLogin {
  ua: UserAgent;
  /** Where the broker sent the browser (the upstream, or straight back to the callback for smartcards). */
  upstreamUrl: URL;
}

export async function startUpstreamLogin(base: string, upstream: string): Promise<StartedLogin> {
  const ua = new UserAgent();
  const verifier = randomBytes(32).toString('base64url');
  const auth = new URL(`${base}/auth`);
  auth.search = new URLSearchParams({
    client_id: 'web',
    response_type: 'code',
    redirect_uri: REDIRECT,
    scope: 'openid',
    state: randomBytes(8).toString('hex'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  }).toString();
  let res = await ua.get(auth.href);
  const interaction = location(res, base);
  res = await ua.get(interaction);
  const chooser = await res.text();
  const uid = new URL(interaction).pathname.split('/').pop()!;
  res = await ua.postForm(`${base}/interaction/${uid}/login`, { csrf: hiddenField(chooser, 'csrf'), upstream });
  await res.arrayBuffer();
  return { ua, upstreamUrl: new URL(location(res, base)) };
}
