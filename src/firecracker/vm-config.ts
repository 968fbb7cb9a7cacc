import path from 'node:path';
import { isUnderNixStore, NixStorePathError } from '../catalog/nix-store-guard.ts';
import type { InstanceSpec } from '../driver/vmm-driver.ts';
import { parseIpv4 } from '../schemas/ipv4.ts';
import type { BootSource, Drive, MachineConfiguration, NetworkInterface, Vsock } from './api-client.ts';

/**
 * One microVM's full Firecracker configuration, in the `--config-file` shape (the top-level keys
 * are the API's resource names, the values its request bodies). A pure function of the instance
 * spec, the bundle and the per-instance paths: the driver sends these sections one by one over
 * the API, and the same document can be handed to `firecracker --config-file`.
 *
 * The design's drive order: vda is the bundle's root image (read-only root device), then the
 * drives the role declares in device order (vdb data read-write with the `Writeback` cache so
 * guest flushes reach the disk, vdc secrets read-only, vdd config read-only, ...). Firecracker
 * names virtio-blk devices in the order they are attached, and the guest mounts them by label.
 */

export interface FirecrackerVmConfig {
  'boot-source': BootSource;
  drives: Drive[];
  'machine-config': MachineConfiguration;
  'network-interfaces': NetworkInterface[];
  vsock: Vsock;
}

/** The parts of an imported bundle (src/bundle/artifact-store.ts `BundleArtifacts`) a VM config needs. */
export interface BundleBootFiles {
  kernel: string;
  initrd: string | null;
  rootfs: string;
  /** The bundle's base `--config-file` document; only its boot_args are used. */
  baseConfig: Record<string, unknown>;
}

export interface InstancePaths {
  /** Image file of each drive the spec declares, by drive name. */
  drives: Record<string, string>;
  /** The vsock device's `uds_path`. */
  vsockUds: string;
  /** Overrides of the bundle's files, e.g. chroot-relative paths under the jailer. */
  kernel?: string;
  initrd?: string | null;
  rootfs?: string;
}

/** The tenant network as the guest must configure it: its gateway and the subnet's prefix length. */
export interface GuestNetwork {
  gateway: string;
  prefixLength: number;
}

export interface VmConfigOptions {
  /** Diff snapshots need KVM dirty-page tracking from boot on. */
  diffSnapshots?: boolean;
}

export class VmConfigError extends Error {
  override readonly name = 'VmConfigError';
  constructor(
    readonly instanceId: string,
    readonly field: string,
    message: string,
  ) {
    super(`Firecracker config for ${instanceId}: ${field}: ${message}`);
  }
}

/** The guest's name for its one network interface, in the kernel's `ip=` argument. */
export const GUEST_IFACE = 'eth0';
/** Firecracker's interface id for it (host side). */
export const IFACE_ID = 'eth0';
export const ROOT_DRIVE_ID = 'rootfs';
const DEFAULT_BOOT_ARGS = 'console=ttyS0 reboot=k panic=1 pci=off';

export function netmaskOf(prefixLength: number): string {
  if (!Number.isInteger(prefixLength) || prefixLength < 1 || prefixLength > 30) throw new Error(`prefix length must be 1-30, got ${prefixLength}`);
  const mask = prefixLength === 0 ? 0 : (0xffff_ffff << (32 - prefixLength)) >>> 0;
  return [24, 16, 8, 0].map((shift) => (mask >>> shift) & 0xff).join('.');
}

/** The kernel's static IP configuration: `ip=<client>::<gateway>:<netmask>::<device>:off` (no autoconfiguration). */
export function kernelIpArg(ipv4: string, network: GuestNetwork): string {
  return `ip=${ipv4}::${network.gateway}:${netmaskOf(network.prefixLength)}::${GUEST_IFACE}:off`;
}

export function buildVmConfig(spec: InstanceSpec, bundle: BundleBootFiles, paths: InstancePaths, network: GuestNetwork, options: VmConfigOptions = {}): FirecrackerVmConfig {
  const id = spec.instance_id;
  const hostPath = (field: string, p: string): string => {
    if (p === '' || !path.isAbsolute(p)) throw new VmConfigError(id, field, `must be an absolute path, got ${JSON.stringify(p)}`);
    const resolved = path.resolve(p);
    if (isUnderNixStore(resolved)) throw new NixStorePathError(`Firecracker config for ${id}: ${field}`, p);
    return p;
  };
  if (parseIpv4(spec.network.ipv4) === undefined) throw new VmConfigError(id, 'network.ipv4', `not an IPv4 address: ${spec.network.ipv4}`);
  if (parseIpv4(network.gateway) === undefined) throw new VmConfigError(id, 'gateway', `not an IPv4 address: ${network.gateway}; give the tenant bridge's address`);

  const base = (bundle.baseConfig['boot-source'] ?? {}) as { boot_args?: unknown };
  const baseArgs = typeof base.boot_args === 'string' ? base.boot_args : DEFAULT_BOOT_ARGS;
  // The instance's own address replaces any the bundle carried: one bundle serves every tenant.
  const bootArgs = [...baseArgs.split(/\s+/).filter((arg) => arg !== '' && !arg.startsWith('ip=')), kernelIpArg(spec.network.ipv4, network)].join(' ');
  const initrd = paths.initrd !== undefined ? paths.initrd : bundle.initrd;
  const bootSource: BootSource = {
    kernel_image_path: hostPath('boot-source.kernel_image_path', paths.kernel ?? bundle.kernel),
    ...(initrd ? { initrd_path: hostPath('boot-source.initrd_path', initrd) } : {}),
    boot_args: bootArgs,
  };

  const seen = new Set<string>(['vda']);
  const roleDrives = [...spec.drives].sort((a, b) => a.device.localeCompare(b.device));
  const drives: Drive[] = [
    { drive_id: ROOT_DRIVE_ID, is_root_device: true, is_read_only: true, cache_type: 'Unsafe', io_engine: 'Sync', path_on_host: hostPath('drives.rootfs.path_on_host', paths.rootfs ?? bundle.rootfs) },
  ];
  for (const drive of roleDrives) {
    if (!/^vd[b-z]$/.test(drive.device)) throw new VmConfigError(id, `drives.${drive.name}.device`, `must be vdb..vdz (vda is the root image), got ${JSON.stringify(drive.device)}`);
    if (seen.has(drive.device)) throw new VmConfigError(id, `drives.${drive.name}.device`, `${drive.device} is used twice`);
    seen.add(drive.device);
    if (drive.name === ROOT_DRIVE_ID) throw new VmConfigError(id, `drives.${drive.name}`, `the drive name "${ROOT_DRIVE_ID}" is reserved for the root image`);
    const image = paths.drives[drive.name];
    if (image === undefined) throw new VmConfigError(id, `drives.${drive.name}`, 'no image path was given for this drive; prepare its image first');
    drives.push({
      drive_id: drive.name,
      is_root_device: false,
      is_read_only: drive.read_only,
      // Persistent drives must honour the guest's flushes; the others are rebuilt anyway.
      cache_type: drive.persistence === 'persistent' ? 'Writeback' : 'Unsafe',
      io_engine: 'Sync',
      path_on_host: hostPath(`drives.${drive.name}.path_on_host`, image),
    });
  }

  return {
    'boot-source': bootSource,
    drives,
    'machine-config': {
      vcpu_count: spec.resources.vcpus,
      mem_size_mib: spec.resources.mem_mib,
      smt: false,
      track_dirty_pages: options.diffSnapshots === true,
      huge_pages: 'None',
    },
    'network-interfaces': [{ iface_id: IFACE_ID, host_dev_name: spec.network.tap, guest_mac: spec.network.mac }],
    vsock: { guest_cid: spec.network.vsock_cid, uds_path: hostPath('vsock.uds_path', paths.vsockUds) },
  };
}
