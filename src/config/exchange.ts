import { z } from 'zod';

// RFC 8693 token-exchange policy (issue 7): data, validated at start-up. Owned by the exchange work.
export const exchangeSchema = z.strictObject({}).default({});
export type ExchangeConfig = z.infer<typeof exchangeSchema>;
