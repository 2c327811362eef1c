import type { Context } from 'koa';
import { checkJwsShape, JwsShapeError } from '../crypto/jws-header.ts';

// oidc-provider verifies DPoP proofs inside its own endpoints (token, userinfo, PAR) with jose, which
// reads crit ["b64","b64"], b64:false outside crit and duplicate members as an ordinary JWS. The proof
// is a request header, so the strict JWS shape every input applies (src/crypto/jws-header.ts) is checked
// here, before the request reaches oidc-provider, and a bad proof is answered as oidc-provider answers
// one (RFC 9449 5 and 7.1): 400 invalid_dpop_proof, or 401 with a DPoP challenge at a protected resource.

/** Refuses the request (and returns true) when it carries a DPoP proof of the wrong shape. */
export function refusedDpopShape(ctx: Context, endpoint: string): boolean {
  const proof = ctx.get('DPoP');
  if (!proof) return false;
  try {
    checkJwsShape(proof);
    return false;
  } catch (err) {
    if (!(err instanceof JwsShapeError)) throw err;
    const description = `invalid DPoP proof: ${err.message}`;
    ctx.set('Cache-Control', 'no-store');
    if (endpoint === '/me') {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', `DPoP error="invalid_dpop_proof", error_description="${description}"`);
    } else {
      ctx.status = 400;
    }
    ctx.body = { error: 'invalid_dpop_proof', error_description: description };
    return true;
  }
}
