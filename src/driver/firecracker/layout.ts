import path from 'node:path';
import { JAILED_API_SOCKET } from '../../firecracker/jailer.ts';

/**
 * Where the Firecracker driver keeps one microVM's files, under `<stateDir>/vms/<instance>/`.
 * Paths stay short: the vsock socket plus Firecracker's `_<port>` suffix must fit Linux's
 * 108-byte Unix socket path limit.
 */
export interface FirecrackerLayout {
  dir: string;
  /** The Firecracker process: pid and /proc start time (pids are reused). */
  pidFile: string;
  /** What the running VM was booted with (agent port, tenant), for drain and describe. */
  runtimeFile: string;
  apiSocket: string;
  vsockSocket: string;
  drivesDir: string;
  /** The image file of a drive, by drive name. */
  drive(name: string): string;
  /** Content hash of a versioned drive's files, so an unchanged config is not rebuilt. */
  driveStamp(name: string): string;
  snapshotDir: string;
  /** Firecracker's vmstate and guest memory files. */
  snapshotState: string;
  snapshotMemory: string;
  /** The snapshot record: what the snapshot is tied to (the commit point of a sleep). */
  snapshotRecord: string;
  /** The full VM config of the last boot, in the `--config-file` shape (for people and debugging). */
  configFile: string;
  stdoutLog: string;
  stderrLog: string;
  /** Under the jailer: the chroot and where the VMM's own files appear in it; null without a jailer. */
  jail: JailLayout | null;
}

/**
 * A jailed VMM sees only its chroot, so every path it is given is chroot-relative (`inside`), and
 * the host reaches the same file under `chrootDir`. Its sockets live in the jail's /run, the one
 * directory the jailed uid may write besides /snapshot.
 */
export interface JailLayout {
  /** `<chroot base>/<firecracker name>/<instance>/root`. */
  chrootDir: string;
  /** `<chroot base>/<firecracker name>/<instance>`: removed as a whole on destroy. */
  jailDir: string;
  inside: { kernel: string; initrd: string; rootfs: string; drive(name: string): string; vsock: string; snapshotState: string; snapshotMemory: string };
  /** Where a jailed VMM writes its snapshot, on the host (moved out to snapshotDir once written). */
  snapshotDir: string;
}

export const JAILED_VSOCK = '/run/v.sock';

export function jailLayout(chrootDir: string): JailLayout {
  return {
    chrootDir,
    jailDir: path.dirname(chrootDir),
    inside: {
      kernel: '/kernel',
      initrd: '/initrd',
      rootfs: '/rootfs.ext4',
      drive: (name) => `/drives/${name}.ext4`,
      vsock: JAILED_VSOCK,
      snapshotState: '/snapshot/vmstate',
      snapshotMemory: '/snapshot/memory',
    },
    snapshotDir: path.join(chrootDir, 'snapshot'),
  };
}

/** Without `chrootDir` the VMM runs unjailed and its sockets live in the VM's directory. */
export function firecrackerLayout(vmDir: string, chrootDir: string | null = null): FirecrackerLayout {
  const jail = chrootDir === null ? null : jailLayout(chrootDir);
  const drivesDir = path.join(vmDir, 'drives');
  const snapshotDir = path.join(vmDir, 'snapshot');
  return {
    dir: vmDir,
    pidFile: path.join(vmDir, 'firecracker.pid'),
    runtimeFile: path.join(vmDir, 'runtime.json'),
    apiSocket: jail ? path.join(jail.chrootDir, JAILED_API_SOCKET) : path.join(vmDir, 'api.sock'),
    vsockSocket: jail ? path.join(jail.chrootDir, JAILED_VSOCK) : path.join(vmDir, 'v.sock'),
    drivesDir,
    drive: (name) => path.join(drivesDir, `${name}.ext4`),
    driveStamp: (name) => path.join(drivesDir, `${name}.sha256`),
    snapshotDir,
    snapshotState: path.join(snapshotDir, 'vmstate'),
    snapshotMemory: path.join(snapshotDir, 'memory'),
    snapshotRecord: path.join(snapshotDir, 'snapshot.json'),
    configFile: path.join(vmDir, 'vm-config.json'),
    stdoutLog: path.join(vmDir, 'firecracker.out.log'),
    stderrLog: path.join(vmDir, 'firecracker.err.log'),
    jail,
  };
}
