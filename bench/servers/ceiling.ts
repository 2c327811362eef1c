import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, importJWK, jwtVerify, type JWK } from 'jose';
import { CLIENT_ID, ISSUER, RESOURCE, SCOPE } from './common.ts';

// The crypto ceiling: what one core can do if a grant were nothing but its two signatures - verify
// one ES256 client assertion and sign one ES256 JWT access token, with jose (as oidc-provider does).
// No HTTP, no store. The driver pins this process (libuv threadpool included) to the servers' core.
// One loop by default: on a single core, more loops in flight only add threadpool switching
// (measured: 1 loop ~3.3k ops/s, 16 loops ~2.9k, 64 loops ~2.4k), and the ceiling is the best case.

const seconds = Number(process.env.BENCH_CEILING_SECONDS ?? 3);
const concurrency = Number(process.env.BENCH_CEILING_CONCURRENCY ?? 1);

const client = await generateKeyPair('ES256', { extractable: true });
const clientPublic = await importJWK((await exportJWK(client.publicKey)) as JWK, 'ES256');
const server = await generateKeyPair('ES256');
const now = Math.floor(Date.now() / 1000);
const assertion = await new SignJWT({})
  .setProtectedHeader({ alg: 'ES256', kid: 'k-ES256' })
  .setIssuer(CLIENT_ID)
  .setSubject(CLIENT_ID)
  .setAudience(ISSUER)
  .setJti(randomUUID())
  .setIssuedAt(now)
  .setExpirationTime(now + 300)
  .sign(client.privateKey);

async function grant(): Promise<void> {
  await jwtVerify(assertion, clientPublic, { issuer: CLIENT_ID, audience: ISSUER, algorithms: ['ES256'] });
  const iat = Math.floor(Date.now() / 1000);
  await new SignJWT({ client_id: CLIENT_ID, scope: SCOPE, jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'bench-es256' })
    .setIssuer(ISSUER)
    .setSubject(CLIENT_ID)
    .setAudience(RESOURCE)
    .setIssuedAt(iat)
    .setExpirationTime(iat + 300)
    .sign(server.privateKey);
}

async function run(ms: number): Promise<number> {
  let ops = 0;
  const end = performance.now() + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await grant();
        ops++;
      }
    }),
  );
  return ops;
}

await run(500); // warm-up (JIT, key import caches)
const start = performance.now();
const ops = await run(seconds * 1000);
const elapsed = (performance.now() - start) / 1000;
process.send?.({ type: 'result', opsPerSecond: ops / elapsed, ops, seconds: elapsed, concurrency });
process.disconnect?.();
