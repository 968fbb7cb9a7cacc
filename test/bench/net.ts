import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { loadCatalogStrict } from '../../src/catalog/load-catalog.ts';
import { AddressAllocator } from '../../src/net/address-allocator.ts';
import { generateRuleset, type NetInstance } from '../../src/net/nft-ruleset.ts';
import { DesiredState } from '../../src/schemas/desired-state.ts';
import { pool } from '../net/net-fixture.ts';

/**
 * Host networking figures for `npm run bench`: nftables ruleset generation and `nft -f` apply
 * time for 1,000 tenants (each a gateway with ingress on and two workers), and the address
 * allocation rate. The apply runs in a throwaway network namespace (`unshare -n`, as root), so the
 * machine's own ruleset is never touched; nft's own run time is measured from Node, process
 * start included, as the host pays it.
 */

const TENANTS = 1000;
const GENERATE_RUNS = 20;
const APPLY_RUNS = 5;
const ALLOCATIONS = 100_000;

function fleet() {
  return DesiredState.parse({
    schema_version: 1,
    node_id: 'bench-net',
    generation: 1,
    tenants: Array.from({ length: TENANTS }, (_, t) => ({
      tenant_id: `t${t + 1}`,
      tenant_net_id: t + 1,
      ipv4_subnet: `10.${Math.floor(t / 16) + 1}.${(t % 16) * 16}.0/20`,
      pools: [pool('gw', 'gateway', 1, true), pool('wk', 'worker', 2)],
    })),
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchNet(): Promise<{ rows: { label: string; figure: string }[]; json: Record<string, number> }> {
  const catalog = await loadCatalogStrict();
  const desired = fleet();

  const allocator = new AddressAllocator(null);
  const instances: NetInstance[] = [];
  for (const tenant of desired.tenants) {
    for (const pool of tenant.pools) {
      for (let n = 0; n < pool.desired_counts.running; n++) {
        const id = `${tenant.tenant_id}-${pool.pool_id}-${n}`;
        instances.push({ instance_id: id, tenant_id: tenant.tenant_id, pool_id: pool.pool_id, ipv4: allocator.allocate(id, tenant, pool.pool_id).ipv4 });
      }
    }
  }

  const input = { desired, roleOf: (name: string) => catalog.roles.get(name)?.manifest, instances, options: { controlPorts: [7070] } };
  const generateMs: number[] = [];
  let text = '';
  for (let i = 0; i < GENERATE_RUNS; i++) {
    const t0 = performance.now();
    text = generateRuleset(input).text;
    generateMs.push(performance.now() - t0);
  }

  // Each run in a fresh throwaway namespace: one load (creates the table), and two loads (the
  // second replaces it, the steady state of `net apply`); the difference is the replace alone.
  const dir = await mkdtemp(path.join(tmpdir(), 'mvm-bench-net-'));
  const file = path.join(dir, 'ruleset.nft');
  await writeFile(file, text);
  const nft = async (script: string) => {
    const t0 = performance.now();
    const result = await execa('unshare', ['-n', '--', 'sh', '-c', script, file], { reject: false });
    if (result.exitCode !== 0) throw new Error(`nft -f failed for ${TENANTS} tenants (run as root): ${String(result.stderr)}`);
    return performance.now() - t0;
  };
  const firstMs: number[] = [];
  const replaceMs: number[] = [];
  try {
    for (let i = 0; i < APPLY_RUNS; i++) {
      const once = await nft('nft -f "$0"');
      const twice = await nft('nft -f "$0" && nft -f "$0"');
      firstMs.push(once);
      replaceMs.push(Math.max(0, twice - once));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  const rate = new AddressAllocator(null);
  const tenant = { tenant_id: 'big', tenant_net_id: 4000, ipv4_subnet: '10.0.0.0/8' };
  const t0 = performance.now();
  for (let i = 0; i < ALLOCATIONS; i++) rate.allocate(`i${i}`, tenant, 'p');
  for (let i = 0; i < ALLOCATIONS; i += 2) rate.release(`i${i}`);
  for (let i = 0; i < ALLOCATIONS / 2; i++) rate.allocate(`j${i}`, tenant, 'p');
  const allocationsPerSecond = (ALLOCATIONS * 1.5) / ((performance.now() - t0) / 1000);

  const json = {
    tenants: TENANTS,
    ruleset_bytes: text.length,
    ruleset_generate_ms_p50: median(generateMs),
    nft_apply_first_ms_p50: median(firstMs),
    nft_apply_replace_ms_p50: median(replaceMs),
    allocations_per_s: Math.round(allocationsPerSecond),
  };
  return {
    rows: [
      { label: `nftables ruleset generation, ${TENANTS} tenants (${instances.length} instances, ${Math.round(text.length / 1024)} KiB), p50 of ${GENERATE_RUNS}`, figure: `${json.ruleset_generate_ms_p50.toFixed(1)} ms` },
      { label: `nft -f apply into an empty netns (process start included), ${TENANTS} tenants, p50 of ${APPLY_RUNS}`, figure: `${json.nft_apply_first_ms_p50.toFixed(1)} ms` },
      { label: `nft -f replacing the loaded table, ${TENANTS} tenants, p50 of ${APPLY_RUNS}`, figure: `${json.nft_apply_replace_ms_p50.toFixed(1)} ms` },
      { label: 'address allocation rate (in memory, with releases and reuse)', figure: `${json.allocations_per_s.toLocaleString('en-US')} /s` },
    ],
    json,
  };
}
