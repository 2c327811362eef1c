import { z } from 'zod';
import { STAFF_CLAIMS, unentitledUses } from '../identity/entitlements.ts';

// Settings every upstream has, whatever its type: how its verified claims become a local account.

/** Declarative mapping of verified upstream claims to local profile attributes. */
export const mappingSchema = z
  .strictObject({
    /** local attribute -> upstream claim name (dot paths allowed, e.g. "nhsid_user_orgs.0.org_code"). */
    claims: z.record(z.string(), z.string()).default({}),
    /** Upstream claims that must be present, or the login is refused. */
    required: z.array(z.string()).default([]),
    /** Allowed values per upstream claim (others refuse the login). */
    allowed: z.record(z.string(), z.array(z.string())).default({}),
    /**
     * The privilege-bearing claims (CIS2 staff attributes) this upstream may assert; any other of them it
     * sends is dropped before mapping, so a patient identity provider cannot make anyone staff (WS-25).
     */
    privileged: z
      .array(z.enum(STAFF_CLAIMS))
      .optional()
      .describe('staff claims (nhsid_nrbac_roles, selected_roleid, nhsid_user_orgs, nhsid_useruid) this upstream is trusted to assert; others it sends are dropped. Default: all of them for the OIDC preset cis2, none otherwise'),
  })
  .default({ claims: {}, required: [], allowed: {} });

/** An identifier that may link this upstream login to an existing account, and the evidence it needs. */
export const linkableSchema = z.strictObject({
  /** Upstream claim carrying the identifier (e.g. nhs_number, nhsid_useruid, nameID). */
  claim: z.string().refine((c) => !/e-?mail/i.test(c), 'e-mail is never a linking identifier'),
  /** Namespace shared by upstreams that assert the same identifier (e.g. "nhs_number"). */
  kind: z.string(),
  /** Minimum assurance of this login for the identifier to count as verified. */
  minimumProofing: z.enum(['P0', 'P5', 'P9']).optional(),
  minimumAal: z.number().int().min(1).max(3).optional(),
});

/** When the broker stops sending people to an upstream that is not working (src/identity/circuit-breaker.ts). */
export const circuitBreakerSchema = z
  .strictObject({
    failureThreshold: z.number().int().min(1).max(1000).default(5).describe('consecutive outages (timeouts, refused connections, 5xx, unreadable answers) that open the circuit; refused logins never count'),
    openSeconds: z.number().int().min(1).max(3600).default(30).describe('seconds the circuit stays open (logins fail fast with a "not responding" page) before one trial login is let through'),
  })
  .default({ failureThreshold: 5, openSeconds: 30 })
  .describe('per-upstream circuit breaker: an upstream that keeps failing is skipped for a while, without touching the others');

export const commonUpstreamFields = {
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'use lower-case letters, digits and -'),
  displayName: z.string().min(1).max(100),
  /** Create a local account on first login (just-in-time provisioning). */
  provision: z.boolean().default(true),
  mapping: mappingSchema,
  linkable: z.array(linkableSchema).default([]),
  circuitBreaker: circuitBreakerSchema,
};

export type MappingConfig = z.infer<typeof mappingSchema>;
export type LinkableConfig = z.infer<typeof linkableSchema>;
export type CircuitBreakerConfig = z.infer<typeof circuitBreakerSchema>;

/** Configuration errors for settings that rely on a staff claim the upstream is not entitled to (it is dropped, the rule could never hold). */
export function checkEntitledUses(c: { mapping: MappingConfig; linkable: LinkableConfig[] }, entitled: readonly string[], ctx: z.RefinementCtx): void {
  for (const [path, claim] of unentitledUses(c, entitled)) {
    ctx.addIssue({ code: 'custom', path, message: `${claim} is a staff claim this upstream is not entitled to assert (see mapping.privileged)` });
  }
}
