import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach } from 'vitest';
import { REPO_ROOT } from '../helpers/fixtures.ts';

const dirs: string[] = [];

/** A temporary directory removed after the test, read-only store directories included. */
export async function scratchDir(prefix = 'mvm-bundle-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  for (const dir of dirs.splice(0)) {
    await execa('chmod', ['-R', 'u+w', dir], { reject: false });
    await rm(dir, { recursive: true, force: true });
  }
});

export interface FixtureBundle {
  /** What to import: a symlink to the bundle, as `nix build` leaves `result`. */
  dir: string;
  /** The real directory, to edit before import. */
  realDir: string;
  config: any;
  manifest: any;
}

/**
 * A role bundle shaped like nix/lib/bundle.nix builds it, for the gateway role: a fake vmlinux
 * reached through a symlink (as a Nix output links into /nix/store), an initrd, a real
 * rootfs.ext4 made with mkfs.ext4 -d, the committed gateway and openclaw-gateway manifests,
 * and a Firecracker config in the spec's shape with paths relative to the bundle.
 */
export async function fixtureBundle(options: { rootfsMib?: number } = {}): Promise<FixtureBundle> {
  const base = await scratchDir();
  const outside = path.join(base, 'store-kernel');
  await mkdir(outside);
  await writeFile(path.join(outside, 'vmlinux'), Buffer.concat([Buffer.from('\x7fELF'), Buffer.alloc(64 * 1024, 7)]));

  const realDir = path.join(base, 'bundle-gateway');
  await mkdir(realDir);
  await symlink(path.join(outside, 'vmlinux'), path.join(realDir, 'kernel'));
  await writeFile(path.join(realDir, 'initrd'), Buffer.alloc(8 * 1024, 3));

  const rootStaging = path.join(base, 'rootfs-staging');
  await mkdir(path.join(rootStaging, 'etc'), { recursive: true });
  await writeFile(path.join(rootStaging, 'etc', 'os-release'), 'ID=nixos\n');
  const rootfs = path.join(realDir, 'rootfs.ext4');
  await execa('truncate', ['-s', `${options.rootfsMib ?? 4}M`, rootfs]);
  await execa('mkfs.ext4', ['-q', '-F', '-L', 'mvm-root', '-d', rootStaging, rootfs]);

  const manifest = JSON.parse(await readFile(path.join(REPO_ROOT, 'nix/manifests/roles/gateway.json'), 'utf8'));
  const profile = JSON.parse(await readFile(path.join(REPO_ROOT, 'nix/manifests/profiles/openclaw-gateway.json'), 'utf8'));
  const slot = (drive: any) => ({
    drive_id: drive.name,
    partuuid: null,
    is_root_device: false,
    cache_type: drive.persistence === 'persistent' ? 'Writeback' : 'Unsafe',
    is_read_only: drive.read_only,
    path_on_host: null,
    io_engine: 'Sync',
    rate_limiter: null,
    socket: null,
  });
  const config = {
    'boot-source': {
      kernel_image_path: 'kernel',
      initrd_path: 'initrd',
      // The guest's own store path: allowed, it is inside the root image, not on the host.
      boot_args: 'console=ttyS0 panic=1 init=/nix/store/0000000000000000000000000000000-nixos-system-gateway/init',
    },
    drives: [
      { drive_id: 'rootfs', partuuid: null, is_root_device: true, cache_type: 'Unsafe', is_read_only: true, path_on_host: 'rootfs.ext4', io_engine: 'Sync', rate_limiter: null, socket: null },
      ...[...manifest.drives].sort((a: any, b: any) => a.device.localeCompare(b.device)).map(slot),
    ],
    'machine-config': { vcpu_count: 2, mem_size_mib: 1024, smt: false, track_dirty_pages: false, huge_pages: 'None' },
    'cpu-config': null,
    balloon: null,
    'network-interfaces': [],
    vsock: null,
    logger: null,
    metrics: null,
    'mmds-config': null,
    entropy: null,
    pmem: [],
    'memory-hotplug': null,
  };
  await writeJson(realDir, 'firecracker-config.json', config);
  await writeJson(realDir, 'manifest.json', manifest);
  await writeJson(realDir, 'profile.json', profile);

  const dir = path.join(base, 'result');
  await symlink(realDir, dir);
  return { dir, realDir, config, manifest };
}

export async function writeJson(dir: string, name: string, value: unknown): Promise<void> {
  await writeFile(path.join(dir, name), JSON.stringify(value));
}

/** Makes a stored file writable again, to tamper with it as an intruder (or a bad disk) would. */
export async function unlock(file: string): Promise<void> {
  await chmod(path.dirname(file), 0o755);
  await chmod(file, 0o644);
}
