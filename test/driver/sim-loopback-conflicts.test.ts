import { mkdtempSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { exampleFleet } from '../../src/cli/commands/dev.ts';
import { systemClock } from '../../src/common/clock.ts';
import { findLoopbackConflicts } from '../../src/driver/sim/loopback-conflicts.ts';
import { createSimDriver, type SimDriver } from '../../src/driver/sim/sim-driver.ts';
import type { OpContext } from '../../src/driver/vmm-driver.ts';
import { CLI, REPO_ROOT } from '../helpers/fixtures.ts';
import { contractSpec } from './driver-contract.ts';
import { killSimRunners } from './kill-sim-runners.ts';

/**
 * Two simulated fleets on one machine with the same tenant subnets would share loopback
 * addresses (10.a.b.c -> 127.a.b.c). A running VM of one state dir is found from another, and
 * `mvm-actors dev` refuses up front, naming the subnet field, the other fleet and the fix.
 */

const dirs: string[] = [];
let driver: SimDriver | undefined;

afterEach(async () => {
  driver?.close();
  driver = undefined;
  for (const dir of dirs.splice(0)) {
    await killSimRunners(path.join(dir, 'sim'));
    await rm(dir, { recursive: true, force: true });
  }
});

const newDir = () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'siml-'));
  dirs.push(dir);
  return dir;
};
const ctx = (): OpContext => ({ signal: new AbortController().signal, deadline: systemClock.now() + 30_000 });

describe('loopback collisions between simulated fleets', { timeout: 60_000 }, () => {
  it('finds the other fleet VM on an overlapping subnet, never its own, and dev refuses with the fix', async () => {
    const first = newDir();
    driver = createSimDriver({ stateDir: path.join(first, 'sim'), clock: systemClock });
    const base = contractSpec('acme-gw-0');
    // A gateway on TCP 18789 at 10.205.0.2, so its services really hold 127.205.0.2.
    const mvm = { schema_version: 1, instance_id: 'acme-gw-0', tenant_id: 'acme', role: 'gateway', config_version: 1, services: [{ name: 'gw', program: 'openclaw', ports: ['ws'] }], ports: [{ name: 'ws', port: 18789, protocol: 'tcp', exposure: 'tenant' }], vsock: { agent_port: 5000, handlers: ['ping'] } };
    const spec = {
      ...base,
      tenant_id: 'acme',
      network: { ...base.network, ipv4: '10.205.0.2', tap: 'mv4021-2' },
      drives: base.drives.map((d) => (d.name === 'config' ? { ...d, files: { 'mvm.json': JSON.stringify(mvm) } } : d)),
    };
    await driver.prepareDrives(spec, ctx());
    await driver.boot(spec, ctx());
    await new Promise<void>((resolve, reject) => net.createConnection({ host: '127.205.0.2', port: 18789 }).once('connect', function (this: net.Socket) {
      this.destroy();
      resolve();
    }).once('error', reject));

    const second = newDir();
    const vmDir = path.join(first, 'sim', 'vms', 'acme-gw-0');
    const tenants = (ipv4_subnet: string) => [{ tenant_id: 'tenant-1', ipv4_subnet }];
    expect(findLoopbackConflicts(path.join(second, 'sim'), tenants('10.205.0.0/24'))).toEqual([{ tenant_id: 'tenant-1', ipv4_subnet: '10.205.0.0/24', loopback: '127.205.0.2', vm_dir: vmDir }]);
    // Only the low 24 bits reach the loopback address: another /8 collides too, a wider subnet contains it.
    expect(findLoopbackConflicts(path.join(second, 'sim'), tenants('192.205.0.0/24'))).toHaveLength(1);
    expect(findLoopbackConflicts(path.join(second, 'sim'), tenants('10.205.0.0/16'))).toHaveLength(1);
    expect(findLoopbackConflicts(path.join(second, 'sim'), tenants('10.205.1.0/24'))).toEqual([]);
    expect(findLoopbackConflicts(path.join(second, 'sim'), tenants('10.205.0.4/30'))).toEqual([]);
    // A fleet's own VMs (a second run on the same state dir) are not a conflict.
    expect(findLoopbackConflicts(path.join(first, 'sim'), tenants('10.205.0.0/24'))).toEqual([]);

    // `mvm-actors dev` on another state dir with that subnet refuses before it starts anything.
    const desired = path.join(second, 'desired.json');
    await writeFile(desired, JSON.stringify(exampleFleet(1, { firstNetId: 4021, subnetBase: [10, 205] })));
    const dev = await execa('node', [CLI, 'dev', '--state-dir', second, '--desired', desired, '--listen', '127.0.0.1:0'], { cwd: REPO_ROOT, reject: false, timeout: 30_000 });
    expect(dev.exitCode, dev.stdout).not.toBe(0);
    expect(dev.stderr).toContain(`tenant-1: tenants[].ipv4_subnet 10.205.0.0/24 maps to loopback addresses another simulated fleet uses (127.205.0.2, VM acme-gw-0 of state dir ${first})`);
    expect(dev.stderr).toContain(`fix: stop the other fleet (mvm-actors dev --down --state-dir ${first}), or run this one with --desired FILE giving other tenants[].ipv4_subnet values`);
    expect(dev.stdout).not.toContain('fleet up');
  });
});
