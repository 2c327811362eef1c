import { afterAll, beforeAll, describe } from 'vitest';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';
import { redisHarness } from './helpers.ts';
import { ledgerSuite } from './suite.ts';

describe.skipIf(!redisAvailable)('redis peer', () => {
  let peer: RedisPeer;
  beforeAll(async () => {
    peer = await startRedis();
  });
  afterAll(async () => {
    await peer?.stop();
  });
  ledgerSuite('redis', () => redisHarness(peer.url));
});
