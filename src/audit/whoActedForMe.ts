import { z } from 'zod';
import type { AuditOutcome } from './entry.ts';
import type { Ledger } from './ledger.ts';

/** RFC 8693 `act` claim: the outermost `sub` is the current actor, nested ones acted before it. */
interface ActClaim {
  sub: string;
  act?: ActClaim;
}
const actSchema: z.ZodType<ActClaim> = z.lazy(() => z.object({ sub: z.string().min(1), act: actSchema.optional() }));

export interface ActedForMe {
  seq: number;
  time: string;
  type: 'token.issued' | 'token.exchanged';
  /** Actor account ids, current actor first (as in the token's nested `act`). */
  actors: string[];
  client: string | null;
  consent: string | null;
  outcome: AuditOutcome;
  requestId: string | null;
  /** Granted scope and audience, when the entry recorded them. */
  scope: string | null;
  audience: string | null;
}

export interface WhoActedForMeOptions {
  limit?: number;
  from?: Date;
  to?: Date;
}

function flatten(act: ActClaim): string[] {
  const out: string[] = [];
  let cur: ActClaim | undefined = act;
  // Bounded: a chain deeper than this is not something a patient page needs to render.
  while (cur && out.length < 10) {
    out.push(cur.sub);
    cur = cur.act;
  }
  return out;
}

function text(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(' ');
  return null;
}

/**
 * Tokens issued or exchanged with the patient as subject and someone else acting (`details.act`), newest
 * first: the data behind "who acted for me". Entries without an actor chain (the patient's own sign-ins) are
 * left out.
 */
export async function whoActedForMe(ledger: Ledger, patientAccountId: string, options: WhoActedForMeOptions = {}): Promise<ActedForMe[]> {
  const limit = options.limit ?? 50;
  const out: ActedForMe[] = [];
  const pages = ledger.scan({
    subject: patientAccountId,
    type: ['token.issued', 'token.exchanged'],
    order: 'desc',
    from: options.from,
    to: options.to,
    limit: Math.min(500, Math.max(limit, 50)),
  });
  for await (const e of pages) {
    const act = actSchema.safeParse(e.details.act);
    if (!act.success) continue;
    if (e.type !== 'token.issued' && e.type !== 'token.exchanged') continue;
    out.push({
      seq: e.seq,
      time: e.time,
      type: e.type,
      actors: flatten(act.data),
      client: e.client,
      consent: e.consent,
      outcome: e.outcome,
      requestId: e.requestId,
      scope: text(e.details.scope),
      audience: text(e.details.audience ?? e.details.aud),
    });
    if (out.length >= limit) break;
  }
  return out;
}
