import type { DesiredState } from '../schemas/desired-state.ts';

/**
 * A desired state whose tenants or pools were rejected must not take away what those tenants
 * and pools already run: rejection means "not changed", not "removed". This puts back, from the
 * previously applied document, every tenant and pool that the new document names but could not
 * use. Parts the new document leaves out entirely are still removed.
 */
export function keepRejectedParts(
  applicable: DesiredState,
  raw: unknown,
  rejected: { tenants: string[]; pools: string[] },
  previous: DesiredState | null,
): DesiredState {
  if (!previous || (rejected.tenants.length === 0 && rejected.pools.length === 0)) return applicable;
  const rawTenants = (raw as { tenants?: unknown[] } | null)?.tenants ?? [];
  const idAt = (list: unknown[] | undefined, index: number, field: string): string | undefined => {
    const value = (list?.[index] as Record<string, unknown> | undefined)?.[field];
    return typeof value === 'string' ? value : undefined;
  };
  const tenants = applicable.tenants.map((t) => ({ ...t, pools: [...t.pools] }));
  for (const path of rejected.tenants) {
    const index = Number(/^tenants\[(\d+)\]$/.exec(path)?.[1]);
    const id = idAt(rawTenants, index, 'tenant_id');
    const before = previous.tenants.find((t) => t.tenant_id === id);
    if (before && !tenants.some((t) => t.tenant_id === id)) tenants.push(before);
  }
  for (const path of rejected.pools) {
    const match = /^tenants\[(\d+)\]\.pools\[(\d+)\]$/.exec(path);
    if (!match) continue;
    const rawTenant = rawTenants[Number(match[1])] as { tenant_id?: unknown; pools?: unknown[] } | undefined;
    const tenantId = typeof rawTenant?.tenant_id === 'string' ? rawTenant.tenant_id : undefined;
    const poolId = idAt(rawTenant?.pools, Number(match[2]), 'pool_id');
    const target = tenants.find((t) => t.tenant_id === tenantId);
    const before = previous.tenants.find((t) => t.tenant_id === tenantId)?.pools.find((p) => p.pool_id === poolId);
    if (target && before && !target.pools.some((p) => p.pool_id === poolId)) target.pools.push(before);
  }
  return { ...applicable, tenants };
}
