import type { Catalog } from '../catalog/catalog.ts';
import type { DesiredState, PoolSpec } from '../schemas/desired-state.ts';
import type { Target } from '../../machines/tenant-supervisor.ts';

/**
 * What applying a desired state would do, as a pure function of the desired state, the
 * instances that exist and the manifests. `host.plan()` shows it; `host.apply()` hands its
 * targets to the tenant actors, which carry it out in dependency order.
 */

export interface ExistingInstance {
  instance_id: string;
  tenant_id: string;
  pool_id: string;
  role: string;
  status: string;
}

export type PlanOp = 'create' | 'start' | 'wake' | 'resume' | 'warm' | 'sleep' | 'retire' | 'destroy';

export interface PlanStep {
  op: PlanOp;
  tenant_id: string;
  pool_id: string;
  instance_id: string;
  role: string;
  /** Current status, or null for an instance to create. */
  from: string | null;
  target: Target;
}

export interface PlannedMember {
  instance_id: string;
  tenant_id: string;
  pool_id: string;
  role: string;
  target: Target;
  pool: PoolSpec | null;
}

export interface Plan {
  generation: number;
  /** In execution order: tenants' roles by dependency rank, then tenant, pool and index. */
  steps: PlanStep[];
  /** Every instance that should exist or be removed, with its target. */
  members: PlannedMember[];
}

export function instanceId(tenant: string, pool: string, index: number): string {
  return `${tenant}-${pool}-${index}`;
}

/** Start rank of every role: 0 without dependencies, else one more than its deepest dependency. */
export function roleRanks(catalog: Catalog): Map<string, number> {
  const ranks = new Map<string, number>();
  const rank = (name: string, seen: Set<string>): number => {
    const known = ranks.get(name);
    if (known !== undefined) return known;
    if (seen.has(name)) return 0; // cycles are refused when the catalog loads
    const deps = catalog.roles.get(name)?.manifest.depends_on ?? [];
    const value = deps.length === 0 ? 0 : 1 + Math.max(...deps.map((d) => rank(d.role, new Set([...seen, name]))));
    ranks.set(name, value);
    return value;
  };
  for (const name of catalog.roles.keys()) rank(name, new Set());
  return ranks;
}

const UP = new Set(['running', 'starting-services', 'booting', 'provisioning', 'preflight', 'waiting', 'resuming', 'waking']);

function stepFor(status: string | null, target: Target): PlanOp | null {
  if (target === 'removed') return status === 'destroyed' || status === 'destroying' ? null : 'destroy';
  if (target === 'retired') return status === 'destroyed' || status === 'destroying' ? null : 'retire';
  if (status === null) return 'create';
  if (status === 'pending' || status === 'stopped' || status === 'failed' || status === 'refused') return 'start';
  if (target === 'running') return status === 'warm' ? 'resume' : status === 'sleeping' ? 'wake' : null;
  if (target === 'warm') return UP.has(status) ? 'warm' : status === 'sleeping' ? 'wake' : null;
  return UP.has(status) || status === 'warm' ? 'sleep' : null;
}

/** Targets by index: the first `running` instances run, the next `warm` are warm, the next `sleeping` sleep. */
function targetAt(pool: PoolSpec, index: number): Target {
  const { running, warm, sleeping } = pool.desired_counts;
  if (index < running) return 'running';
  if (index < running + warm) return 'warm';
  if (index < running + warm + sleeping) return 'sleeping';
  return 'retired';
}

export function planApply(desired: DesiredState, existing: readonly ExistingInstance[], catalog: Catalog): Plan {
  const ranks = roleRanks(catalog);
  const byId = new Map(existing.map((e) => [e.instance_id, e]));
  const members: PlannedMember[] = [];
  const seen = new Set<string>();

  for (const tenant of desired.tenants) {
    for (const pool of tenant.pools) {
      const total = pool.desired_counts.running + pool.desired_counts.warm + pool.desired_counts.sleeping;
      const indexes = new Set<number>();
      for (let i = 0; i < total; i++) indexes.add(i);
      // Existing instances beyond the new count are retired (scale-down).
      for (const e of existing) {
        if (e.tenant_id !== tenant.tenant_id || e.pool_id !== pool.pool_id) continue;
        const match = /-(\d+)$/.exec(e.instance_id);
        if (match) indexes.add(Number(match[1]));
      }
      for (const index of [...indexes].sort((a, b) => a - b)) {
        const id = instanceId(tenant.tenant_id, pool.pool_id, index);
        const current = byId.get(id);
        const target = targetAt(pool, index);
        if (!current && target === 'retired') continue;
        if (current && current.role !== pool.role) {
          // The pool changed role: the old instance goes, a new one takes its place under a new id next time.
          members.push({ instance_id: id, tenant_id: tenant.tenant_id, pool_id: pool.pool_id, role: current.role, target: 'removed', pool: null });
        } else {
          members.push({ instance_id: id, tenant_id: tenant.tenant_id, pool_id: pool.pool_id, role: pool.role, target, pool });
        }
        seen.add(id);
      }
    }
  }
  for (const e of existing) {
    if (!seen.has(e.instance_id) && e.status !== 'destroyed') {
      members.push({ instance_id: e.instance_id, tenant_id: e.tenant_id, pool_id: e.pool_id, role: e.role, target: 'removed', pool: null });
    }
  }

  const steps: PlanStep[] = [];
  for (const m of members) {
    const status = byId.get(m.instance_id)?.status ?? null;
    const op = stepFor(status, m.target);
    if (op) steps.push({ op, tenant_id: m.tenant_id, pool_id: m.pool_id, instance_id: m.instance_id, role: m.role, from: status, target: m.target });
  }
  const order = (s: PlanStep) => (s.op === 'destroy' || s.op === 'retire' ? 1_000 - (ranks.get(s.role) ?? 0) : ranks.get(s.role) ?? 0);
  steps.sort((a, b) => order(a) - order(b) || a.tenant_id.localeCompare(b.tenant_id) || a.instance_id.localeCompare(b.instance_id, undefined, { numeric: true }));
  return { generation: desired.generation, steps, members };
}
