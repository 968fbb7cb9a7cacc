import { z } from 'zod';
import { LocalName, NodeId, PoolId, RoleName, ProfileName, TenantId } from './ids.ts';
import { cidrContains, cidrLast, formatIpv4, parseCidr } from './ipv4.ts';
import { Resources } from './profile-manifest.ts';
import { Revision } from './revision.ts';

/**
 * The desired state a coordinator hands one host. This file is the structure (and the JSON
 * Schema users write against). Rules that span entries (unique ids, disjoint subnets) or depend
 * on the loaded role and profile manifests (does the role exist, may this pool override that)
 * live in src/validation/validate-desired-state.ts, so a new role needs no schema change and one
 * bad pool never hides the problems of another.
 */

const Count = z.number().int().min(0).max(1000);

export const DesiredCounts = z
  .object({
    running: Count.describe('Instances booted and serving.'),
    warm: Count.describe('Instances paused with memory resident.'),
    sleeping: Count.describe('Instances snapshotted to disk.'),
  })
  .strict();

export const PoolSleepOverride = z
  .object({
    min_runtime_s: z.number().int().min(0).max(86_400).optional().describe('Raise the role minimum runtime.'),
    floor: z.number().int().min(0).max(1000).optional().describe('Raise the role sleep floor for this tenant.'),
  })
  .strict();

export const PoolSpec = z
  .object({
    pool_id: PoolId,
    role: RoleName.describe('A role from the loaded role manifests (not a closed list).'),
    profile: ProfileName,
    revision: Revision,
    resources: Resources,
    desired_counts: DesiredCounts,
    sleep: PoolSleepOverride.optional().describe('Sleep policy override; only where the role allows it.'),
    ingress: z
      .object({ enabled: z.boolean() })
      .strict()
      .optional()
      .describe('External ingress on or off; only where the role allows it.'),
    connectors: z
      .array(LocalName)
      .optional()
      .describe('Connectors to enable (for example whatsapp, telegram); only ones the role declares.'),
  })
  .strict();

export const Quotas = z
  .object({
    max_instances: Count.optional(),
    max_vcpus: z.number().int().min(0).optional(),
    max_mem_mib: z.number().int().min(0).optional(),
    max_data_disk_mib: z.number().int().min(0).optional(),
  })
  .strict();

export const TENANT_NET_ID_MAX = 4094;

export const TenantSpec = z
  .object({
    tenant_id: TenantId,
    tenant_net_id: z
      .number()
      .int()
      .min(1)
      .max(TENANT_NET_ID_MAX)
      .describe('Cluster-wide tenant network number (1-4094); unique per host document.'),
    ipv4_subnet: z
      .string()
      .superRefine((value, ctx) => {
        const cidr = parseCidr(value);
        if (!cidr) {
          ctx.addIssue({ code: 'custom', message: `"${value}" is not an IPv4 CIDR; write it like "10.20.1.0/24"` });
        } else if (cidr.prefix < 8 || cidr.prefix > 29) {
          ctx.addIssue({ code: 'custom', message: `prefix /${cidr.prefix} is out of range; tenant subnets are /8 to /29` });
        } else if (cidr.address !== cidr.network) {
          ctx.addIssue({
            code: 'custom',
            message: `"${value}" has host bits set; did you mean "${formatIpv4(cidr.network)}/${cidr.prefix}"?`,
          });
        }
      })
      .describe('The tenant network, CIDR notation, host bits zero.'),
    host_slice: z
      .string()
      .superRefine((value, ctx) => {
        const cidr = parseCidr(value);
        if (!cidr) ctx.addIssue({ code: 'custom', message: `host_slice "${value}" is not an IPv4 CIDR; write it like "10.20.1.64/26"` });
        else if (cidr.address !== cidr.network) {
          ctx.addIssue({ code: 'custom', message: `host_slice "${value}" has host bits set; did you mean "${formatIpv4(cidr.network)}/${cidr.prefix}"?` });
        }
      })
      .optional()
      .describe(
        'The part of ipv4_subnet this host hands out to instances (CIDR inside ipv4_subnet). A coordinator that runs the tenant on several hosts gives each a disjoint slice, so addresses stay unique cluster-wide. Default: the whole subnet.',
      ),
    quotas: Quotas.optional(),
    pools: z.array(PoolSpec),
  })
  .strict();

/**
 * The check of `host_slice` against its tenant's `ipv4_subnet` and pools (run by
 * src/validation; a refinement on TenantSpec itself would stop the validator from extending it):
 * the slice must lie inside the subnet and hold an address for every instance the pools ask for.
 * Returns null when there is no slice or it fits.
 */
export function hostSliceProblem(
  tenant: { tenant_id: string; ipv4_subnet: string; host_slice?: string | undefined },
  instances: number,
): { message: string; hint: string } | null {
  if (tenant.host_slice === undefined) return null;
  const subnet = parseCidr(tenant.ipv4_subnet);
  const slice = parseCidr(tenant.host_slice);
  if (!subnet || !slice) return null; // reported by the fields themselves
  if (!cidrContains(subnet, slice)) {
    return {
      message: `host_slice ${tenant.host_slice} of tenant "${tenant.tenant_id}" is not inside its ipv4_subnet ${tenant.ipv4_subnet}`,
      hint: `choose a slice within the subnet, like "${formatIpv4(subnet.network)}/${Math.min(30, subnet.prefix + 2)}"`,
    };
  }
  // The subnet's network, gateway (.1) and broadcast addresses are never handed out.
  const usable = Math.max(0, Math.min(cidrLast(slice), cidrLast(subnet) - 1) - Math.max(slice.network, subnet.network + 2) + 1);
  if (instances > usable) {
    return {
      message: `host_slice ${tenant.host_slice} of tenant "${tenant.tenant_id}" has room for ${usable} instances but the pools ask for ${instances}`,
      hint: 'use a wider host_slice (inside ipv4_subnet) or fewer instances',
    };
  }
  return null;
}

export const DesiredState = z
  .object({
    schema_version: z.literal(1, { error: 'schema_version must be 1 (the only version this build reads)' }),
    node_id: NodeId,
    generation: z.number().int().min(0).describe('Monotonic document generation; a host refuses older ones.'),
    tenants: z.array(TenantSpec),
  })
  .strict()
  .meta({ id: 'DesiredState', title: 'mvm-actors desired state', description: 'What a coordinator hands one host.' });

export type DesiredState = z.infer<typeof DesiredState>;
export type TenantSpec = z.infer<typeof TenantSpec>;
export type PoolSpec = z.infer<typeof PoolSpec>;
