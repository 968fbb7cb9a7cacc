import { describe, expect, it } from 'vitest';
import { NixStorePathError } from '../../src/catalog/nix-store-guard.ts';
import { loadCatalogStrict } from '../../src/catalog/load-catalog.ts';
import type { InstanceSpec } from '../../src/driver/vmm-driver.ts';
import { type BundleBootFiles, VmConfigError, buildVmConfig, kernelIpArg, netmaskOf } from '../../src/firecracker/vm-config.ts';
import { CONFIG_FILE_SECTIONS, FirecrackerSpec } from './firecracker-spec.ts';

/** The generated `--config-file` documents, for every built-in role, against the official spec and the design's drive model. */

const spec = new FirecrackerSpec();
const catalog = await loadCatalogStrict();

const bundle: BundleBootFiles = {
  kernel: '/var/lib/mvm/artifacts/sha256-1/kernel',
  initrd: '/var/lib/mvm/artifacts/sha256-1/initrd',
  rootfs: '/var/lib/mvm/artifacts/sha256-1/rootfs.ext4',
  // As nix/lib/bundle.nix writes it: the guest's own init lives in the guest's /nix/store.
  baseConfig: { 'boot-source': { kernel_image_path: 'kernel', boot_args: 'console=ttyS0 reboot=k panic=1 pci=off init=/nix/store/abc-nixos-system/init' } },
};

function specFor(roleName: string): InstanceSpec {
  const role = catalog.roles.get(roleName)!;
  return {
    instance_id: `acme-${roleName}-1`,
    tenant_id: 'acme',
    pool_id: roleName,
    role: roleName,
    profile: 'base',
    revision: { artifacts: `${roleName}-2026-11-26`, config_version: 1, secrets_epoch: 1 },
    resources: { vcpus: 2, mem_mib: 1024, data_disk_mib: 512 },
    network: { ipv4: '10.101.4.7', mac: '06:00:0a:65:04:07', tap: 'mv101-1031', vsock_cid: 42 },
    // Declared order shuffled on purpose: the config must come out in device order.
    drives: [...role.manifest.drives].reverse().map((d) => ({ ...d, size_mib: 512, files: {} })),
    manifest_hash: role.hash,
    vsock: { agent_port: role.manifest.vsock.agent_port, handlers: role.manifest.vsock.handlers },
  };
}

const paths = (s: InstanceSpec) => ({ drives: Object.fromEntries(s.drives.map((d) => [d.name, `/var/lib/mvm/vms/${s.instance_id}/drives/${d.name}.ext4`])), vsockUds: `/var/lib/mvm/vms/${s.instance_id}/v.sock` });
const network = { gateway: '10.101.0.1', prefixLength: 20 };

describe('the Firecracker VM config', () => {
  it('covers every built-in role', () => {
    expect([...catalog.roles.keys()].sort()).toEqual(['builder', 'capability-imessage', 'gateway', 'worker']);
  });

  for (const roleName of [...catalog.roles.keys()].sort()) {
    it(`${roleName}: every section validates against the spec, drives in the design order, no host path under /nix/store`, () => {
      const s = specFor(roleName);
      const config = buildVmConfig(s, bundle, paths(s), network);
      for (const [section, value] of Object.entries(config)) {
        const rule = CONFIG_FILE_SECTIONS[section];
        expect(rule, `section ${section} is a known --config-file section`).toBeDefined();
        const items = rule!.array ? (value as unknown[]) : [value];
        for (const item of items) expect(spec.validate(rule!.definition, item), `${section}`).toEqual([]);
      }
      const role = catalog.roles.get(roleName)!.manifest;
      const declared = [...role.drives].sort((a, b) => a.device.localeCompare(b.device));
      expect(config.drives.map((d) => d.drive_id)).toEqual(['rootfs', ...declared.map((d) => d.name)]);
      expect(config.drives[0]).toMatchObject({ is_root_device: true, is_read_only: true, path_on_host: bundle.rootfs });
      for (const [i, drive] of declared.entries()) {
        expect(config.drives[i + 1]).toMatchObject({
          is_root_device: false,
          is_read_only: drive.read_only,
          cache_type: drive.persistence === 'persistent' ? 'Writeback' : 'Unsafe',
        });
      }
      const byMount = (mount: string) => config.drives.find((d) => d.drive_id === role.drives.find((r) => r.mount === mount)?.name);
      if (byMount('/data')) expect(byMount('/data')).toMatchObject({ is_read_only: false, cache_type: 'Writeback' });
      if (byMount('/run/secrets')) expect(byMount('/run/secrets')).toMatchObject({ is_read_only: true });
      if (byMount('/etc/mvm-config')) expect(byMount('/etc/mvm-config')).toMatchObject({ is_read_only: true });
      const hostPaths = [config['boot-source'].kernel_image_path, config['boot-source'].initrd_path, config.vsock.uds_path, ...config.drives.map((d) => d.path_on_host)];
      for (const p of hostPaths) expect(p).not.toMatch(/^\/nix\/store/);
      expect(config['machine-config']).toEqual({ vcpu_count: 2, mem_size_mib: 1024, smt: false, track_dirty_pages: false, huge_pages: 'None' });
      expect(config['network-interfaces']).toEqual([{ iface_id: 'eth0', host_dev_name: 'mv101-1031', guest_mac: '06:00:0a:65:04:07' }]);
      expect(config.vsock).toEqual({ guest_cid: 42, uds_path: `/var/lib/mvm/vms/${s.instance_id}/v.sock` });
      expect(config['boot-source'].boot_args).toBe('console=ttyS0 reboot=k panic=1 pci=off init=/nix/store/abc-nixos-system/init ip=10.101.4.7::10.101.0.1:255.255.240.0::eth0:off');
    });
  }

  it('replaces an ip= the bundle carried, and tracks dirty pages only for diff snapshots', () => {
    const s = specFor('worker');
    const config = buildVmConfig(s, { ...bundle, baseConfig: { 'boot-source': { boot_args: 'console=ttyS0 ip=dhcp' } } }, paths(s), network, { diffSnapshots: true });
    expect(config['boot-source'].boot_args).toBe('console=ttyS0 ip=10.101.4.7::10.101.0.1:255.255.240.0::eth0:off');
    expect(config['machine-config'].track_dirty_pages).toBe(true);
  });

  it('computes netmasks for any prefix length', () => {
    expect(netmaskOf(24)).toBe('255.255.255.0');
    expect(netmaskOf(8)).toBe('255.0.0.0');
    expect(netmaskOf(29)).toBe('255.255.255.248');
    expect(kernelIpArg('172.16.5.9', { gateway: '172.16.0.1', prefixLength: 16 })).toBe('ip=172.16.5.9::172.16.0.1:255.255.0.0::eth0:off');
  });

  it('refuses host paths under /nix/store, a drive without an image, and relative paths, naming the field', () => {
    const s = specFor('gateway');
    expect(() => buildVmConfig(s, { ...bundle, kernel: '/nix/store/xyz-linux/vmlinux' }, paths(s), network)).toThrow(NixStorePathError);
    expect(() => buildVmConfig(s, bundle, { ...paths(s), drives: {} }, network)).toThrow(/drives\.(data|secrets|config): no image path/);
    expect(() => buildVmConfig(s, bundle, { ...paths(s), vsockUds: 'v.sock' }, network)).toThrow(VmConfigError);
    expect(() => buildVmConfig(s, bundle, paths(s), { gateway: 'nope', prefixLength: 24 })).toThrow(/gateway/);
  });
});
