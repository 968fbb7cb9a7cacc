import { mkdtempSync } from 'node:fs';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.ts';
import { createSimDriver, type SimDriver } from '../../src/driver/sim/sim-driver.ts';
import { readProcStat } from '../../src/driver/sim/proc.ts';
import { DriverError, type InstanceSpec, type OpContext, type VmExit } from '../../src/driver/vmm-driver.ts';
import type { ServiceSpec } from '../../src/schemas/role-manifest.ts';
import { contractSpec, describeDriverContract } from './driver-contract.ts';
import { killSimRunners } from './kill-sim-runners.ts';

/**
 * The simulation driver against the driver contract and its own promises. VMs are real detached
 * processes; every test kills the process groups it may have left, and removes its state dir.
 */

const drivers: { driver: SimDriver; stateDir: string }[] = [];

function newStateDir(): string {
  // Short paths: Unix socket paths are limited to 107 bytes.
  return mkdtempSync(path.join(os.tmpdir(), 'sim-'));
}

function makeSimDriver(stateDir = newStateDir()): SimDriver {
  const driver = createSimDriver({ stateDir, clock: systemClock, stopGraceMs: 2000, adoptedPollMs: 100 });
  drivers.push({ driver, stateDir });
  return driver;
}

async function cleanupAll(): Promise<void> {
  const all = drivers.splice(0);
  for (const { driver, stateDir } of all) {
    driver.close();
    await killSimRunners(stateDir);
  }
  for (const stateDir of new Set(all.map((d) => d.stateDir))) await rm(stateDir, { recursive: true, force: true });
}

async function readTree(dir: string): Promise<Record<string, string> | undefined> {
  if (!(await stat(dir).then(() => true, () => false))) return undefined;
  const out: Record<string, string> = {};
  const walk = async (sub: string) => {
    for (const entry of await readdir(path.join(dir, sub), { withFileTypes: true })) {
      const rel = sub ? `${sub}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(rel);
      else out[rel] = await readFile(path.join(dir, rel), 'utf8');
    }
  };
  await walk('');
  return out;
}

/** The contract's spec with a tap name as the host derives it (mv<tenant_net_id>-<n>), which per-tenant uids need. */
function simContractSpec(instanceId: string): InstanceSpec {
  const spec = contractSpec(instanceId);
  return { ...spec, network: { ...spec.network, tap: 'mv4001-2' } };
}

describeDriverContract('the simulation driver', () => {
  const driver = makeSimDriver();
  return {
    driver,
    clock: systemClock,
    spec: simContractSpec,
    readDrive: (id, drive) => readTree(path.join(driver.vmDir(id), 'drives', drive)),
    cleanup: cleanupAll,
  };
});

// --- the simulator's own promises ---

const ctx = (): OpContext => ({ signal: new AbortController().signal, deadline: systemClock.now() + 30_000 });

const gateway: ServiceSpec = {
  name: 'gateway',
  description: 'The OpenClaw gateway (simulated)',
  program: 'openclaw-gateway',
  args: [],
  ports: ['http'],
  readiness: { kind: 'agent', timeout_s: 30, interval_s: 1 },
  stop_timeout_s: 10,
};

/** Tenant network ids of the tenants these tests use (their uids, as root, are 90000 + id). */
const NET_IDS: Record<string, number> = { acme: 4001, globex: 4002 };

/** A spec whose config drive holds a real mvm.json: a gateway on TCP 18789, drain and post-restore enabled. */
function tenantSpec(instanceId: string, tenantId: string, ipv4: string): InstanceSpec {
  const base = simContractSpec(instanceId);
  const handlers = ['ping', 'readiness', 'drain', 'post-restore'];
  const mvm = {
    schema_version: 1,
    instance_id: instanceId,
    tenant_id: tenantId,
    role: 'gateway',
    config_version: 1,
    services: [{ name: 'gateway', program: 'openclaw-gateway', ports: ['http'] }],
    ports: [{ name: 'http', port: 18789, protocol: 'tcp', exposure: 'tenant' }],
    vsock: { agent_port: 5000, handlers },
    connectors: [],
  };
  return {
    ...base,
    tenant_id: tenantId,
    network: { ...base.network, ipv4, tap: `mv${NET_IDS[tenantId] ?? 4003}-${ipv4.split('.')[3]}` },
    vsock: { agent_port: 5000, handlers },
    drives: base.drives.map((d) => (d.name === 'config' ? { ...d, files: { 'mvm.json': JSON.stringify(mvm) } } : d)),
  };
}

async function up(driver: SimDriver, spec: InstanceSpec): Promise<void> {
  await driver.prepareDrives(spec, ctx());
  await driver.boot(spec, ctx());
}

function alive(pid: number): boolean {
  const s = readProcStat(pid);
  return s !== null && s.state !== 'Z';
}

function banner(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host, port });
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString()));
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
}

describe('the simulation driver', () => {
  afterEach(cleanupAll);

  it('runs a simulated gateway that answers readiness through the agent over vsock', async () => {
    const driver = makeSimDriver();
    const spec = tenantSpec('acme-gw-1', 'acme', '10.201.0.2');
    await up(driver, spec);
    await driver.checkReadiness(spec, gateway, ctx());
    expect(await banner('127.201.0.2', 18789)).toMatch(/^simulated gateway \(openclaw-gateway is not installed\)/);
    expect(await driver.simulatedServices('acme-gw-1')).toMatchObject({ loopback: '127.201.0.2', simulated: [{ service: 'gateway', port: 18789 }] });
    await driver.drain('acme-gw-1', ctx());
  });

  it('keeps what the guest wrote on the data drive across snapshot/restore and stop/boot', async () => {
    const driver = makeSimDriver();
    const spec = tenantSpec('acme-data', 'acme', '10.202.0.2');
    await up(driver, spec);
    const dataDir = path.join(driver.vmDir('acme-data'), 'drives', 'data');
    await writeFile(path.join(dataDir, 'memory.md'), '# remembered\n');
    await driver.drain('acme-data', ctx());
    const ref = await driver.snapshot(spec, ctx());
    expect(JSON.parse(await readFile(path.join(driver.vmDir('acme-data'), 'snapshot.json'), 'utf8'))).toEqual(ref);
    await driver.prepareDrives(spec, ctx());
    await driver.restore(spec, ref, ctx());
    await driver.checkReadiness(spec, gateway, ctx());
    expect(await readFile(path.join(dataDir, 'memory.md'), 'utf8')).toBe('# remembered\n');
    await driver.stop('acme-data', ctx());
    await driver.prepareDrives(spec, ctx());
    await driver.boot(spec, ctx());
    expect(await readFile(path.join(dataDir, 'memory.md'), 'utf8')).toBe('# remembered\n');
    expect(await readFile(path.join(dataDir, 'marker.txt'), 'utf8')).toBe('first');
  });

  it('lays drives out with the design modes: secrets 0700/0600, config read-only; as root, owned by the tenant uid', async () => {
    const driver = makeSimDriver();
    const spec = tenantSpec('acme-modes', 'acme', '10.203.0.2');
    await up(driver, spec);
    const drives = path.join(driver.vmDir('acme-modes'), 'drives');
    const owner = async (file: string) => {
      const s = await stat(path.join(drives, file));
      return { uid: s.uid, gid: s.gid, mode: s.mode & 0o777 };
    };
    if (process.getuid!() === 0) {
      // Per-tenant uids are on by default as root: acme's tenant_net_id 4001 -> uid and gid 94001.
      expect(driver.isolation).toEqual({ uidBase: 90_000 });
      const tenant = 94_001;
      expect(await owner('data')).toEqual({ uid: tenant, gid: tenant, mode: 0o700 });
      expect(await owner('data/marker.txt')).toMatchObject({ uid: tenant, gid: tenant });
      expect(await owner('secrets')).toEqual({ uid: tenant, gid: tenant, mode: 0o700 });
      expect(await owner('secrets/token')).toEqual({ uid: tenant, gid: tenant, mode: 0o600 });
      // Config: root's, readable by the tenant's group only, writable by nobody but root.
      expect(await owner('config')).toEqual({ uid: 0, gid: tenant, mode: 0o750 });
      expect(await owner('config/mvm.json')).toEqual({ uid: 0, gid: tenant, mode: 0o440 });
      expect((await stat(driver.vmDir('acme-modes'))).mode & 0o777).toBe(0o711);
    } else {
      // Without root nothing can change owner: everything is this user's, separated by paths.
      expect(driver.isolation).toBeNull();
      expect(await owner('secrets')).toMatchObject({ uid: process.getuid!(), mode: 0o700 });
      expect(await owner('secrets/token')).toMatchObject({ mode: 0o600 });
      expect(await owner('config/mvm.json')).toMatchObject({ mode: 0o444 });
    }
  });

  it('warm: pause keeps the same process stopped, resume lets it continue', async () => {
    const driver = makeSimDriver();
    const spec = tenantSpec('acme-warm', 'acme', '10.204.0.2');
    await up(driver, spec);
    const pid = driver.pidOf('acme-warm')!;
    await driver.pause('acme-warm', ctx());
    expect(readProcStat(pid)?.state).toBe('T');
    expect(driver.pidOf('acme-warm')).toBe(pid);
    await driver.resume('acme-warm', ctx());
    expect(driver.pidOf('acme-warm')).toBe(pid);
    expect(readProcStat(pid)?.state).not.toBe('T');
    await driver.checkReadiness(spec, gateway, ctx());
  });

  it("gives each tenant's gateway its own loopback address on the same port", async () => {
    const driver = makeSimDriver();
    const a = tenantSpec('acme-gw', 'acme', '10.210.0.2');
    const b = tenantSpec('globex-gw', 'globex', '10.211.0.2');
    await up(driver, a);
    await up(driver, b);
    await driver.checkReadiness(a, gateway, ctx());
    await driver.checkReadiness(b, gateway, ctx());
    expect(await banner('127.210.0.2', 18789)).toContain('on acme-gw');
    expect(await banner('127.211.0.2', 18789)).toContain('on globex-gw');
  });

  it("never turns an instance id into a path outside its own VM directory", async () => {
    const driver = makeSimDriver();
    const victim = tenantSpec('acme-victim', 'acme', '10.212.0.2');
    await up(driver, victim);
    for (const bad of ['../acme-victim', 'globex/../acme-victim', 'acme-victim/drives', '..', '.', '', 'ACME', '/etc']) {
      const error = await driver.prepareDrives({ ...tenantSpec('x', 'globex', '10.213.0.2'), instance_id: bad }, ctx()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DriverError);
      expect(error).toMatchObject({ code: 'bad-instance-id' });
      await expect(driver.destroy(bad, ctx())).rejects.toMatchObject({ code: 'bad-instance-id' });
    }
    // A drive name is a path part too.
    const evil = tenantSpec('globex-evil', 'globex', '10.213.0.2');
    evil.drives = [...evil.drives, { ...evil.drives[0]!, name: '../../acme-victim/drives/data' }];
    await expect(driver.prepareDrives(evil, ctx())).rejects.toMatchObject({ code: 'bad-drive' });
    // The victim is untouched and its secrets are only readable by their owner.
    expect(await readFile(path.join(driver.vmDir('acme-victim'), 'drives', 'data', 'marker.txt'), 'utf8')).toBe('first');
    expect((await stat(path.join(driver.vmDir('acme-victim'), 'drives', 'secrets'))).mode & 0o077).toBe(0);
    // Another tenant's runner is pointed at its own drives only.
    await up(driver, tenantSpec('globex-gw2', 'globex', '10.213.0.2'));
    const runner = JSON.parse(await readFile(path.join(driver.vmDir('globex-gw2'), 'runner.json'), 'utf8')) as Record<string, string>;
    for (const dir of [runner.config_dir, runner.secrets_dir]) expect(dir!.startsWith(`${driver.vmDir('globex-gw2')}/`)).toBe(true);
  });

  it('a second driver on the same state dir adopts running VMs and does not start them again', async () => {
    const stateDir = newStateDir();
    const first = makeSimDriver(stateDir);
    const spec = tenantSpec('acme-adopt', 'acme', '10.220.0.2');
    await up(first, spec);
    const pid = first.pidOf('acme-adopt')!;
    first.close();

    const second = makeSimDriver(stateDir);
    expect(await second.describe()).toEqual([{ instance_id: 'acme-adopt', state: 'running', snapshot: null }]);
    await second.prepareDrives(spec, ctx());
    await second.boot(spec, ctx());
    expect(second.pidOf('acme-adopt')).toBe(pid);
    await second.checkReadiness(spec, gateway, ctx());
    const log = await readFile(path.join(second.vmDir('acme-adopt'), 'vm.out.log'), 'utf8');
    expect(log.match(/ready: agent/g)).toHaveLength(1);

    // The adopted VM is watched too: its death is reported.
    const exits: VmExit[] = [];
    second.onExit((exit) => exits.push(exit));
    process.kill(-pid, 'SIGKILL');
    await expect.poll(() => exits.map((e) => e.instance_id), { timeout: 5000 }).toEqual(['acme-adopt']);
  });

  it('a boot that runs out of time fails with a retryable deadline, and the next boot adopts the VM it started', async () => {
    const driver = makeSimDriver();
    const spec = tenantSpec('acme-slow', 'acme', '10.223.0.2');
    await driver.prepareDrives(spec, ctx());
    const error = await driver.boot(spec, { signal: new AbortController().signal, deadline: systemClock.now() + 30 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'deadline', retryable: true });
    const pid = driver.pidOf('acme-slow');
    expect(pid).not.toBeNull();
    await driver.boot(spec, ctx());
    expect(driver.pidOf('acme-slow')).toBe(pid);
    await driver.checkReadiness(spec, gateway, ctx());
  });

  it('an aborted signal stops a boot that is waiting for the VM', async () => {
    const driver = makeSimDriver();
    const spec = tenantSpec('acme-abort', 'acme', '10.224.0.2');
    await driver.prepareDrives(spec, ctx());
    const controller = new AbortController();
    const booting = driver.boot(spec, { signal: controller.signal, deadline: systemClock.now() + 30_000 });
    controller.abort();
    await expect(booting).rejects.toMatchObject({ code: 'aborted' });
  });

  it('reports a VM that dies unexpectedly, and not one it stopped itself', async () => {
    const driver = makeSimDriver();
    const exits: VmExit[] = [];
    driver.onExit((exit) => exits.push(exit));
    const spec = tenantSpec('acme-crash', 'acme', '10.221.0.2');
    await up(driver, spec);
    await driver.stop('acme-crash', ctx());
    await driver.prepareDrives(spec, ctx());
    await driver.boot(spec, ctx());
    const pid = driver.pidOf('acme-crash')!;
    process.kill(-pid, 'SIGKILL');
    await expect.poll(() => exits, { timeout: 5000 }).toEqual([{ instance_id: 'acme-crash', reason: 'SIGKILL' }]);
    expect((await driver.describe()).find((vm) => vm.instance_id === 'acme-crash')?.state).toBe('stopped');
  });

  it('destroy leaves no process behind', async () => {
    const driver = makeSimDriver();
    const a = tenantSpec('acme-gone', 'acme', '10.222.0.2');
    const b = tenantSpec('acme-gone-paused', 'acme', '10.222.0.3');
    await up(driver, a);
    await up(driver, b);
    await driver.pause('acme-gone-paused', ctx());
    const pids = [driver.pidOf('acme-gone')!, driver.pidOf('acme-gone-paused')!];
    await driver.destroy('acme-gone', ctx());
    await driver.destroy('acme-gone-paused', ctx());
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(await driver.describe()).toEqual([]);
  });
});
