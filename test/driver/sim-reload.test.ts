import { mkdtempSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.ts';
import { createSimDriver, type SimDriver } from '../../src/driver/sim/sim-driver.ts';
import type { OpContext } from '../../src/driver/vmm-driver.ts';
import { connectGuestAgent } from '../../src/vsock/host-client.ts';
import { contractSpec, reloadableSpec } from './driver-contract.ts';
import { killSimRunners } from './kill-sim-runners.ts';

/**
 * A live reload through the simulation driver reaches the real guest agent in the VM process: it
 * re-reads the rewritten config drive and reports the new config_version and secrets_epoch in its
 * hello, and the VM process is the same one (no reboot).
 */

let stateDir: string | undefined;
let driver: SimDriver | undefined;
afterEach(async () => {
  driver?.close();
  if (stateDir) {
    await killSimRunners(stateDir);
    await rm(stateDir, { recursive: true, force: true });
  }
  driver = undefined;
  stateDir = undefined;
});

const ctx = (): OpContext => ({ signal: new AbortController().signal, deadline: systemClock.now() + 30_000 });

describe('the simulation driver reloads a running VM', () => {
  it('the guest agent reports the new config_version and secrets_epoch, the secrets file is rotated, and the VM process stays', async () => {
    stateDir = mkdtempSync(path.join(os.tmpdir(), 'sim-'));
    driver = createSimDriver({ stateDir, clock: systemClock, stopGraceMs: 2000, isolation: false });
    const base = { ...contractSpec('reload-0'), network: { ...contractSpec('reload-0').network, tap: 'mv4001-2' } };
    const first = reloadableSpec(base, { config_version: 1, secrets_epoch: 1 }, 'first-secret');
    await driver.prepareDrives(first, ctx());
    await driver.boot(first, ctx());
    const pid = driver.pidOf('reload-0');
    const hello = async () => {
      const client = await connectGuestAgent({ udsPath: path.join(driver!.vmDir('reload-0'), 'vsock.sock'), port: base.vsock.agent_port, instanceId: 'reload-0', clock: systemClock });
      try {
        return client.hello;
      } finally {
        client.close();
      }
    };
    expect(await hello()).toMatchObject({ config_version: 1, secrets_epoch: 1, handlers: ['ping', 'readiness', 'config-reload', 'secrets-reload'] });

    await driver.reload(reloadableSpec(base, { config_version: 2, secrets_epoch: 3 }, 'rotated-secret'), { config: true, secrets: true }, ctx());
    expect(await hello()).toMatchObject({ config_version: 2, secrets_epoch: 3 });
    expect(await readFile(path.join(driver.vmDir('reload-0'), 'drives', 'secrets', 'token'), 'utf8')).toBe('rotated-secret');
    expect(driver.pidOf('reload-0')).toBe(pid);

    // A reload the guest cannot apply is reported, not assumed: the drive says version 4, the request 5.
    const mismatched = reloadableSpec(base, { config_version: 4, secrets_epoch: 3 }, 'rotated-secret');
    await expect(driver.reload({ ...mismatched, revision: { ...mismatched.revision, config_version: 5 } }, { config: true, secrets: false }, ctx())).rejects.toMatchObject({ op: 'reload', code: 'not-applied', retryable: true });
    expect(driver.pidOf('reload-0')).toBe(pid);
  });
});
