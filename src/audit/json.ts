import { z } from 'zod';

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

// z.json() rejects NaN/Infinity and non-plain values, which is what a hash chain needs: every stored value
// must survive a JSON round trip unchanged or verification of an honest entry would fail.
export const jsonObjectSchema: z.ZodType<JsonObject> = z.record(z.string(), z.json());

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
