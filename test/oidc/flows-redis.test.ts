import { afterAll, describe } from 'vitest';
import { oidcFlows } from './flows.ts';
import { redisAvailable, startRedis, type RedisPeer } from '../peers/redis.ts';

let peer: RedisPeer | undefined;
afterAll(async () => {
  await peer?.stop();
});

describe.skipIf(!redisAvailable)('redis backend', () => {
  oidcFlows('redis', async () => {
    peer = await startRedis();
    return peer.url;
  });
});
