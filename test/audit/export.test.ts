import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sqliteLedgerBackend } from '../../src/audit/backends/sqlite.ts';
import { canonicalJson, entryHash } from '../../src/audit/chain.ts';
import { AUDIT_EVENT_TYPES, storedEntrySchema, type StoredEntry } from '../../src/audit/entry.ts';
import { DCM, HL7_AUDIT_EVENT_TYPE, RESTFUL_INTERACTION, toFhirBundle } from '../../src/audit/fhir.ts';
import type { JsonObject } from '../../src/audit/json.ts';
import { toJsonLines } from '../../src/audit/jsonl.ts';
import { createLedger } from '../../src/audit/ledger.ts';
import { makeKeys } from './helpers.ts';

// The R4 AuditEvent and Bundle structure (cardinalities, required elements, bound code values) as a schema:
// what a FHIR validator would check on these resources.
const uri = z.string().regex(/^(https?:\/\/|urn:)\S+$/);
const coding = z.object({ system: uri, code: z.string().min(1), display: z.string().optional() }).strict();
const identifier = z.object({ system: uri.optional(), value: z.string().min(1) }).strict();
const reference = z
  .object({ reference: z.string().regex(/^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/).optional(), identifier: identifier.optional(), display: z.string().optional() })
  .strict()
  .refine((r) => r.reference !== undefined || r.identifier !== undefined || r.display !== undefined, 'empty Reference');
const instant = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const auditEvent = z
  .object({
    resourceType: z.literal('AuditEvent'),
    id: z.string().regex(/^[A-Za-z0-9\-.]{1,64}$/),
    type: coding.refine((c) => c.system === DCM || c.system === HL7_AUDIT_EVENT_TYPE, 'type must come from DCM or audit-event-type'),
    subtype: z.array(coding).min(1),
    action: z.enum(['C', 'R', 'U', 'D', 'E']),
    recorded: instant,
    outcome: z.enum(['0', '4', '8', '12']),
    outcomeDesc: z.string().optional(),
    agent: z.array(z.object({ type: z.object({ coding: z.array(coding) }).optional(), who: reference, requestor: z.boolean() }).strict()).min(1),
    source: z.object({ observer: reference, type: z.array(coding.refine((c) => c.system === 'http://terminology.hl7.org/CodeSystem/security-source-type')) }).strict(),
    entity: z.array(
      z
        .object({
          what: reference,
          type: coding.refine((c) => c.system === ENTITY_TYPE && ['1', '2', '3', '4'].includes(c.code)).optional(),
          role: coding.optional(),
          description: z.string().optional(),
          detail: z.array(z.object({ type: z.string().min(1), valueString: z.string() }).strict()).optional(),
        })
        .strict(),
    ),
  })
  .strict();
const bundle = z
  .object({
    resourceType: z.literal('Bundle'),
    type: z.enum(['collection', 'searchset']),
    timestamp: instant,
    total: z.number().int().nonnegative().optional(),
    entry: z.array(z.object({ fullUrl: uri.optional(), resource: auditEvent, search: z.object({ mode: z.literal('match') }).strict().optional() }).strict()),
  })
  .strict()
  .refine((b) => b.type === 'searchset' || b.total === undefined, 'bdl-1: total only in a searchset');

async function ledgerWithOneOfEach() {
  const keys = await makeKeys();
  const ledger = createLedger(sqliteLedgerBackend(new DatabaseSync(':memory:')), keys.sealer, keys.signer, { checkpointIntervalSeconds: 0 });
  const entries: StoredEntry[] = [];
  for (const type of AUDIT_EVENT_TYPES) {
    const i = entries.length;
    entries.push(
      await ledger.append({
        type,
        outcome: i % 3 === 0 || type === 'replay.detected' ? 'failure' : 'success',
        ...(i % 2 === 0 ? { actor: `actor-${i}`, subject: `patient-${i}` } : {}),
        ...(i % 4 === 1 ? { client: 'app-1', consent: `consent-${i}` } : {}),
        ...(i % 5 === 0 ? {} : { requestId: `req-${i}` }),
        details: i % 3 === 0 ? { reason: 'invalid_signature' } : { scope: 'openid' },
        personal: { nhs_number: '9434765919' },
      }),
    );
  }
  return { ledger, keys, entries };
}

describe('FHIR R4 AuditEvent export', () => {
  it('produces a valid collection Bundle for every event type', async () => {
    const { entries } = await ledgerWithOneOfEach();
    const b = toFhirBundle(entries, 'collection', { observer: 'broker-1', baseUrl: 'https://broker.example/fhir/' });
    const parsed = bundle.safeParse(b);
    expect(parsed.success, JSON.stringify(parsed.error?.issues.slice(0, 3))).toBe(true);
    expect(b.entry).toHaveLength(AUDIT_EVENT_TYPES.length);
    expect(b.entry[0].fullUrl).toBe('https://broker.example/fhir/AuditEvent/audit-1');
    expect(new Set(b.entry.map((e) => e.fullUrl)).size).toBe(b.entry.length);
    expect(b.total).toBeUndefined();
  });

  it('maps types, actions and outcomes to the R4 code systems', async () => {
    const { entries } = await ledgerWithOneOfEach();
    const b = toFhirBundle(entries, 'searchset');
    expect(bundle.safeParse(b).success).toBe(true);
    expect(b.total).toBe(entries.length);
    const byType = new Map(b.entry.map((e) => [e.resource.subtype[e.resource.subtype.length - 1].code, e.resource]));
    const login = byType.get('upstream.login.success');
    expect(login?.type).toEqual({ system: DCM, code: '110114', display: 'User Authentication' });
    expect(login?.subtype[0]).toMatchObject({ system: DCM, code: '110122' });
    expect(login?.action).toBe('E');
    expect(byType.get('consent.proposed')).toMatchObject({ type: { system: HL7_AUDIT_EVENT_TYPE, code: 'rest' }, action: 'C' });
    expect(byType.get('consent.proposed')?.subtype[0]).toMatchObject({ system: RESTFUL_INTERACTION, code: 'create' });
    expect(byType.get('token.revoked')?.action).toBe('D');
    // failures: security alerts are serious (8), other failures minor (4)
    expect(byType.get('upstream.login.failure')?.outcome).toBe('0'); // index 1: success in this fixture
    expect(byType.get('upstream.login.success')?.outcome).toBe('4');
    expect(byType.get('upstream.login.success')?.outcomeDesc).toBe('invalid_signature');
    expect(byType.get('replay.detected')?.outcome).toBe('8');
    const withConsent = b.entry.find((e) => e.resource.entity.some((x) => x.what.reference?.startsWith('Consent/')));
    expect(withConsent?.resource.agent.find((a) => a.who.identifier?.system === 'urn:ietf:params:oauth:client-id')).toBeDefined();
  });

  it('keeps sealed fields sealed unless asked to reveal with the sealer', async () => {
    const { entries, keys } = await ledgerWithOneOfEach();
    const sealed = JSON.stringify(toFhirBundle(entries, 'collection'));
    expect(sealed).not.toContain('9434765919');
    expect(sealed).not.toContain('actor-0');
    expect(sealed).toContain('/blind-index');
    expect(() => toFhirBundle(entries, 'collection', { reveal: true })).toThrow(/sealer/);
    const open = toFhirBundle(entries, 'collection', { reveal: true, sealer: keys.sealer });
    expect(bundle.safeParse(open).success).toBe(true);
    const first = open.entry[0].resource;
    expect(first.agent[0]).toEqual({ who: { identifier: { system: expect.stringMatching(/\/account$/), value: 'actor-0' } }, requestor: true });
    expect(JSON.stringify(first)).toContain('9434765919');
  });
});

describe('JSON lines export', () => {
  it('writes one stored entry per line, verifiable offline', async () => {
    const { entries, keys } = await ledgerWithOneOfEach();
    const lines: string[] = [];
    for await (const l of toJsonLines(entries)) lines.push(l);
    expect(lines).toHaveLength(entries.length);
    expect(lines.join('')).not.toContain('9434765919');
    let prev = '0'.repeat(64);
    for (const line of lines) {
      expect(line.endsWith('\n')).toBe(true);
      const e = storedEntrySchema.parse(JSON.parse(line));
      const { hash, ...rest } = e;
      expect(entryHash(prev, rest)).toBe(hash);
      prev = hash;
    }
    async function* gen() {
      yield* entries.slice(0, 2);
    }
    const revealed: string[] = [];
    for await (const l of toJsonLines(gen(), { reveal: true, sealer: keys.sealer })) revealed.push(l);
    const first = JSON.parse(revealed[0]) as JsonObject;
    expect(first.actor).toBe('actor-0');
    expect(first.personal).toEqual({ nhs_number: '9434765919' });
    expect(canonicalJson(first.details)).toBe('{"reason":"invalid_signature"}');
  });
});
