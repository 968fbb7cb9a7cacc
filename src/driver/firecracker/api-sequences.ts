import type { FirecrackerApiClient, RequestOptions, SnapshotLoadParams } from '../../firecracker/api-client.ts';
import type { FirecrackerVmConfig } from '../../firecracker/vm-config.ts';

/**
 * The Firecracker API call sequences of boot, sleep and wake, in the order Firecracker documents
 * (docs/getting-started.md, docs/snapshotting/snapshot-support.md). The driver runs them against
 * a process it started; the benchmark runs the same functions against the fake API server, so
 * what it measures is what the driver does.
 */

/** Configures a fresh process from the VM config and starts the guest. */
export async function bootSequence(client: FirecrackerApiClient, config: FirecrackerVmConfig, options: RequestOptions): Promise<void> {
  await client.putMachineConfig(config['machine-config'], options);
  await client.putBootSource(config['boot-source'], options);
  // Attachment order is the guest's device order: vda (root) first, then vdb, vdc, ...
  for (const drive of config.drives) await client.putDrive(drive, options);
  for (const iface of config['network-interfaces']) await client.putNetworkInterface(iface, options);
  await client.putVsock(config.vsock, options);
  await client.instanceStart(options);
}

export interface SnapshotFiles {
  snapshotPath: string;
  memPath: string;
  type: 'Full' | 'Diff';
}

/** Pauses the VM unless it already is, and writes its snapshot. The caller stops the process. */
export async function sleepSequence(client: FirecrackerApiClient, files: SnapshotFiles, options: RequestOptions): Promise<void> {
  const info = await client.describeInstance(options);
  if (info.state !== 'Paused') await client.patchVm('Paused', options);
  await client.createSnapshot({ snapshot_type: files.type, snapshot_path: files.snapshotPath, mem_file_path: files.memPath }, options);
}

export interface WakeParams extends Omit<SnapshotFiles, 'type'> {
  /** The tap the instance has now (it keeps its name, but the override makes that explicit). */
  network: { iface_id: string; host_dev_name: string }[];
  vsockUds: string;
  trackDirtyPages: boolean;
}

/** Loads a snapshot into a fresh process and resumes it. */
export async function wakeSequence(client: FirecrackerApiClient, params: WakeParams, options: RequestOptions): Promise<void> {
  const body: SnapshotLoadParams = {
    snapshot_path: params.snapshotPath,
    mem_backend: { backend_type: 'File', backend_path: params.memPath },
    track_dirty_pages: params.trackDirtyPages,
    resume_vm: true,
    network_overrides: params.network,
    vsock_override: { uds_path: params.vsockUds },
  };
  await client.loadSnapshot(body, options);
}
