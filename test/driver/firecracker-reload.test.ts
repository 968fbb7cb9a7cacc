import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.ts';
import type { OpContext } from '../../src/driver/vmm-driver.ts';
import { connectGuestAgent } from '../../src/vsock/host-client.ts';
import { type FakeRig, agentSpec, makeFakeRig } from '../firecracker/fake-harness.ts';
import { reloadableSpec } from './driver-contract.ts';

/**
 * A live reload through the Firecracker driver, against the fake Firecracker as a real process:
 * the config image is rebuilt and the secrets image built, each swapped in with
 * PATCH /drives/{drive_id} after boot (the fake accepts it only then), the secrets image file
 * is gone again, and the guest agent behind the vsock device
 * reports the new config_version and secrets_epoch.
 */

const rigs: FakeRig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.cleanup();
});
const ctx = (): OpContext => ({ signal: new AbortController().signal, deadline: systemClock.now() + 30_000 });

describe('the Firecracker driver reloads a running VM', () => {
  it('swaps the config and secrets drives with PATCH /drives and the guest reports the new version and epoch', async () => {
    const r = makeFakeRig();
    rigs.push(r);
    const id = 'fc-reload';
    const first = reloadableSpec(agentSpec(id), { config_version: 1, secrets_epoch: 1 }, 'first-secret');
    await r.driver.prepareDrives(first, ctx());
    await r.driver.boot(first, ctx());
    const pid = r.driver.pidOf(id);
    const from = r.calls().length;
    await r.driver.reload(reloadableSpec(agentSpec(id), { config_version: 2, secrets_epoch: 3 }, 'rotated-secret'), { config: true, secrets: true }, ctx());

    const patches = r.calls().slice(from).filter((c) => c.method === 'PATCH');
    expect(patches.map((c) => [c.path, c.status, (c.body as { path_on_host: string }).path_on_host])).toEqual([
      ['/drives/secrets', 204, path.join(r.driver.vmDir(id), 'drives', 'secrets.ext4')],
      ['/drives/config', 204, path.join(r.driver.vmDir(id), 'drives', 'config.ext4')],
    ]);
    // The secrets image never outlives the call that wrote it; Firecracker holds it open.
    expect(existsSync(path.join(r.driver.vmDir(id), 'drives', 'secrets.ext4'))).toBe(false);
    expect(r.driver.pidOf(id)).toBe(pid);
    const client = await connectGuestAgent({ udsPath: path.join(r.driver.vmDir(id), 'v.sock'), port: 5000, instanceId: id, clock: systemClock });
    try {
      expect(client.hello).toMatchObject({ config_version: 2, secrets_epoch: 3 });
    } finally {
      client.close();
    }
  });
});
