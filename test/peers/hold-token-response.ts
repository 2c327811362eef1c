// Preloaded with --import into a broker process (HA-08): the first successful token response is never
// sent. Everything the token endpoint does has happened by then (the code is consumed, the tokens and
// grant are stored); only the bytes to the client are missing, the moment a node death hurts most.
// The held body goes to HOLD_TOKEN_RESPONSE_FILE so the test can check that what the client never
// received is no longer usable, and "TOKEN_RESPONSE_HELD" to stdout so it knows when to kill.
// Test-only: it lives under test/ and the broker has no switch for it.
import { writeFileSync } from 'node:fs';
import { ServerResponse } from 'node:http';

const file = process.env.HOLD_TOKEN_RESPONSE_FILE;
const end = ServerResponse.prototype.end as (this: ServerResponse, ...args: unknown[]) => ServerResponse;
let held = false;

ServerResponse.prototype.end = function (this: ServerResponse, ...args: unknown[]) {
  const body = args[0];
  const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString() : '';
  if (file && !held && this.req?.method === 'POST' && this.req.url === '/token' && this.statusCode === 200 && text.includes('"access_token"')) {
    held = true;
    writeFileSync(file, text);
    process.stdout.write('TOKEN_RESPONSE_HELD\n');
    return this;
  }
  return end.apply(this, args);
} as typeof ServerResponse.prototype.end;
