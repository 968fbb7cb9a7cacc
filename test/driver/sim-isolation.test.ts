import { mkdtempSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.ts';
import { createSimDriver, type SimDriver } from '../../src/driver/sim/sim-driver.ts';
import { DEFAULT_UID_BASE, resolveIsolation, tenantIdentity, tenantNetIdFromTap } from '../../src/driver/sim/tenant-identity.ts';
import type { InstanceSpec, OpContext } from '../../src/driver/vmm-driver.ts';
import { connectGuestAgent } from '../../src/vsock/host-client.ts';
import { contractSpec } from './driver-contract.ts';
import { killSimRunners } from './kill-sim-runners.ts';

/**
 * OS-level tenant isolation in the simulator. As root (this machine and CI), each tenant's VM
 * runner really runs under its own uid, and a process really running as tenant B's uid is put in
 * tenant A's VM directory and tries to read A's /data and /run/secrets; A's own uid can. Without
 * root the simulator falls back to paths only, and the test checks that it says so instead.
 */

const IS_ROOT = process.getuid!() === 0;
const stateDirs: string[] = [];
const drivers: SimDriver[] = [];

afterEach(async () => {
  for (const driver of drivers.splice(0)) driver.close();
  for (const dir of stateDirs.splice(0)) {
    await killSimRunners(dir);
    await rm(dir, { recursive: true, force: true });
  }
});

function newDriver(options: { isolation?: false } = {}): SimDriver {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'simi-'));
  stateDirs.push(stateDir);
  const driver = createSimDriver({ stateDir, clock: systemClock, stopGraceMs: 2000, ...options });
  drivers.push(driver);
  return driver;
}

const ctx = (): OpContext => ({ signal: new AbortController().signal, deadline: systemClock.now() + 30_000 });

/** A tenant's VM: its own net id (-> uid), subnet, a secret and a config drive with mvm.json. */
function spec(instanceId: string, tenantId: string, netId: number, secret: string): InstanceSpec {
  const base = contractSpec(instanceId);
  const ipv4 = `10.${netId % 250}.7.2`;
  const handlers = ['ping', 'readiness', 'secrets-reload'];
  const mvm = { schema_version: 1, instance_id: instanceId, tenant_id: tenantId, role: 'worker', config_version: 1, services: [], ports: [], vsock: { agent_port: 5000, handlers } };
  return {
    ...base,
    tenant_id: tenantId,
    network: { ...base.network, ipv4, tap: `mv${netId}-2` },
    vsock: { agent_port: 5000, handlers },
    drives: base.drives.map((d) => {
      if (d.name === 'config') return { ...d, files: { 'mvm.json': JSON.stringify(mvm) } };
      if (d.name === 'secrets') return { ...d, files: { token: secret } };
      return d;
    }),
  };
}

/** Real, effective, saved and filesystem ids of a process, from /proc/<pid>/status. */
function idsOf(pid: number): { uid: number[]; gid: number[]; groups: number[] } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => (/^(\w+):\s*(.*)$/m.exec(status.split('\n').find((l) => l.startsWith(`${name}:`)) ?? '')?.[2] ?? '').split(/\s+/).filter(Boolean).map(Number);
  return { uid: field('Uid'), gid: field('Gid'), groups: field('Groups') };
}

/** What a process running as uid:gid, started in `cwd`, gets when it tries each file operation. */
async function attempt(as: { uid: number; gid: number }, cwd: string, ops: { op: 'read' | 'write' | 'list'; path: string }[]): Promise<string[]> {
  const script = `
    const fs = require('node:fs');
    const out = [];
    for (const { op, path } of JSON.parse(process.argv[1])) {
      try {
        if (op === 'read') out.push('ok:' + fs.readFileSync(path, 'utf8'));
        else if (op === 'write') { fs.writeFileSync(path, 'written by ' + process.getuid()); out.push('ok'); }
        else out.push('ok:' + fs.readdirSync(path).join(','));
      } catch (error) { out.push(error.code); }
    }
    process.stdout.write(JSON.stringify({ uid: process.getuid(), out }));`;
  const result = await execa(process.execPath, ['-e', script, JSON.stringify(ops)], { cwd, uid: as.uid, gid: as.gid });
  const parsed = JSON.parse(result.stdout) as { uid: number; out: string[] };
  expect(parsed.uid).toBe(as.uid);
  return parsed.out;
}

async function secretsSeenByAgent(driver: SimDriver, s: InstanceSpec): Promise<string[]> {
  const client = await connectGuestAgent({ udsPath: path.join(driver.vmDir(s.instance_id), 'vsock.sock'), port: 5000, instanceId: s.instance_id, tenantId: s.tenant_id, connectDeadlineMs: 5000 });
  try {
    return (await client.request('secrets-reload', { secrets_epoch: 1 })).secrets;
  } finally {
    client.close();
  }
}

describe('tenant isolation in the simulator', () => {
  it(IS_ROOT ? 'as root: a process with tenant B uid cannot read tenant A /data or secrets; A own uid and VM can' : 'without root: falls back to paths only, and says so', async () => {
    if (!IS_ROOT) {
      // Honest fallback: nothing can change owner, so the driver reports no isolation and runs
      // every VM as this user. `mvm-actors dev` prints the same.
      const driver = newDriver();
      expect(driver.isolation).toBeNull();
      const a = spec('acme-iso', 'acme', 4011, 'acme-secret');
      await driver.prepareDrives(a, ctx());
      await driver.boot(a, ctx());
      expect(idsOf(driver.pidOf('acme-iso')!).uid).toEqual(Array(4).fill(process.getuid!()));
      return;
    }

    const driver = newDriver();
    expect(driver.isolation).toEqual({ uidBase: DEFAULT_UID_BASE });
    const a = spec('acme-iso', 'acme', 4011, 'acme-secret');
    const b = spec('globex-iso', 'globex', 4012, 'globex-secret');
    for (const s of [a, b]) {
      await driver.prepareDrives(s, ctx());
      await driver.boot(s, ctx());
    }

    // Each VM runner really runs as its tenant: real, effective, saved and fs ids, and no other group.
    const uidA = DEFAULT_UID_BASE + 4011;
    const uidB = DEFAULT_UID_BASE + 4012;
    expect(idsOf(driver.pidOf('acme-iso')!)).toEqual({ uid: Array(4).fill(uidA), gid: Array(4).fill(uidA), groups: [uidA] });
    expect(idsOf(driver.pidOf('globex-iso')!)).toEqual({ uid: Array(4).fill(uidB), gid: Array(4).fill(uidB), groups: [uidB] });
    const asA = { uid: uidA, gid: uidA };
    const asB = { uid: idsOf(driver.pidOf('globex-iso')!).uid[0]!, gid: idsOf(driver.pidOf('globex-iso')!).gid[0]! };

    // A's own VM reads its secrets drive (the agent, running as A, lists it over vsock) ...
    expect(await secretsSeenByAgent(driver, a)).toEqual(['token']);
    expect(await secretsSeenByAgent(driver, b)).toEqual(['token']);

    // ... and a process as A's uid writes and reads A's /data, reads A's secret, cannot change A's config.
    const dirA = driver.vmDir('acme-iso');
    expect(await attempt(asA, dirA, [
      { op: 'write', path: 'drives/data/diary.md' },
      { op: 'read', path: 'drives/data/diary.md' },
      { op: 'read', path: 'drives/data/marker.txt' },
      { op: 'read', path: 'drives/secrets/token' },
      { op: 'read', path: 'drives/config/mvm.json' },
      { op: 'write', path: 'drives/config/mvm.json' },
    ])).toEqual([
      'ok',
      `ok:written by ${uidA}`,
      'ok:first',
      'ok:acme-secret',
      expect.stringMatching(/^ok:\{/),
      'EACCES',
    ]);

    // A process really running as B's uid, started inside A's VM directory (closer than B's VM
    // ever gets), can read none of it: not A's /data, not A's secrets, not A's config, no listing.
    expect(await attempt(asB, dirA, [
      { op: 'read', path: 'drives/data/diary.md' },
      { op: 'read', path: 'drives/data/marker.txt' },
      { op: 'list', path: 'drives/data' },
      { op: 'write', path: 'drives/data/planted.md' },
      { op: 'read', path: 'drives/secrets/token' },
      { op: 'list', path: 'drives/secrets' },
      { op: 'read', path: 'drives/config/mvm.json' },
      { op: 'list', path: '.' },
      { op: 'list', path: 'drives' },
    ])).toEqual(Array(9).fill('EACCES'));
    // B's own drives are still B's.
    expect(await attempt(asB, driver.vmDir('globex-iso'), [{ op: 'read', path: 'drives/secrets/token' }])).toEqual(['ok:globex-secret']);
  });

  it('isolation: false keeps every VM under the driver user, even as root', async () => {
    const driver = newDriver({ isolation: false });
    expect(driver.isolation).toBeNull();
    const a = spec('acme-plain', 'acme', 4013, 's');
    await driver.prepareDrives(a, ctx());
    await driver.boot(a, ctx());
    expect(idsOf(driver.pidOf('acme-plain')!).uid).toEqual(Array(4).fill(process.getuid!()));
  });

  it('derives uid = base + tenant_net_id from the tap name, and refuses what it cannot derive or what belongs to a user', () => {
    expect(tenantNetIdFromTap('mv17-3')).toBe(17);
    expect(tenantNetIdFromTap('mv4094-2')).toBe(4094);
    for (const bad of ['tap-contract', 'mv0-2', 'mv4095-2', 'mv12', 'xmv1-2']) expect(tenantNetIdFromTap(bad), bad).toBeNull();
    expect(tenantIdentity({ uidBase: 90_000 }, 'acme', 'mv17-3')).toEqual({ uid: 90_017, gid: 90_017 });
    expect(() => tenantIdentity({ uidBase: 90_000 }, 'acme', 'tap-contract')).toThrow(/network\.tap "tap-contract" does not carry a tenant_net_id .*isolation: false/);
    // nobody (65534) is in /etc/passwd on every Debian system.
    expect(() => tenantIdentity({ uidBase: 65_534 - 4 }, 'acme', 'mv4-2')).toThrow(/uid 65534 .* belongs to user nobody .*choose another isolation\.uidBase/);
    expect(() => resolveIsolation(IS_ROOT ? { uidBase: 12 } : {})).toThrow(/SimDriverOptions\.isolation/);
    expect(resolveIsolation(false)).toBeNull();
  });
});
