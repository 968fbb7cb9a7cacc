import { z } from 'zod';
import type { Catalog, LoadedRole } from '../catalog/catalog.ts';
import { fromZodError, issue, type Issue } from '../common/issues.ts';
import { DesiredState, hostSliceProblem, PoolSpec as PoolSchema, TenantSpec, type PoolSpec, type TenantSpec as Tenant } from '../schemas/desired-state.ts';
import { cidrSize, cidrsOverlap, parseCidr } from '../schemas/ipv4.ts';
import { checkPoolAgainstCatalog } from './check-pool.ts';

/**
 * The outcome of validating a desired-state document. Problems are reported for every part of
 * the document at once, and each one rejects only the smallest part it concerns: a bad pool
 * rejects that pool, a bad tenant that tenant. The rest stays applicable.
 */
export interface DesiredStateReport {
  /** True when the whole document is valid. */
  ok: boolean;
  issues: Issue[];
  /** The document without its rejected tenants and pools; null when the document itself is unusable. */
  applicable: DesiredState | null;
  rejected: { tenants: string[]; pools: string[] };
}

// Layered parsing: the envelope, then each tenant, then each pool, so one bad pool cannot stop
// the others from being checked (zod skips refinements of a parent whose children failed).
const Envelope = DesiredState.extend({ tenants: z.array(z.unknown()) });
const TenantEnvelope = TenantSpec.extend({ pools: z.array(z.unknown()) });

interface TenantEntry {
  index: number;
  tenant: Tenant | null;
  pools: { index: number; pool: PoolSpec | null }[];
}

function poolPath(t: number, p: number): (string | number)[] {
  return ['tenants', t, 'pools', p];
}

export function validateDesiredState(input: unknown, catalog: Catalog): DesiredStateReport {
  const issues: Issue[] = [];
  const envelope = Envelope.safeParse(input);
  if (!envelope.success) issues.push(...fromZodError(envelope.error));

  const rawTenants: unknown[] =
    input !== null && typeof input === 'object' && Array.isArray((input as { tenants?: unknown }).tenants)
      ? (input as { tenants: unknown[] }).tenants
      : [];

  const entries: TenantEntry[] = rawTenants.map((raw, t) => {
    const parsed = TenantEnvelope.safeParse(raw);
    if (!parsed.success) issues.push(...fromZodError(parsed.error, ['tenants', t]));
    const rawPools: unknown[] =
      raw !== null && typeof raw === 'object' && Array.isArray((raw as { pools?: unknown }).pools) ? (raw as { pools: unknown[] }).pools : [];
    const pools = rawPools.map((rawPool, p) => {
      const pool = PoolSchema.safeParse(rawPool);
      if (!pool.success) {
        issues.push(...fromZodError(pool.error, poolPath(t, p)));
        return { index: p, pool: null };
      }
      const poolIssues = checkPoolAgainstCatalog(pool.data, catalog, poolPath(t, p));
      issues.push(...poolIssues);
      return { index: p, pool: poolIssues.length === 0 ? pool.data : null };
    });
    return { index: t, tenant: parsed.success ? { ...parsed.data, pools: [] } : null, pools };
  });

  checkAcrossTenants(entries, issues);
  for (const entry of entries) if (entry.tenant) checkWithinTenant(entry, catalog, issues);

  const rejectedTenants: string[] = [];
  const rejectedPools: string[] = [];
  const tenants: Tenant[] = [];
  for (const entry of entries) {
    if (!entry.tenant) {
      rejectedTenants.push(`tenants[${entry.index}]`);
      continue;
    }
    const pools: PoolSpec[] = [];
    for (const { index, pool } of entry.pools) {
      if (pool) pools.push(pool);
      else rejectedPools.push(`tenants[${entry.index}].pools[${index}]`);
    }
    tenants.push({ ...entry.tenant, pools });
  }
  return {
    ok: issues.length === 0,
    issues,
    applicable: envelope.success ? { ...envelope.data, tenants } : null,
    rejected: { tenants: rejectedTenants, pools: rejectedPools },
  };
}

/** Tenant ids, network ids and subnets must be unique across the document; the later entry is rejected. */
function checkAcrossTenants(entries: TenantEntry[], issues: Issue[]): void {
  const ids = new Map<string, number>();
  const netIds = new Map<number, number>();
  const reject = (entry: TenantEntry, field: string, message: string) => {
    issues.push(issue(['tenants', entry.index, field], `duplicate_${field}`, message));
    entry.tenant = null;
  };
  for (const entry of entries) {
    const tenant = entry.tenant;
    if (!tenant) continue;
    const sameId = ids.get(tenant.tenant_id);
    const sameNet = netIds.get(tenant.tenant_net_id);
    if (sameId !== undefined) reject(entry, 'tenant_id', `duplicate tenant_id "${tenant.tenant_id}" (also tenants[${sameId}])`);
    if (sameNet !== undefined) {
      reject(entry, 'tenant_net_id', `tenant_net_id ${tenant.tenant_net_id} is already used by tenants[${sameNet}]; each tenant needs its own network`);
    }
    if (entry.tenant) {
      ids.set(tenant.tenant_id, entry.index);
      netIds.set(tenant.tenant_net_id, entry.index);
    }
  }
  // Overlapping subnets: sorted by network address, a subnet can only overlap the widest one
  // before it, so one pass finds every clash (thousands of tenants, no pairwise loop). The
  // tenant later in the document is the one rejected.
  const subnets = entries
    .filter((entry) => entry.tenant)
    .map((entry) => ({ entry, cidr: parseCidr(entry.tenant!.ipv4_subnet)! }))
    .sort((a, b) => a.cidr.network - b.cidr.network || a.entry.index - b.entry.index);
  let widest: (typeof subnets)[number] | undefined;
  for (const current of subnets) {
    if (widest && cidrsOverlap(widest.cidr, current.cidr)) {
      const [kept, rejected] = widest.entry.index < current.entry.index ? [widest, current] : [current, widest];
      reject(rejected.entry, 'ipv4_subnet', `${rejected.entry.tenant!.ipv4_subnet} overlaps tenants[${kept.entry.index}].ipv4_subnet; tenant subnets must be disjoint`);
      if (rejected === widest) widest = current;
      continue;
    }
    if (!widest || current.cidr.network + cidrSize(current.cidr) > widest.cidr.network + cidrSize(widest.cidr)) widest = current;
  }
}

function total(pool: PoolSpec): number {
  const c = pool.desired_counts;
  return c.running + c.warm + c.sleeping;
}

/** Rules that span the pools of one tenant: unique pool ids, sleep floors, dependencies, capacity and quotas. */
function checkWithinTenant(entry: TenantEntry, catalog: Catalog, issues: Issue[]): void {
  const t = entry.index;
  const reject = (p: { index: number; pool: PoolSpec | null }, field: (string | number)[], code: string, message: string, hint?: string) => {
    issues.push(issue([...poolPath(t, p.index), ...field], code, message, hint));
    p.pool = null;
  };

  const seen = new Map<string, number>();
  for (const p of entry.pools) {
    if (!p.pool) continue;
    const first = seen.get(p.pool.pool_id);
    if (first !== undefined) reject(p, ['pool_id'], 'duplicate_pool_id', `duplicate pool_id "${p.pool.pool_id}" (also pools[${first}])`);
    else seen.set(p.pool.pool_id, p.index);
  }

  // The sleep floor counts running instances of a role across the tenant's pools.
  const byRole = new Map<string, { index: number; pool: PoolSpec | null }[]>();
  for (const p of entry.pools) if (p.pool) byRole.set(p.pool.role, [...(byRole.get(p.pool.role) ?? []), p]);
  for (const [roleName, pools] of byRole) {
    const role = catalog.roles.get(roleName) as LoadedRole;
    const live = pools.filter((p) => total(p.pool!) > 0);
    if (live.length === 0) continue;
    const floor = Math.max(role.manifest.sleep.floor, ...live.map((p) => p.pool!.sleep?.floor ?? 0));
    const running = live.reduce((sum, p) => sum + p.pool!.desired_counts.running, 0);
    if (running < floor) {
      for (const p of live) {
        reject(
          p,
          ['desired_counts', 'running'],
          'below_sleep_floor',
          `role "${roleName}" keeps at least ${floor} running instance(s) per tenant, but this tenant's ${roleName} pools ask for ${running}`,
          `raise desired_counts.running to ${floor}, or set every ${roleName} pool of this tenant to 0 instances`,
        );
      }
    }
  }

  // Startup dependencies: a pool whose role depends on another role needs an accepted pool of
  // that role in the same tenant. Repeat until stable, since a rejection can cascade.
  for (let changed = true; changed; ) {
    changed = false;
    const present = new Set(entry.pools.filter((p) => p.pool && total(p.pool) > 0).map((p) => p.pool!.role));
    for (const p of entry.pools) {
      if (!p.pool || total(p.pool) === 0) continue;
      const role = catalog.roles.get(p.pool.role)!;
      const missing = role.manifest.depends_on.find((dep) => !present.has(dep.role));
      if (missing) {
        reject(
          p,
          ['role'],
          'missing_dependency',
          `role "${p.pool.role}" starts only after the tenant's "${missing.role}" is ${missing.condition}, and this tenant has no usable ${missing.role} pool`,
          `add a pool with role "${missing.role}" to tenant "${entry.tenant!.tenant_id}", or fix the one that was rejected`,
        );
        changed = true;
      }
    }
  }

  const tenant = entry.tenant!;
  const accepted = entry.pools.flatMap((p) => (p.pool ? [p.pool] : []));
  const instances = accepted.reduce((sum, pool) => sum + total(pool), 0);
  const capacity = cidrSize(parseCidr(tenant.ipv4_subnet)!) - 3; // network, gateway (.1) and broadcast
  const tenantProblem = (field: (string | number)[], code: string, message: string, hint?: string) => {
    issues.push(issue(['tenants', t, ...field], code, message, hint));
    entry.tenant = null;
  };
  if (instances > capacity) {
    tenantProblem(['ipv4_subnet'], 'subnet_too_small', `${tenant.ipv4_subnet} has room for ${capacity} instances but the pools ask for ${instances}`, 'use a larger subnet');
  }
  const slice = hostSliceProblem(tenant, instances);
  if (slice) tenantProblem(['host_slice'], 'host_slice_unusable', slice.message, slice.hint);
  const quotas = tenant.quotas;
  if (quotas) {
    const sums = {
      max_instances: instances,
      max_vcpus: accepted.reduce((sum, pool) => sum + total(pool) * pool.resources.vcpus, 0),
      max_mem_mib: accepted.reduce((sum, pool) => sum + total(pool) * pool.resources.mem_mib, 0),
      max_data_disk_mib: accepted.reduce((sum, pool) => sum + total(pool) * pool.resources.data_disk_mib, 0),
    };
    for (const key of Object.keys(sums) as (keyof typeof sums)[]) {
      const limit = quotas[key];
      if (limit !== undefined && sums[key] > limit) {
        tenantProblem(['quotas', key], 'quota_exceeded', `the tenant's pools need ${sums[key]} but quotas.${key} is ${limit}`, 'lower desired_counts or resources, or raise the quota');
      }
    }
  }
}
