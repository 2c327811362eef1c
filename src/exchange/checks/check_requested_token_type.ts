import { REFRESH_TOKEN_TYPE_URN, TOKEN_TYPE_URN, type RequestCheck } from '../types.ts';
import { fail, pass } from './result.ts';

// The broker issues access tokens only. A refresh token from an exchange would outlive the subject
// token's own checks (security-catalogue TX-14), so it is refused, not silently downgraded.
export const checkRequestedTokenType: RequestCheck = {
  name: 'requested_token_type',
  run({ request }) {
    const wanted = request.requestedTokenType;
    if (wanted === undefined || wanted === TOKEN_TYPE_URN.access_token) return pass('an access token');
    if (wanted === REFRESH_TOKEN_TYPE_URN) return fail('invalid_request', 'requested_token_type refresh_token is not issued by token exchange');
    return fail('invalid_request', `requested_token_type ${wanted} is not supported; only ${TOKEN_TYPE_URN.access_token}`);
  },
};
