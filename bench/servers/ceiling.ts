import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, importJWK, jwtVerify, type JWK } from 'jose';
import { CLIENT_ID, ISSUER, RESOURCE, SCOPE } from './common.ts';

// The crypto ceiling: what one core can do if a request were nothing but its signatures, with jose
// (as oidc-provider and the broker use it). No HTTP, no store. The driver pins this process (libuv
// threadpool included) to the servers' core.
//   - the client_credentials + private_key_jwt loop of the first bench: verify one ES256 client
//     assertion and sign one ES256 JWT access token (`opsPerSecond`);
//   - the unit cost of each primitive the scenarios use (`unitUs`), from which the driver derives a
//     ceiling per scenario by adding up that scenario's signatures (bench/scenarios/catalogue.ts).
// One loop at a time: on a single core, more loops in flight only add threadpool switching
// (measured: 1 loop ~3.3k ops/s, 16 loops ~2.9k, 64 loops ~2.4k), and the ceiling is the best case.

const seconds = Number(process.env.BENCH_CEILING_SECONDS ?? 3);
const concurrency = Number(process.env.BENCH_CEILING_CONCURRENCY ?? 1);

const client = await generateKeyPair('ES256', { extractable: true });
const clientPublic = await importJWK((await exportJWK(client.publicKey)) as JWK, 'ES256');
const server = await generateKeyPair('ES256');
const rsa = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
const rsaPublic = await importJWK((await exportJWK(rsa.publicKey)) as JWK, 'RS256');
const rs512 = await importJWK((await exportJWK(rsa.privateKey)) as JWK, 'RS512');
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
const idToken = await new SignJWT({ acr: 'AAL3_ANY', nonce: randomUUID() })
  .setProtectedHeader({ alg: 'RS256', kid: 'k-RS256' })
  .setIssuer('https://cis2.example')
  .setSubject('555000000001')
  .setAudience('bench')
  .setIssuedAt(now)
  .setExpirationTime(now + 300)
  .sign(rsa.privateKey);

function accessToken(key: CryptoKey): Promise<string> {
  const iat = Math.floor(Date.now() / 1000);
  return new SignJWT({ client_id: CLIENT_ID, scope: SCOPE, jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'bench-es256' })
    .setIssuer(ISSUER)
    .setSubject(CLIENT_ID)
    .setAudience(RESOURCE)
    .setIssuedAt(iat)
    .setExpirationTime(iat + 300)
    .sign(key);
}

const ops: Record<string, () => Promise<unknown>> = {
  es256Sign: () => accessToken(server.privateKey),
  es256Verify: () => jwtVerify(assertion, clientPublic, { issuer: CLIENT_ID, audience: ISSUER, algorithms: ['ES256'] }),
  rs256Verify: () => jwtVerify(idToken, rsaPublic, { algorithms: ['RS256'] }),
  rsSign: () =>
    new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'RS512' }).setIssuer('bench').setSubject('bench').setAudience('https://cis2.example/access_token').setIssuedAt().setExpirationTime('60s').sign(rs512),
};

async function grant(): Promise<void> {
  await ops.es256Verify();
  await ops.es256Sign();
}

async function run(op: () => Promise<unknown>, ms: number): Promise<{ ops: number; seconds: number }> {
  let n = 0;
  const start = performance.now();
  const end = start + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await op();
        n++;
      }
    }),
  );
  return { ops: n, seconds: (performance.now() - start) / 1000 };
}

await run(grant, 300); // warm-up (JIT, key import caches)
for (const op of Object.values(ops)) await run(op, 100);
const main = await run(grant, seconds * 500);
const unitUs: Record<string, number> = {};
const share = (seconds * 500) / Object.keys(ops).length;
for (const [name, op] of Object.entries(ops)) {
  const r = await run(op, share);
  unitUs[name] = Math.round((r.seconds * 1e6 * 10) / r.ops) / 10;
}
process.send?.({ type: 'result', opsPerSecond: main.ops / main.seconds, ops: main.ops, seconds: main.seconds, concurrency, unitUs });
process.disconnect?.();
