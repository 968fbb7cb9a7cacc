import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newInstanceContext } from '../../machines/instance-context.ts';
import { loadCatalogStrict } from '../../src/catalog/load-catalog.ts';
import { systemClock } from '../../src/common/clock.ts';
import { guestNetworkFor } from '../../src/driver/firecracker/firecracker-driver.ts';
import type { InstanceSpec, OpContext } from '../../src/driver/vmm-driver.ts';
import { buildVmConfig } from '../../src/firecracker/vm-config.ts';
import { identityFor, type TenantNetwork } from '../../src/host/addressing.ts';
import { DrivePlanner, guestNetworkOf } from '../../src/host/drive-plan.ts';
import type { PoolSpec } from '../../src/schemas/desired-state.ts';
import { SecretStore } from '../../src/secrets/secret-store.ts';
import { openStore, type Store } from '../../src/store/lmdb-store.ts';
import { type FakeRig, agentSpec, makeFakeRig } from './fake-harness.ts';

/**
 * The guest's network comes from the tenant's addressing, not a guess: DrivePlanner.spec puts the
 * tenant gateway (network + 1) and the subnet's prefix length on the spec, buildVmConfig puts them
 * on the kernel command line, and the driver refuses a spec that lacks them.
 */

const catalog = await loadCatalogStrict();
const worker = catalog.roles.get('worker')!;
const pool: PoolSpec = {
  pool_id: 'workers',
  role: 'worker',
  profile: 'openclaw-worker',
  revision: { artifacts: 'worker-2026-11-26', config_version: 1, secrets_epoch: 1 },
  resources: { vcpus: 1, mem_mib: 512, data_disk_mib: 64 },
  desired_counts: { running: 1, warm: 0, sleeping: 0 },
} as PoolSpec;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function planner(): DrivePlanner {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mvm-guestnet-'));
  const store: Store = openStore({ path: path.join(dir, 'state.lmdb'), clock: systemClock });
  cleanups.push(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return new DrivePlanner(store, new SecretStore(store, { clock: systemClock }));
}

function specIn(tenant: TenantNetwork, offset: number): InstanceSpec {
  const context = newInstanceContext(
    {
      instance_id: `${tenant.tenant_id}-workers-1`,
      tenant_id: tenant.tenant_id,
      pool_id: pool.pool_id,
      role: 'worker',
      profile: pool.profile,
      revision: pool.revision,
      network: identityFor(tenant, offset, 7),
      desired_manifest_hash: worker.hash,
    },
    systemClock.now(),
  );
  return planner().spec(context, worker, pool, [], false, [], tenant);
}

const bundle = { kernel: '/var/lib/mvm/k', initrd: null, rootfs: '/var/lib/mvm/r.ext4', baseConfig: {} };
const bootArgs = (spec: InstanceSpec) =>
  buildVmConfig(spec, bundle, { drives: Object.fromEntries(spec.drives.map((d) => [d.name, `/var/lib/mvm/${d.name}.ext4`])), vsockUds: '/var/lib/mvm/v.sock' }, guestNetworkFor('boot', spec))['boot-source'].boot_args;

describe('the guest network from the tenant addressing', () => {
  it('a /20 tenant: gateway network + 1, netmask 255.255.240.0, also for an address beyond the first /24', () => {
    const tenant = { tenant_id: 'wide', tenant_net_id: 101, ipv4_subnet: '10.101.0.0/20' };
    expect(guestNetworkOf(tenant)).toEqual({ gateway: '10.101.0.1', prefix_len: 20 });
    const spec = specIn(tenant, 3 * 256 + 7);
    expect(spec.network).toMatchObject({ ipv4: '10.101.3.7', gateway: '10.101.0.1', prefix_len: 20 });
    expect(bootArgs(spec)).toContain('ip=10.101.3.7::10.101.0.1:255.255.240.0::eth0:off');
  });

  it('a /27 tenant not on a /24 boundary: gateway .33, netmask 255.255.255.224', () => {
    const tenant = { tenant_id: 'narrow', tenant_net_id: 300, ipv4_subnet: '10.30.0.32/27' };
    const spec = specIn(tenant, 8);
    expect(spec.network).toMatchObject({ ipv4: '10.30.0.40', gateway: '10.30.0.33', prefix_len: 27 });
    expect(bootArgs(spec)).toContain('ip=10.30.0.40::10.30.0.33:255.255.255.224::eth0:off');
  });

  it('without the tenant the spec carries no guessed gateway, and the driver refuses it unless told', () => {
    const tenant = { tenant_id: 'narrow', tenant_net_id: 300, ipv4_subnet: '10.30.0.32/27' };
    const spec = specIn(tenant, 8);
    const bare: InstanceSpec = { ...spec, network: { ipv4: spec.network.ipv4, mac: spec.network.mac, tap: spec.network.tap, vsock_cid: spec.network.vsock_cid } };
    expect(() => guestNetworkFor('boot', bare)).toThrow(/no network.gateway and network.prefix_len for tenant "narrow"/);
    expect(guestNetworkFor('boot', bare, () => ({ gateway: '10.30.0.33', prefixLength: 27 }))).toEqual({ gateway: '10.30.0.33', prefixLength: 27 });
  });

  describe('through the driver and the fake Firecracker', () => {
    let r: FakeRig;
    const ctx = (): OpContext => ({ signal: new AbortController().signal, deadline: systemClock.now() + 30_000 });
    afterEach(async () => r.cleanup());

    it('the /27 values reach PUT /boot-source; a spec without them is refused before any process starts', async () => {
      r = makeFakeRig();
      const tenant = { tenant_id: 'narrow', tenant_net_id: 300, ipv4_subnet: '10.30.0.32/27' };
      const network = { ...identityFor(tenant, 8, 9), ...guestNetworkOf(tenant) };
      const spec: InstanceSpec = { ...agentSpec('narrow-1'), tenant_id: 'narrow', network };
      await r.driver.prepareDrives(spec, ctx());
      await r.driver.boot(spec, ctx());
      const boot = r.calls().find((c) => c.path === '/boot-source')!.body as { boot_args: string };
      expect(boot.boot_args).toContain('ip=10.30.0.40::10.30.0.33:255.255.255.224::eth0:off');

      const bare: InstanceSpec = { ...agentSpec('narrow-2'), tenant_id: 'narrow', network: identityFor(tenant, 9, 10) };
      await r.driver.prepareDrives(bare, ctx());
      const calls = r.calls().length;
      await expect(r.driver.boot(bare, ctx())).rejects.toMatchObject({ code: 'guest-network-unknown', retryable: false });
      expect(r.calls().length).toBe(calls);
      expect(r.driver.pidOf('narrow-2')).toBeNull();
    });
  });
});
