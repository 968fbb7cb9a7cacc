import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../../src/common/clock.ts';
import { sequentialIds } from '../../src/common/ids.ts';
import { type FirecrackerDriver, type ResolvedBundle, createFirecrackerDriver } from '../../src/driver/firecracker/firecracker-driver.ts';
import type { InstanceSpec } from '../../src/driver/vmm-driver.ts';
import { buildFilesImage, ensureDataImage } from '../../src/firecracker/drive-images.ts';
import { contractSpec } from '../driver/driver-contract.ts';
import type { FakeCall } from './fake-firecracker.ts';

/**
 * Test rig for the Firecracker driver against the fake Firecracker as a real child process: a
 * temp dir (short, for Unix socket paths), a `firecracker` wrapper script that starts
 * test/firecracker/fake-firecracker-main.ts with a call log, and a bundle resolver over tiny
 * kernel and rootfs files (the fake only checks that they exist).
 */

const FAKE_MAIN = fileURLToPath(new URL('./fake-firecracker-main.ts', import.meta.url));
const FAKE_JAILER_MAIN = fileURLToPath(new URL('./fake-jailer-main.ts', import.meta.url));
const TSX_LOADER = fileURLToPath(import.meta.resolve('tsx'));

export const MANIFEST_A = `sha256:${'a'.repeat(64)}`;

export interface FakeRig {
  dir: string;
  stateDir: string;
  firecrackerBin: string;
  callLog: string;
  bundles: Map<string, ResolvedBundle>;
  /** Under the fake jailer: its chroot base and the log of what each start parsed (one JSON line each). */
  jail: { chrootBase: string; jailerBin: string; log: string } | null;
  driver: FirecrackerDriver;
  /** A new driver on the same state dir (a restarted control plane). */
  newDriver(): FirecrackerDriver;
  /** Every API call any fake process answered, in order. */
  calls(): FakeCall[];
  cleanup(): Promise<void>;
}

/** Writes an executable that runs the fake in place of `firecracker`. */
export function writeFakeFirecrackerBin(dir: string, callLog: string): string {
  const bin = path.join(dir, 'firecracker');
  writeFileSync(bin, `#!/bin/sh\nexec "${process.execPath}" --import "${TSX_LOADER}" "${FAKE_MAIN}" --call-log "${callLog}" "$@"\n`);
  chmodSync(bin, 0o755);
  return bin;
}

/** Writes an executable that runs the fake jailer in place of `jailer`, logging each start to `jailLog`. */
export function writeFakeJailerBin(dir: string, jailLog: string): string {
  const bin = path.join(dir, 'jailer');
  writeFileSync(bin, `#!/bin/sh\nexec "${process.execPath}" --import "${TSX_LOADER}" "${FAKE_JAILER_MAIN}" --jail-log "${jailLog}" "$@"\n`);
  chmodSync(bin, 0o755);
  return bin;
}

export function fakeBundle(dir: string, name: string, manifestHash: string): ResolvedBundle {
  const kernel = path.join(dir, `${name}-vmlinux`);
  const rootfs = path.join(dir, `${name}-rootfs.ext4`);
  writeFileSync(kernel, `fake kernel of ${name}\n`);
  writeFileSync(rootfs, `fake rootfs of ${name}\n`);
  return {
    hash: `sha256:${createHash('sha256').update(name).digest('hex')}`,
    kernel,
    initrd: null,
    rootfs,
    baseConfig: { 'boot-source': { kernel_image_path: 'kernel', boot_args: 'console=ttyS0 reboot=k panic=1 pci=off' } },
    manifestHash,
  };
}

export function makeFakeRig(options: { stopGraceMs?: number; jailed?: boolean } = {}): FakeRig {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fc-'));
  const stateDir = path.join(dir, 's');
  const callLog = path.join(dir, 'calls.jsonl');
  const firecrackerBin = writeFakeFirecrackerBin(dir, callLog);
  let jail: FakeRig['jail'] = null;
  if (options.jailed) {
    // The jailed fake runs as the instance's uid: it must reach its wrapper script and the call log.
    chmodSync(dir, 0o755);
    writeFileSync(callLog, '', { mode: 0o666 });
    chmodSync(callLog, 0o666);
    const log = path.join(dir, 'jail.jsonl');
    jail = { chrootBase: path.join(dir, 'j'), jailerBin: writeFakeJailerBin(dir, log), log };
  }
  const bundles = new Map<string, ResolvedBundle>([
    ['bundle-a', fakeBundle(dir, 'bundle-a', MANIFEST_A)],
    ['bundle-b', fakeBundle(dir, 'bundle-b', `sha256:${'b'.repeat(64)}`)],
  ]);
  const drivers: FirecrackerDriver[] = [];
  const newDriver = () => {
    const driver = createFirecrackerDriver({
      stateDir,
      clock: systemClock,
      firecrackerBin,
      artifacts: {
        resolve: async (ref) => {
          const bundle = bundles.get(ref);
          if (!bundle) throw Object.assign(new Error(`no bundle ${ref}`), { code: 'bundle-unknown' });
          return bundle;
        },
      },
      images: { buildFilesImage, ensureDataImage },
      ...(jail ? { jailer: { jailerBin: jail.jailerBin, chrootBase: jail.chrootBase } } : {}),
      ids: sequentialIds(),
      stopGraceMs: options.stopGraceMs ?? 2000,
      adoptedPollMs: 50,
    });
    drivers.push(driver);
    return driver;
  };
  const driver = newDriver();
  return {
    dir,
    stateDir,
    firecrackerBin,
    callLog,
    bundles,
    jail,
    driver,
    newDriver,
    calls: () => {
      let text: string;
      try {
        text = readFileSync(callLog, 'utf8');
      } catch {
        return [];
      }
      return text
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as FakeCall);
    },
    cleanup: async () => {
      for (const d of drivers) d.close();
      await killFakes(stateDir);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Kills every Firecracker (fake) process group recorded under the driver's state dir. */
export async function killFakes(stateDir: string): Promise<void> {
  const vms = await readdir(path.join(stateDir, 'vms')).catch(() => [] as string[]);
  for (const vm of vms) {
    const text = await readFile(path.join(stateDir, 'vms', vm, 'firecracker.pid'), 'utf8').catch(() => null);
    if (!text) continue;
    try {
      process.kill(-(JSON.parse(text) as { pid: number }).pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** The contract spec with a config drive the guest agent can read (mvm.json), drain and post-restore enabled. */
export function agentSpec(instanceId: string, handlers = ['ping', 'readiness', 'drain', 'post-restore']): InstanceSpec {
  const base = contractSpec(instanceId);
  const mvm = {
    schema_version: 1,
    instance_id: instanceId,
    tenant_id: base.tenant_id,
    role: 'contract-role',
    config_version: 1,
    services: [],
    ports: [],
    vsock: { agent_port: 5000, handlers },
    connectors: [],
  };
  return {
    ...base,
    // The contract tenant's 10.200.0.0/24, as DrivePlanner.spec derives it from the tenant.
    network: { ...base.network, gateway: '10.200.0.1', prefix_len: 24 },
    vsock: { agent_port: 5000, handlers },
    drives: base.drives.map((d) => (d.name === 'config' ? { ...d, files: { 'mvm.json': JSON.stringify(mvm) } } : d)),
  };
}
