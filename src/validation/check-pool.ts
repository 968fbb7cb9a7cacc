import type { Catalog } from '../catalog/catalog.ts';
import { issue, type Issue } from '../common/issues.ts';
import type { PoolSpec } from '../schemas/desired-state.ts';

function known(names: Iterable<string>): string {
  return [...names].sort().join(', ') || '(none)';
}

/**
 * Checks one structurally valid pool against the loaded manifests: its role and profile exist
 * and fit together, its resources meet the profile, and it only overrides what its role allows.
 */
export function checkPoolAgainstCatalog(pool: PoolSpec, catalog: Catalog, at: (string | number)[]): Issue[] {
  const issues: Issue[] = [];
  const add = (field: (string | number)[], code: string, message: string, hint?: string) => issues.push(issue([...at, ...field], code, message, hint));

  const loaded = catalog.roles.get(pool.role);
  if (!loaded) {
    add(['role'], 'unknown_role', `unknown role "${pool.role}"`, `loaded roles: ${known(catalog.roles.keys())}; a new role is a file nix/roles/<name>.nix exported with \`npm run manifests\``);
    return issues;
  }
  const role = loaded.manifest;

  const profile = catalog.profiles.get(pool.profile);
  if (!profile) {
    add(['profile'], 'unknown_profile', `unknown profile "${pool.profile}"`, `loaded profiles: ${known(catalog.profiles.keys())}`);
  } else if (!role.profiles.allowed.includes(pool.profile)) {
    add(['profile'], 'profile_not_allowed', `role "${role.name}" does not allow profile "${pool.profile}"`, `allowed: ${role.profiles.allowed.join(', ')}`);
  } else {
    const minimums = profile.manifest.resources.minimums;
    for (const key of ['vcpus', 'mem_mib', 'data_disk_mib'] as const) {
      if (pool.resources[key] < minimums[key]) {
        add(['resources', key], 'below_profile_minimum', `${key} ${pool.resources[key]} is below profile "${pool.profile}"'s minimum of ${minimums[key]}`);
      }
    }
  }

  if (pool.sleep) {
    if (!role.pool_overrides.sleep) {
      add(['sleep'], 'override_not_allowed', `role "${role.name}" does not let pools override its sleep policy`, 'remove the sleep field');
    } else {
      if (pool.sleep.floor !== undefined && pool.sleep.floor < role.sleep.floor) {
        add(['sleep', 'floor'], 'below_role_floor', `sleep floor ${pool.sleep.floor} is below role "${role.name}"'s floor of ${role.sleep.floor}; a pool may only raise it`);
      }
      if (pool.sleep.min_runtime_s !== undefined && pool.sleep.min_runtime_s < role.sleep.min_runtime_s) {
        add(['sleep', 'min_runtime_s'], 'below_role_minimum', `min_runtime_s ${pool.sleep.min_runtime_s} is below role "${role.name}"'s ${role.sleep.min_runtime_s}; a pool may only raise it`);
      }
    }
  }

  if (pool.ingress) {
    if (!role.pool_overrides.ingress) {
      add(['ingress'], 'override_not_allowed', `role "${role.name}" does not let pools change ingress`, 'remove the ingress field');
    } else if (pool.ingress.enabled && !role.ingress.allowed) {
      add(['ingress', 'enabled'], 'ingress_not_allowed', `role "${role.name}" does not allow external ingress`);
    }
  }

  if (pool.connectors && pool.connectors.length > 0) {
    if (!role.pool_overrides.connectors) {
      add(['connectors'], 'override_not_allowed', `role "${role.name}" does not let pools choose connectors`, 'remove the connectors field');
    } else {
      const declared = new Set(role.connectors.map((c) => c.name));
      const seen = new Set<string>();
      pool.connectors.forEach((name, index) => {
        if (!declared.has(name)) add(['connectors', index], 'unknown_connector', `role "${role.name}" has no connector "${name}"`, `declared: ${known(declared)}`);
        else if (seen.has(name)) add(['connectors', index], 'duplicate_connector', `connector "${name}" is listed twice`);
        seen.add(name);
      });
    }
  }

  const counts = pool.desired_counts;
  if (counts.sleeping > 0 && !role.sleep.allowed) {
    add(['desired_counts', 'sleeping'], 'sleep_not_allowed', `role "${role.name}" may not sleep; desired_counts.sleeping must be 0`);
  }
  if (counts.warm > 0 && !role.sleep.warm_allowed) {
    add(['desired_counts', 'warm'], 'warm_not_allowed', `role "${role.name}" may not be kept warm; desired_counts.warm must be 0`);
  }
  return issues;
}
