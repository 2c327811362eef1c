import { parseArgs } from 'node:util';
import { ConfigError, configJsonSchema, resolveConfig } from './config/load.ts';
import type { BrokerConfig } from './config/schema.ts';
import { createLogger } from './log.ts';
import { createBroker, ledgerBackendFor } from './server.ts';
import { maxAccessTokenTTL } from './oidc/provider.ts';
import { publicJwks, rotateKey, type SigningAlg } from './oidc/keys.ts';
import { openStore } from './store/open.ts';
import { toFhirBundle, toJsonLines, verifyLedger } from './audit/index.ts';
import { readFileSync } from 'node:fs';
import { explainExchange } from './exchange/explain.ts';

// The CLI: start · config check · config schema · keys rotate. Exit codes: 0 ok, 1 failure, 2 bad
// configuration or usage.

const USAGE = `usage: broker <command> [--config FILE]
  start                 run the broker (default command)
  config check          validate the configuration and exit
  config schema         print the JSON Schema of the configuration
  keys rotate [--alg ES256|PS256]
                        publish a new signing key; it signs after tokens.keyRotationOverlap seconds
  audit verify          walk the audit hash chain and checkpoints; exit 1 at the first tampered entry
  audit export [--format jsonl|fhir] [--subject ID] [--client ID] [--consent ID] [--from ISO] [--to ISO] [--reveal]
                        export ledger entries (personal data stays sealed unless --reveal)
  exchange explain --client ID --request JSON|@FILE
                        which exchange rule allows or denies a token-exchange request, and why
                        (tokens decoded, not verified; exit 0 allow, 1 deny)
Without --config or BROKER_CONFIG the embedded demo profile is used.`;

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      alg: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      format: { type: 'string', default: 'jsonl' },
      subject: { type: 'string' },
      client: { type: 'string' },
      consent: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      reveal: { type: 'boolean', default: false },
      request: { type: 'string' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const [command = 'start', sub] = positionals;

  if (command === 'config' && sub === 'schema') {
    console.log(JSON.stringify(configJsonSchema(), null, 2));
    return 0;
  }

  let config: BrokerConfig;
  try {
    config = resolveConfig(values.config);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return 2;
    }
    throw err;
  }

  if (command === 'config' && sub === 'check') {
    console.log(`configuration ok: ${config.clients.length} clients, ${config.resources.length} resources, store ${config.store.replace(/\/\/[^@/]*@/, '//***@')}`);
    return 0;
  }

  if (command === 'exchange' && sub === 'explain') {
    if (!values.client || !values.request) {
      console.error('usage: broker exchange explain --client ID --request JSON|@FILE');
      return 2;
    }
    let params: unknown;
    try {
      params = JSON.parse(values.request.startsWith('@') ? readFileSync(values.request.slice(1), 'utf8') : values.request);
    } catch {
      console.error('--request: expected a JSON object (or @file holding one)');
      return 2;
    }
    if (!params || typeof params !== 'object' || Array.isArray(params)) {
      console.error('--request: expected a JSON object (or @file holding one)');
      return 2;
    }
    const explanation = await explainExchange(config, params as Record<string, unknown>, values.client);
    console.log(JSON.stringify(explanation, null, 2));
    return explanation.decision === 'allow' ? 0 : 1;
  }

  const log = createLogger(config.logLevel);

  if (command === 'keys' && sub === 'rotate') {
    const alg = (values.alg ?? config.tokens.signingAlg) as SigningAlg;
    if (!['ES256', 'PS256'].includes(alg)) {
      console.error(`--alg: must be ES256 or PS256`);
      return 2;
    }
    const broker = await createBroker(config, { log });
    try {
      const maxLifetime = Math.max(maxAccessTokenTTL(config), config.tokens.idTokenTTL);
      const { added, retired } = await rotateKey(broker.store.keys, broker.sealer, alg, config.tokens.keyRotationOverlap, maxLifetime);
      await broker.ledger.append({ type: 'key.rotated', outcome: 'success', actor: 'cli', details: { alg, published: added.kid, retiring: retired.map((k) => k.kid) } });
      console.log(JSON.stringify({ published: added.kid, signsFrom: new Date(added.activatesAt * 1000).toISOString(), retiring: retired.map((k) => k.kid) }));
    } finally {
      await broker.close();
    }
    return 0;
  }

  if (command === 'audit' && sub === 'verify') {
    const store = openStore(config.store);
    try {
      const result = await verifyLedger(ledgerBackendFor(store), publicJwks(await store.keys.listKeys()));
      if (!result.ok) {
        console.error(`audit ledger: TAMPERED at sequence ${result.firstBadSeq}: ${result.reason}`);
        return 1;
      }
      console.log(`audit ledger ok: ${result.count} entries, head seq ${result.head.seq} hash ${result.head.hash}, ${result.checkpoints} checkpoints`);
      return 0;
    } finally {
      await store.close();
    }
  }

  if (command === 'audit' && sub === 'export') {
    const broker = await createBroker(config, { log });
    try {
      const entries = await broker.ledger.query({ subject: values.subject, client: values.client, consent: values.consent, from: values.from, to: values.to, limit: 100_000 });
      const reveal = values.reveal ? { reveal: true, sealer: broker.sealer } : {};
      if (values.format === 'fhir') console.log(JSON.stringify(toFhirBundle(entries, 'collection', { observer: config.issuer, ...reveal }), null, 2));
      else for await (const line of toJsonLines(entries, reveal)) process.stdout.write(line.endsWith('\n') ? line : `${line}\n`);
    } finally {
      await broker.close();
    }
    return 0;
  }

  if (command !== 'start') {
    console.error(USAGE);
    return 2;
  }

  const broker = await createBroker(config, { log });
  const server = await broker.listen();
  const address = server.address();
  log.info({ issuer: config.issuer, port: typeof address === 'object' && address ? address.port : config.port, store: config.store.split(':')[0], profile: config.profile }, 'broker listening');
  if (config.profile === 'demo') log.info(`demo profile: open ${config.issuer}/demo/client to run a sign-in`);

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'shutting down: finishing in-flight requests');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await broker.close();
  log.info('stopped');
  return 0;
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(err instanceof ConfigError ? 2 : 1);
  },
);
