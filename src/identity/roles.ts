import { z } from 'zod';

// CIS2 national RBAC roles (nhs-interfaces.md 1.6 and 1.9). A user may have none, one or several; with
// several, the user picks one (or the upstream's selected_roleid is used) and tokens carry it.

const roleSchema = z.looseObject({
  person_roleid: z.string().min(1),
  org_code: z.string().min(1),
  role_code: z.string().min(1),
  role_name: z.string().optional(),
});
export type StaffRole = z.infer<typeof roleSchema>;

export interface SelectedRole {
  roleId: string;
  roleCode: string;
  orgCode: string;
}

/** The well-formed roles in the claims; malformed entries are dropped, never trusted. */
export function rolesOf(claims: Record<string, unknown>): StaffRole[] {
  const raw = claims.nhsid_nrbac_roles;
  if (!Array.isArray(raw)) return [];
  return raw.flatMap((r) => {
    const parsed = roleSchema.safeParse(r);
    return parsed.success ? [parsed.data] : [];
  });
}

export function toSelected(role: StaffRole): SelectedRole {
  return { roleId: role.person_roleid, roleCode: role.role_code, orgCode: role.org_code };
}

/** The role chosen without asking: the only one, or the upstream's selected_roleid if it names one. */
export function preselectedRole(claims: Record<string, unknown>): SelectedRole | undefined {
  const roles = rolesOf(claims);
  if (roles.length === 1) return toSelected(roles[0]);
  const selected = claims.selected_roleid;
  const match = roles.find((r) => r.person_roleid === String(selected ?? ''));
  return match ? toSelected(match) : undefined;
}
