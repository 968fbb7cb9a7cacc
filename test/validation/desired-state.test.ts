import { describe, expect, it } from 'vitest';
import { DesiredState } from '../../src/schemas/desired-state.ts';
import { validateDesiredState } from '../../src/validation/validate-desired-state.ts';
import { aDesiredState, builtinCatalog } from '../helpers/fixtures.ts';

async function validate(doc: unknown) {
  return validateDesiredState(doc, await builtinCatalog());
}

/** The issues reported at exactly this path. */
async function issuesAt(doc: unknown, path: string) {
  const report = await validate(doc);
  return report.issues.filter((i) => i.path === path);
}

describe('desired state: a valid document', () => {
  it('accepts the documented example and applies all of it', async () => {
    const report = await validate(aDesiredState());
    expect(report.issues).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.applicable).toEqual(DesiredState.parse(aDesiredState()));
    expect(report.rejected).toEqual({ tenants: [], pools: [] });
  });
});

describe('desired state: ids become file and interface names', () => {
  it.each([
    ['../x', 'path traversal'],
    ['a/b', 'a nested path'],
    ['', 'empty'],
    ['Acme', 'upper case'],
    ['a'.repeat(33), 'over 32 characters'],
    ['-acme', 'a leading hyphen'],
    ['acme_', 'an underscore'],
  ])('rejects tenant_id %j (%s)', async (bad) => {
    const doc = aDesiredState();
    doc.tenants[0].tenant_id = bad;
    const found = await issuesAt(doc, 'tenants[0].tenant_id');
    expect(found).toHaveLength(1);
    expect(found[0]!.message).toMatch(/tenant_id/);
  });

  it.each(['../x', 'a/b', '', 'Workers', 'p'.repeat(33)])('rejects pool_id %j', async (bad) => {
    const doc = aDesiredState();
    doc.tenants[0].pools[1].pool_id = bad;
    expect(await issuesAt(doc, 'tenants[0].pools[1].pool_id')).toHaveLength(1);
  });

  it('accepts an id of exactly 32 characters', async () => {
    const doc = aDesiredState();
    doc.tenants[0].tenant_id = 'a'.repeat(32);
    expect((await validate(doc)).ok).toBe(true);
  });

  it('rejects a node_id that is not an id', async () => {
    const doc = aDesiredState();
    doc.node_id = 'host/01';
    expect(await issuesAt(doc, 'node_id')).toHaveLength(1);
  });
});

describe('desired state: tenant networks', () => {
  it.each(['10.1.0.0', '10.1.0.0/33', '300.1.0.0/24', '10.1.0/24', 'fd00::/64'])('rejects ipv4_subnet %j as not a CIDR', async (bad) => {
    const doc = aDesiredState();
    doc.tenants[0].ipv4_subnet = bad;
    const found = await issuesAt(doc, 'tenants[0].ipv4_subnet');
    expect(found.length).toBeGreaterThan(0);
  });

  it('rejects a subnet with host bits set and suggests the network address', async () => {
    const doc = aDesiredState();
    doc.tenants[0].ipv4_subnet = '10.101.0.5/24';
    const [found] = await issuesAt(doc, 'tenants[0].ipv4_subnet');
    expect(found!.message).toContain('did you mean "10.101.0.0/24"');
  });

  it.each([0, 4095, 1.5, -1])('rejects tenant_net_id %j outside 1..4094', async (bad) => {
    const doc = aDesiredState();
    doc.tenants[0].tenant_net_id = bad;
    expect(await issuesAt(doc, 'tenants[0].tenant_net_id')).toHaveLength(1);
  });

  it('rejects two tenants sharing a tenant_net_id, keeping the first', async () => {
    const doc = aDesiredState();
    doc.tenants[1].tenant_net_id = doc.tenants[0].tenant_net_id;
    const report = await validate(doc);
    expect(report.issues.map((i) => i.path)).toEqual(['tenants[1].tenant_net_id']);
    expect(report.rejected.tenants).toEqual(['tenants[1]']);
    expect(report.applicable!.tenants.map((t) => t.tenant_id)).toEqual(['acme']);
  });

  it('rejects overlapping subnets', async () => {
    const doc = aDesiredState();
    doc.tenants[1].ipv4_subnet = '10.101.0.128/25';
    const [found] = await issuesAt(doc, 'tenants[1].ipv4_subnet');
    expect(found!.message).toMatch(/overlaps tenants\[0\]/);
  });

  it('rejects every tenant whose subnet overlaps an earlier one, whatever the order of addresses', async () => {
    const doc = aDesiredState();
    const tenant = (id: string, net: number, subnet: string) => ({ ...structuredClone(doc.tenants[1]), tenant_id: id, tenant_net_id: net, ipv4_subnet: subnet });
    doc.tenants = [tenant('a', 1, '10.0.1.0/24'), tenant('b', 2, '10.0.0.0/16'), tenant('c', 3, '10.1.0.0/16'), tenant('d', 4, '10.1.255.0/24'), tenant('e', 5, '10.2.0.0/24')];
    const report = await validate(doc);
    expect(report.issues.map((i) => [i.path, i.message])).toEqual([
      ['tenants[1].ipv4_subnet', '10.0.0.0/16 overlaps tenants[0].ipv4_subnet; tenant subnets must be disjoint'],
      ['tenants[3].ipv4_subnet', '10.1.255.0/24 overlaps tenants[2].ipv4_subnet; tenant subnets must be disjoint'],
    ]);
    expect(report.applicable!.tenants.map((t) => t.tenant_id)).toEqual(['a', 'c', 'e']);
  });

  it('rejects duplicate tenant ids', async () => {
    const doc = aDesiredState();
    doc.tenants[1].tenant_id = 'acme';
    expect(await issuesAt(doc, 'tenants[1].tenant_id')).toHaveLength(1);
  });

  it('rejects a subnet too small for the instances its pools ask for', async () => {
    const doc = aDesiredState();
    doc.tenants[0].ipv4_subnet = '10.101.0.0/29'; // 8 addresses, 5 usable for instances
    doc.tenants[0].quotas = undefined;
    const [found] = await issuesAt(doc, 'tenants[0].ipv4_subnet');
    expect(found!.code).toBe('subnet_too_small');
  });
});

describe('desired state: roles come from the loaded manifests', () => {
  it('reports an unknown role at its path, names the loaded roles, and keeps the rest of the document', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[2].role = 'compiler';
    const report = await validate(doc);
    expect(report.issues).toHaveLength(1);
    expect(report.issues[0]).toMatchObject({ path: 'tenants[0].pools[2].role', code: 'unknown_role', message: 'unknown role "compiler"' });
    expect(report.issues[0]!.hint).toContain('builder, capability-imessage, gateway, worker');
    expect(report.rejected.pools).toEqual(['tenants[0].pools[2]']);
    expect(report.applicable!.tenants[0]!.pools.map((p) => p.pool_id)).toEqual(['gateway', 'workers']);
    expect(report.applicable!.tenants[1]!.pools).toHaveLength(2);
  });

  it('does not crash on pools that are not objects at all', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools.push(null, 42, 'gateway');
    const report = await validate(doc);
    expect(report.rejected.pools).toEqual(['tenants[0].pools[3]', 'tenants[0].pools[4]', 'tenants[0].pools[5]']);
    expect(report.applicable!.tenants[0]!.pools).toHaveLength(3);
  });

  it('reports problems in several pools at once', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[2].profile = 'python';
    doc.tenants[1].pools[1].resources.mem_mib = 64;
    const report = await validate(doc);
    expect(report.issues.map((i) => i.path)).toEqual(['tenants[0].pools[2].profile', 'tenants[1].pools[1].resources.mem_mib']);
  });

  it('rejects an unknown profile and a profile the role does not allow', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[0].profile = 'ruby';
    doc.tenants[0].pools[2].profile = 'openclaw-worker';
    const report = await validate(doc);
    expect(report.issues.map((i) => [i.path, i.code])).toEqual(
      expect.arrayContaining([
        ['tenants[0].pools[0].profile', 'unknown_profile'],
        ['tenants[0].pools[2].profile', 'profile_not_allowed'],
      ]),
    );
  });

  it('rejects resources below the profile minimum', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[0].resources.mem_mib = 1024; // openclaw-gateway needs 1536
    const [found] = await issuesAt(doc, 'tenants[0].pools[0].resources.mem_mib');
    expect(found!.code).toBe('below_profile_minimum');
  });
});

describe('desired state: revision', () => {
  it.each([
    ['config_version', -1],
    ['secrets_epoch', -1],
    ['config_version', 1.5],
  ])('rejects %s %j', async (field, bad) => {
    const doc = aDesiredState();
    doc.tenants[0].pools[0].revision[field] = bad;
    expect(await issuesAt(doc, `tenants[0].pools[0].revision.${field}`)).toHaveLength(1);
  });

  it('rejects artifacts that point into /nix/store, with one clear message', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[0].revision.artifacts = '/nix/store/0abc-gateway-bundle';
    const found = await issuesAt(doc, 'tenants[0].pools[0].revision.artifacts');
    expect(found).toHaveLength(1);
    expect(found[0]!.message).toMatch(/not a path/);
  });

  it('accepts a content hash and rejects a malformed one', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[0].revision.artifacts = `sha256:${'a'.repeat(64)}`;
    expect((await validate(doc)).ok).toBe(true);
    doc.tenants[0].pools[0].revision.artifacts = 'sha256:xyz';
    expect(await issuesAt(doc, 'tenants[0].pools[0].revision.artifacts')).toHaveLength(1);
  });
});

describe('desired state: per-pool overrides are limited to what the role allows', () => {
  it('rejects an ingress override on a role that does not allow one', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[1].ingress = { enabled: true };
    const [found] = await issuesAt(doc, 'tenants[0].pools[1].ingress');
    expect(found!.code).toBe('override_not_allowed');
  });

  it('rejects a sleep override on a role that does not allow one', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[2].sleep = { min_runtime_s: 10 };
    expect((await issuesAt(doc, 'tenants[0].pools[2].sleep'))[0]!.code).toBe('override_not_allowed');
  });

  it('lets a pool raise the sleep floor and minimum runtime but never lower them', async () => {
    const doc = aDesiredState();
    doc.tenants[1].pools[0].sleep = { floor: 0, min_runtime_s: 60 };
    const report = await validate(doc);
    expect(report.issues.map((i) => [i.path, i.code])).toEqual([
      ['tenants[1].pools[0].sleep.floor', 'below_role_floor'],
      ['tenants[1].pools[0].sleep.min_runtime_s', 'below_role_minimum'],
      // The rejected gateway takes the tenant's gateway-dependent pool with it.
      ['tenants[1].pools[1].role', 'missing_dependency'],
    ]);
  });

  it('rejects connectors the role does not declare, and duplicates', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[0].connectors = ['telegram', 'signal', 'telegram'];
    const report = await validate(doc);
    expect(report.issues.filter((i) => i.path.startsWith('tenants[0].pools[0]')).map((i) => [i.path, i.code])).toEqual([
      ['tenants[0].pools[0].connectors[1]', 'unknown_connector'],
      ['tenants[0].pools[0].connectors[2]', 'duplicate_connector'],
    ]);
  });

  it('rejects connectors on a role that has none to choose', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[1].connectors = ['telegram'];
    expect((await issuesAt(doc, 'tenants[0].pools[1].connectors'))[0]!.code).toBe('override_not_allowed');
  });
});

describe('desired state: sleep policy and counts', () => {
  it('rejects sleeping or warm instances of a role that may not sleep', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[2].desired_counts = { running: 1, warm: 1, sleeping: 1 };
    const report = await validate(doc);
    expect(report.issues.map((i) => i.code).sort()).toEqual(['sleep_not_allowed', 'warm_not_allowed']);
  });

  it('rejects a gateway pool that would leave the tenant below its sleep floor', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[0].desired_counts = { running: 0, warm: 0, sleeping: 1 };
    const report = await validate(doc);
    const floor = report.issues.find((i) => i.code === 'below_sleep_floor');
    expect(floor?.path).toBe('tenants[0].pools[0].desired_counts.running');
    expect(floor?.hint).toContain('raise desired_counts.running to 1');
  });

  it('counts the floor across pools of the same role in a tenant, and honours a raised floor', async () => {
    const doc = aDesiredState();
    const second = structuredClone(doc.tenants[1].pools[0]);
    second.pool_id = 'gateway-b';
    second.sleep = { floor: 2 };
    doc.tenants[1].pools.push(second);
    const report = await validate(doc); // two pools, one running each: 2 >= raised floor 2
    expect(report.issues).toEqual([]);
    second.desired_counts = { running: 0, warm: 0, sleeping: 1 };
    doc.tenants[1].pools[2] = second;
    const after = await validate(doc);
    expect(after.issues.filter((i) => i.code === 'below_sleep_floor')).toHaveLength(2);
  });

  it('allows a tenant with no instances of a role at all (the floor applies to live pools)', async () => {
    const doc = aDesiredState();
    doc.tenants[1].pools[0].desired_counts = { running: 0, warm: 0, sleeping: 0 };
    doc.tenants[1].pools[1].desired_counts = { running: 0, warm: 0, sleeping: 0 };
    expect((await validate(doc)).issues).toEqual([]);
  });
});

describe('desired state: startup dependencies and quotas', () => {
  it('rejects a worker pool in a tenant without a gateway pool', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools.splice(0, 1); // drop the gateway
    const report = await validate(doc);
    expect(report.issues.map((i) => [i.path, i.code])).toEqual([['tenants[0].pools[0].role', 'missing_dependency']]);
    expect(report.issues[0]!.message).toContain('"gateway" is ready');
  });

  it('cascades: a rejected gateway pool rejects the workers that depend on it', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[0].profile = 'minimal';
    const report = await validate(doc);
    expect(report.rejected.pools).toEqual(['tenants[0].pools[0]', 'tenants[0].pools[1]']);
    expect(report.applicable!.tenants[0]!.pools.map((p) => p.pool_id)).toEqual(['builds']);
  });

  it.each([
    ['max_instances', 3],
    ['max_vcpus', 4],
    ['max_mem_mib', 4096],
    ['max_data_disk_mib', 1000],
  ])('rejects a tenant over its %s quota', async (key, limit) => {
    const doc = aDesiredState();
    doc.tenants[0].quotas = { [key]: limit };
    const report = await validate(doc);
    expect(report.issues.map((i) => [i.path, i.code])).toEqual([[`tenants[0].quotas.${key}`, 'quota_exceeded']]);
    expect(report.rejected.tenants).toEqual(['tenants[0]']);
    expect(report.applicable!.tenants.map((t) => t.tenant_id)).toEqual(['globex']);
  });

  it('rejects duplicate pool ids within a tenant', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[2].pool_id = 'workers';
    expect((await issuesAt(doc, 'tenants[0].pools[2].pool_id'))[0]!.code).toBe('duplicate_pool_id');
  });
});

describe('desired state: document structure', () => {
  it('rejects unknown fields with a hint instead of ignoring them', async () => {
    const doc = aDesiredState();
    doc.tenants[0].pools[0].replicas = 3;
    const [found] = await issuesAt(doc, 'tenants[0].pools[0]');
    expect(found!.code).toBe('unrecognized_keys');
    expect(found!.hint).toMatch(/spelling/);
  });

  it('rejects another schema_version and marks the whole document unusable', async () => {
    const doc = aDesiredState();
    doc.schema_version = 2;
    const report = await validate(doc);
    expect(report.issues.map((i) => i.path)).toEqual(['schema_version']);
    expect(report.applicable).toBeNull();
  });

  it.each([null, 42, 'text', []])('does not crash on a document that is %j', async (input) => {
    const report = await validate(input);
    expect(report.ok).toBe(false);
    expect(report.applicable).toBeNull();
  });

  it('names missing required fields by path', async () => {
    const doc = aDesiredState();
    delete doc.tenants[0].pools[0].revision;
    const [found] = await issuesAt(doc, 'tenants[0].pools[0].revision');
    expect(found!.message).toBe('tenants[0].pools[0].revision is required');
  });
});
