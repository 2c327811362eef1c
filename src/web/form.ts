import type { Context } from 'koa';
import { BadRequestError } from './errors.ts';

const FORM_LIMIT = 16 * 1024;

/** Reads a small urlencoded form body (our own pages only). Oversized or wrongly typed bodies are refused. */
export async function readForm(ctx: Context, limit = FORM_LIMIT): Promise<URLSearchParams> {
  if (!ctx.is('application/x-www-form-urlencoded')) throw new BadRequestError('expected a form submission');
  if (ctx.request.length !== undefined && ctx.request.length > limit) throw new BadRequestError('form too large', 413);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new BadRequestError('form too large', 413);
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** Exactly one value, or a 400: duplicated parameters are a classic parser-differential trick. */
export function single(form: URLSearchParams, name: string): string {
  const all = form.getAll(name);
  if (all.length !== 1 || all[0].length > 4096) throw new BadRequestError(`missing or repeated field ${name}`);
  return all[0];
}
