import { EventEmitter } from 'node:events';
import type { Cluster, Redis } from 'ioredis';

// Consent revocations are published as events so that other broker instances and subscribed resource
// servers learn at once. Enforcement never depends on delivery: introspection, refresh and exchange
// read the consent itself. The bus makes caches and JWT-verifying resource servers react fast.

export interface RevocationBus {
  publish(consentId: string): Promise<void>;
  subscribe(listener: (consentId: string) => void): () => void;
  close(): Promise<void>;
}

/** One process (embedded store). */
export function localRevocationBus(): RevocationBus {
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  return {
    async publish(consentId) {
      emitter.emit('revoked', consentId);
    },
    subscribe(listener) {
      emitter.on('revoked', listener);
      return () => emitter.off('revoked', listener);
    },
    async close() {
      emitter.removeAllListeners();
    },
  };
}

/** Redis pub/sub: every broker instance on the same Redis hears every revocation. */
export function redisRevocationBus(redis: Redis | Cluster, prefix: string): RevocationBus {
  const channel = `${prefix}consent-revoked`;
  const local = localRevocationBus();
  const subscriber = (redis as Redis).duplicate();
  subscriber.on('error', () => {});
  void subscriber.subscribe(channel).catch(() => {});
  subscriber.on('message', (ch: string, message: string) => {
    if (ch === channel) void local.publish(message);
  });
  return {
    async publish(consentId) {
      await redis.publish(channel, consentId);
    },
    subscribe: local.subscribe,
    async close() {
      await local.close();
      subscriber.disconnect();
    },
  };
}
