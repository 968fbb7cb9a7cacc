import { mkdtempSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Catalog, LoadedRole } from '../../src/catalog/catalog.ts';
import { loadCatalogStrict } from '../../src/catalog/load-catalog.ts';
import { manifestHash } from '../../src/catalog/manifest-hash.ts';
import { systemClock } from '../../src/common/clock.ts';
import { readProcStat } from '../../src/driver/sim/proc.ts';
import { createSimDriver, type SimDriver } from '../../src/driver/sim/sim-driver.ts';
import { createHost, type Host } from '../../src/host/host.ts';
import { connectGuestAgent } from '../../src/vsock/host-client.ts';
import { killSimRunners } from './kill-sim-runners.ts';
import { exampleFleet } from '../../src/cli/commands/dev.ts';

/**
 * The host with the simulation driver: every microVM a real detached process, reached over real
 * Unix sockets. Each test gets its own data and state dirs; afterEach closes the hosts and drivers,
 * kills every runner process group left under the state dirs, and removes the dirs.
 */

const TENANT = 'tenant-1';
const SUBNET_PREFIX = '10.231.0.';
const AGENT_PORT = 1024;
const WAIT_MS = 20_000;

interface Rig {
  root: string;
  dataDir: string;
  stateDir: string;
  hosts: Host[];
  drivers: SimDriver[];
}

const rigs: Rig[] = [];

function newRig(): Rig {
  // Short paths: Unix socket paths are limited to 107 bytes.
  const root = mkdtempSync(path.join(os.tmpdir(), 'simh-'));
  const rig = { root, dataDir: path.join(root, 'data'), stateDir: path.join(root, 'sim'), hosts: [], drivers: [] };
  rigs.push(rig);
  return rig;
}

function newDriver(rig: Rig): SimDriver {
  const driver = createSimDriver({ stateDir: rig.stateDir, clock: systemClock, stopGraceMs: 2000, adoptedPollMs: 100 });
  rig.drivers.push(driver);
  return driver;
}

async function newHost(rig: Rig, driver: SimDriver, roles: Catalog): Promise<Host> {
  const host = await createHost({ dataDir: rig.dataDir, driver, clock: systemClock, roles });
  rig.hosts.push(host);
  return host;
}

afterEach(async () => {
  for (const rig of rigs.splice(0)) {
    for (const host of rig.hosts) await host.close().catch(() => undefined);
    for (const driver of rig.drivers) driver.close();
    await killSimRunners(rig.stateDir);
    await rm(rig.root, { recursive: true, force: true });
  }
});

/** The built-in catalog with the gateway's and the worker's minimum runtime at 0 (no deferral). */
let catalogCache: Catalog | null = null;
async function testCatalog(): Promise<Catalog> {
  if (catalogCache) return catalogCache;
  const builtin = await loadCatalogStrict();
  const roles = new Map<string, LoadedRole>(builtin.roles);
  for (const name of ['gateway', 'worker']) {
    const role = builtin.roles.get(name)!;
    const manifest = structuredClone(role.manifest);
    manifest.sleep = { ...manifest.sleep, min_runtime_s: 0 };
    roles.set(name, { ...role, manifest, hash: manifestHash(manifest) });
  }
  catalogCache = { dir: builtin.dir, roles, profiles: builtin.profiles };
  return catalogCache;
}

/** exampleFleet(1) of `mvm-actors dev` on its own subnet: a gateway, two workers, a builder. */
function fleet() {
  return exampleFleet(1, { firstNetId: 231, subnetBase: [10, 231], nodeId: 'sim-host-test' });
}

async function until<T>(what: string, probe: () => T | undefined | null | false, timeoutMs = WAIT_MS): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function statusIs(host: Host, id: string, status: string): Promise<void> {
  await until(`${id} to be ${status} (is ${host.instance(id)?.status}: ${host.instance(id)?.status_reason})`, () => host.instance(id)?.status === status);
}

/** Starts a host with the fleet and waits until all four instances run. */
async function upFleet() {
  const rig = newRig();
  const driver = newDriver(rig);
  const host = await newHost(rig, driver, await testCatalog());
  const result = await host.apply(fleet());
  expect(result.refusal).toBeNull();
  expect(result.applied).toBe(true);
  await until('4 instances', () => host.instances().length === 4);
  await until(`all running (${JSON.stringify(host.instances().map((i) => [i.instance_id, i.status, i.status_reason]))})`, () => host.instances().every((i) => i.status === 'running') && host.isSettled());
  const gateway = host.instances({ role: 'gateway' })[0]!.instance_id;
  const workers = host.instances({ role: 'worker' }).map((i) => i.instance_id);
  expect(workers).toHaveLength(2);
  return { rig, driver, host, gateway, workers };
}

function alive(pid: number): boolean {
  const s = readProcStat(pid);
  return s !== null && s.state !== 'Z';
}

describe('the host with the simulation driver', () => {
  it('boots the gateway before the workers', async () => {
    const { host, gateway, workers } = await upFleet();
    await host.flush();
    const journal = host.journal({ limit: 10_000 });
    const gatewayRunning = journal.find((e) => e.kind === 'transition' && e.instance_id === gateway && e.to === 'running');
    expect(gatewayRunning).toBeDefined();
    for (const worker of workers) {
      const firstBooting = journal.find((e) => e.kind === 'transition' && e.instance_id === worker && e.to === 'booting');
      expect(firstBooting, `${worker} booting`).toBeDefined();
      expect(firstBooting!.seq).toBeGreaterThan(gatewayRunning!.seq);
      expect(firstBooting!.at).toBeGreaterThanOrEqual(gatewayRunning!.at);
    }
  });

  it("a worker's guest agent reports its gateway's tenant address, from its config drive", async () => {
    const { host, driver, gateway, workers } = await upFleet();
    const worker = workers[0]!;
    const view = host.instance(worker)!;
    const gatewayIp = host.instance(gateway)!.network.ipv4;
    expect(gatewayIp.startsWith(SUBNET_PREFIX)).toBe(true);
    expect(view.network.ipv4.startsWith(SUBNET_PREFIX)).toBe(true);
    expect(view.network.ipv4).not.toBe(gatewayIp);

    const config = JSON.parse(await readFile(path.join(driver.vmDir(worker), 'drives', 'config', 'mvm.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ tenant_id: TENANT, instance_id: worker, role: 'worker', network: { ipv4: view.network.ipv4 } });
    const gatewayEndpoint = { role: 'gateway', instance_id: gateway, ipv4: gatewayIp, ports: { 'gateway-ws': 18789 } };
    expect(config.depends_on).toEqual([gatewayEndpoint]);

    const client = await connectGuestAgent({ udsPath: path.join(driver.vmDir(worker), 'vsock.sock'), port: AGENT_PORT, instanceId: worker, tenantId: TENANT, retry: true, connectDeadlineMs: 5000 });
    try {
      expect(client.hello).toMatchObject({ type: 'hello', instance_id: worker, tenant_id: TENANT, role: 'worker', config_version: 1, config_error: null });
      expect(client.hello.handlers).toContain('ping');
      await client.request('ping', {});
      const status = await client.request('service-status', {});
      expect(status.depends_on).toEqual([gatewayEndpoint]);
    } finally {
      client.close();
    }
  });

  it("keeps a file on a worker's /data drive across sleep and wake, with a new process", async () => {
    const { host, driver, workers } = await upFleet();
    const worker = workers[0]!;
    const note = path.join(driver.vmDir(worker), 'drives', 'data', 'note.txt');
    await writeFile(note, 'remember me\n');
    const pid = driver.pidOf(worker)!;
    expect(pid).toBeGreaterThan(0);

    expect(host.sleep(worker)).toMatchObject({ accepted: true });
    await statusIs(host, worker, 'sleeping');
    expect(driver.pidOf(worker)).toBeNull();
    await until(`old runner ${pid} gone`, () => !alive(pid), 5000);

    expect(host.wake(worker)).toMatchObject({ accepted: true });
    await statusIs(host, worker, 'running');
    expect(await readFile(note, 'utf8')).toBe('remember me\n');
    const newPid = driver.pidOf(worker);
    expect(newPid).not.toBeNull();
    expect(newPid).not.toBe(pid);
    expect(alive(newPid!)).toBe(true);
  });

  it('warm then wake keeps the same, stopped-then-continued process', async () => {
    const { host, driver, workers } = await upFleet();
    const worker = workers[1]!;
    const pid = driver.pidOf(worker)!;

    expect(host.warm(worker)).toMatchObject({ accepted: true });
    await statusIs(host, worker, 'warm');
    expect(driver.pidOf(worker)).toBe(pid);
    expect(readProcStat(pid)?.state).toBe('T');

    expect(host.wake(worker)).toMatchObject({ accepted: true });
    await statusIs(host, worker, 'running');
    expect(driver.pidOf(worker)).toBe(pid);
    expect(readProcStat(pid)?.state).not.toBe('T');
  });

  it("refuses to sleep the tenant's only gateway (its floor is 1)", async () => {
    const { host, driver, gateway } = await upFleet();
    const pid = driver.pidOf(gateway);
    expect(host.sleep(gateway)).toEqual({ accepted: false, reason: 'sleep-floor:gateway:1' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(host.instance(gateway)!.status).toBe('running');
    expect(driver.pidOf(gateway)).toBe(pid);
    await host.flush();
    expect(host.journal({ instanceId: gateway, limit: 1000 }).some((e) => e.kind === 'refusal' && (e.detail as { reason?: string }).reason === 'sleep-floor:gateway:1')).toBe(true);
  });

  it('a control-plane restart finds the same VMs running and starts none of them again', async () => {
    const { rig, driver, host } = await upFleet();
    const before = new Map(host.instances().map((i) => [i.instance_id, driver.pidOf(i.instance_id)]));
    for (const pid of before.values()) expect(pid).not.toBeNull();
    await host.close();
    driver.close();
    // The VMs outlive the control plane.
    for (const pid of before.values()) expect(alive(pid!)).toBe(true);

    const driver2 = newDriver(rig);
    const host2 = await newHost(rig, driver2, await testCatalog());
    expect(host2.instances().map((i) => i.instance_id)).toEqual([...before.keys()]);
    // Give the restored actors time to act on what they observe.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await until(`all running after restart (${JSON.stringify(host2.instances().map((i) => [i.instance_id, i.status, i.status_reason]))})`, () => host2.instances().every((i) => i.status === 'running') && host2.isSettled());
    for (const [id, pid] of before) {
      expect(driver2.pidOf(id), id).toBe(pid);
      const log = await readFile(path.join(driver2.vmDir(id), 'vm.out.log'), 'utf8');
      expect(log.match(/ready: agent/g), `${id} boots`).toHaveLength(1);
    }
    await host2.flush();
    const afterRestart = host2.journal({ limit: 10_000 }).filter((e) => e.kind === 'transition' && e.to === 'booting');
    expect(afterRestart).toHaveLength(4); // one boot per instance, all before the restart
  });
});
