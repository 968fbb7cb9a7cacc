import path from 'node:path';

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
}

export function firecrackerLayout(vmDir: string): FirecrackerLayout {
  const drivesDir = path.join(vmDir, 'drives');
  const snapshotDir = path.join(vmDir, 'snapshot');
  return {
    dir: vmDir,
    pidFile: path.join(vmDir, 'firecracker.pid'),
    runtimeFile: path.join(vmDir, 'runtime.json'),
    apiSocket: path.join(vmDir, 'api.sock'),
    vsockSocket: path.join(vmDir, 'v.sock'),
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
  };
}
