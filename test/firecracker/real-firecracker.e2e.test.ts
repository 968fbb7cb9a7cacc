import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../src/bundle/artifact-store.ts';
import { systemClock } from '../../src/common/clock.ts';
import { createFirecrackerDriver } from '../../src/driver/firecracker/firecracker-driver.ts';
import type { InstanceSpec, OpContext } from '../../src/driver/vmm-driver.ts';
import { buildFilesImage, ensureDataImage } from '../../src/firecracker/drive-images.ts';
import type { RoleManifest } from '../../src/schemas/role-manifest.ts';
import { connectGuestAgent } from '../../src/vsock/host-client.ts';
import { killFakes } from './fake-harness.ts';

/**
 * Opt-in end to end: boots a REAL microVM with the Firecracker driver, checks that the guest agent
 * answers ping over vsock, sleeps it (snapshot) and wakes it (snapshot load), and pings again.
 * Firecracker cannot be downloaded on the build machines, so this runs only when both are given:
 *
 *   MVM_FIRECRACKER_BIN=/path/to/firecracker   a Firecracker v1.16 binary
 *   MVM_BUNDLE_DIR=/path/to/bundle             a role bundle (`nix build .#bundle-gateway`'s result)
 *
 * It needs /dev/kvm and root (it creates a tap device with `ip tuntap`). It is not part of
 * `npm test`: run it with `npm run test:firecracker` (test/vitest.e2e.config.ts).
 */

const FIRECRACKER = process.env.MVM_FIRECRACKER_BIN;
const BUNDLE = process.env.MVM_BUNDLE_DIR;
if (!FIRECRACKER || !BUNDLE) {
  // Run through `npm run test:firecracker` only (the default suite excludes *.e2e.test.ts): fail
  // loudly rather than skip when what it needs is not given.
  throw new Error(
    'The real-Firecracker test needs MVM_FIRECRACKER_BIN (a firecracker v1.16 binary) and MVM_BUNDLE_DIR (a role bundle, e.g. the result of `nix build .#bundle-gateway`); set both and run npm run test:firecracker',
  );
}
const TAP = 'mvm-e2e-0';

describe('a real Firecracker microVM (MVM_FIRECRACKER_BIN and MVM_BUNDLE_DIR are set)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fce2e-'));
  const stateDir = path.join(dir, 's');
  afterAll(async () => {
    await killFakes(stateDir); // kills whatever firecracker process groups the pid files name
    execFileSync('ip', ['link', 'del', TAP], { stdio: 'ignore' });
    await rm(dir, { recursive: true, force: true });
  });
  const ctx = (ms = 120_000): OpContext => ({ signal: new AbortController().signal, deadline: systemClock.now() + ms });

  it('boots, answers ping over vsock, sleeps and wakes', async () => {
    const store = new ArtifactStore(path.join(dir, 'artifacts'));
    const bundle = await store.import(BUNDLE!, { name: 'e2e-bundle' });
    const role = bundle.manifest as RoleManifest;
    execFileSync('ip', ['tuntap', 'add', TAP, 'mode', 'tap']);
    execFileSync('ip', ['link', 'set', TAP, 'up']);
    const instanceId = 'e2e-1';
    const mvm = {
      schema_version: 1,
      instance_id: instanceId,
      tenant_id: 'e2e',
      role: role.name,
      config_version: 1,
      services: [],
      ports: [],
      vsock: role.vsock,
      connectors: [],
    };
    const spec: InstanceSpec = {
      instance_id: instanceId,
      tenant_id: 'e2e',
      pool_id: 'e2e',
      role: role.name,
      profile: 'base',
      revision: { artifacts: 'e2e-bundle', config_version: 1, secrets_epoch: 1 },
      resources: { vcpus: 1, mem_mib: 512, data_disk_mib: 64 },
      network: { ipv4: '10.250.0.2', mac: '06:00:0a:fa:00:02', tap: TAP, vsock_cid: 3, gateway: '10.250.0.1', prefix_len: 24 },
      drives: role.drives.map((d) => {
        const files: Record<string, string> = d.persistence === 'versioned' ? { 'mvm.json': JSON.stringify(mvm) } : {};
        return { ...d, size_mib: 64, files };
      }),
      manifest_hash: bundle.manifestHash,
      vsock: { agent_port: role.vsock.agent_port, handlers: role.vsock.handlers },
    };
    const driver = createFirecrackerDriver({ stateDir, clock: systemClock, firecrackerBin: FIRECRACKER!, artifacts: store, images: { buildFilesImage, ensureDataImage } });
    const ping = async () => {
      const agent = await connectGuestAgent({ udsPath: path.join(driver.vmDir(instanceId), 'v.sock'), port: role.vsock.agent_port, instanceId, clock: systemClock, retry: true, connectDeadlineMs: 90_000, helloDeadlineMs: 10_000 });
      try {
        return await agent.request('ping', {});
      } finally {
        agent.close();
      }
    };

    await driver.prepareDrives(spec, ctx());
    await driver.boot(spec, ctx());
    expect(await ping()).toMatchObject({ pong: true, instance_id: instanceId });
    const ref = await driver.snapshot(spec, ctx());
    expect((await driver.describe())[0]).toMatchObject({ state: 'stopped', snapshot: ref });
    await driver.prepareDrives(spec, ctx());
    await driver.restore(spec, ref, ctx());
    expect(await ping()).toMatchObject({ pong: true, instance_id: instanceId });
    await driver.destroy(instanceId, ctx());
    expect(await driver.describe()).toEqual([]);
    driver.close();
  }, 300_000);
});
