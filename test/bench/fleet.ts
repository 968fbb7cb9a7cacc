import type { Catalog } from '../../src/catalog/catalog.ts';
import type { DesiredState, PoolSpec } from '../../src/schemas/desired-state.ts';

/**
 * The benchmark fleet: `tenants` tenants, each with one gateway pool and one worker pool, on
 * the built-in roles and their default profiles (resources at the profile defaults). Tenant i
 * (from 1) gets tenant_net_id i and the subnet 10.<1 + (i-1)/256>.<(i-1)%256>.0/24.
 */

export interface FleetShape {
  tenants: number;
  gatewaysRunning: number;
  workersRunning: number;
  generation?: number;
}

/** The instances one tenant of this shape has. */
export const instancesPerTenant = (shape: FleetShape): number => shape.gatewaysRunning + shape.workersRunning;

function poolFor(catalog: Catalog, poolId: string, role: string, running: number): PoolSpec {
  const manifest = catalog.roles.get(role)?.manifest;
  if (!manifest) throw new Error(`the catalog has no role "${role}"`);
  const profileName = manifest.profiles.default;
  const profile = catalog.profiles.get(profileName)?.manifest;
  if (!profile) throw new Error(`the catalog has no profile "${profileName}" (default of role "${role}")`);
  return {
    pool_id: poolId,
    role,
    profile: profileName,
    revision: { artifacts: `${role}-bench-1`, config_version: 1, secrets_epoch: 1 },
    resources: { ...profile.resources.defaults },
    desired_counts: { running, warm: 0, sleeping: 0 },
  };
}

export function fleetDesiredState(catalog: Catalog, shape: FleetShape): DesiredState {
  if (shape.tenants < 1 || shape.tenants > 4094) throw new RangeError('tenants must be 1..4094 (tenant_net_id range)');
  const tenants = Array.from({ length: shape.tenants }, (_, index) => ({
    tenant_id: `t${index + 1}`,
    tenant_net_id: index + 1,
    ipv4_subnet: `10.${1 + Math.floor(index / 256)}.${index % 256}.0/24`,
    pools: [poolFor(catalog, 'gateway', 'gateway', shape.gatewaysRunning), poolFor(catalog, 'workers', 'worker', shape.workersRunning)],
  }));
  return { schema_version: 1, node_id: 'bench-host', generation: shape.generation ?? 1, tenants };
}
