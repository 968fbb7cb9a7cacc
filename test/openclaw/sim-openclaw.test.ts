import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Catalog, LoadedRole } from '../../src/catalog/catalog.ts';
import { loadCatalogStrict } from '../../src/catalog/load-catalog.ts';
import { manifestHash } from '../../src/catalog/manifest-hash.ts';
import { systemClock } from '../../src/common/clock.ts';
import { vmNetwork } from '../../src/driver/sim/vm-netns.ts';
import { SimDriver } from '../../src/driver/sim/sim-driver.ts';
import { DriverError, type InstanceSpec, type OpContext } from '../../src/driver/vmm-driver.ts';
import type { ServiceSpec } from '../../src/schemas/role-manifest.ts';
import { createHost, type Host } from '../../src/host/host.ts';
import { listeningPorts } from './openclaw-harness.ts';
import { killSimRunners } from '../driver/kill-sim-runners.ts';

/**
 * The real OpenClaw (openclaw@2026.9.6 on Node 24) in the simulator, driven only by the host, the
 * role manifests and the drives: two tenants, each VM in its own network namespace on its
 * tenant's bridge, under its tenant's uid. Tenant A (`oca`): a gateway with Telegram and its token
 * file, and a worker whose node host enrols with a code its gateway minted. Tenant B (`ocb`): a
 * gateway whose pool enables Telegram without the secret. Gateways are shared by all tests
 * (each costs ~20 s and ~1 GB); afterAll stops every VM and checks nothing is left listening.
 */

const GATEWAY_PORT = 18789;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const CALL = path.join(HERE, 'gateway-call.ts');
const PACKAGE_ROOT = path.resolve(HERE, '../..');
const figures: Record<string, number> = {};

const root = mkdtempSync(path.join(os.tmpdir(), 'ocsim-'));
const dataDir = path.join(root, 'data');
const stateDir = path.join(root, 'sim');
let driver: SimDriver;
let host: Host;
let catalog: Catalog;
/** Swaps the gateway token file of this instance after its /readyz is green, before the next readiness probe (see the wrong-token test). */
let swapTokenOf: string | null = null;

function document(generation: number) {
  const pool = (pool_id: string, role: string, profile: string, running: number, extra: Record<string, unknown> = {}) => ({
    pool_id,
    role,
    profile,
    revision: { artifacts: `${role}-dev`, config_version: 1, secrets_epoch: 0 },
    resources: { vcpus: 2, mem_mib: 2048, data_disk_mib: 1024 },
    desired_counts: { running, warm: 0, sleeping: 0 },
    ...extra,
  });
  return {
    schema_version: 1,
    node_id: 'oc-sim-test',
    generation,
    tenants: [
      { tenant_id: 'oca', tenant_net_id: 3201, ipv4_subnet: '10.243.1.0/24', pools: [pool('gateway', 'gateway', 'openclaw-gateway', 1, { connectors: ['telegram'] }), pool('workers', 'worker', 'openclaw-worker', 1)] },
      { tenant_id: 'ocb', tenant_net_id: 3202, ipv4_subnet: '10.243.2.0/24', pools: [pool('gateway', 'gateway', 'openclaw-gateway', 1, { connectors: ['telegram'] })] },
    ],
  };
}

/** The built-in roles with minimum runtime 0 and the gateway floor 0, so a gateway may sleep at once in a test. */
async function testCatalog(): Promise<Catalog> {
  const builtin = await loadCatalogStrict();
  const roles = new Map<string, LoadedRole>(builtin.roles);
  for (const name of ['gateway', 'worker']) {
    const role = builtin.roles.get(name)!;
    const manifest = structuredClone(role.manifest);
    manifest.sleep = { ...manifest.sleep, min_runtime_s: 0, floor: 0 };
    roles.set(name, { ...role, manifest, hash: manifestHash(manifest) });
  }
  return { dir: builtin.dir, roles, profiles: builtin.profiles };
}

/** The sim driver with one test hook: the wrong-token scenario (a token file that no longer matches what the gateway runs with). */
class HookedSimDriver extends SimDriver {
  override async checkReadiness(spec: InstanceSpec, service: ServiceSpec, ctx: OpContext): Promise<void> {
    if (swapTokenOf === spec.instance_id) {
      const ready = await fetch(`http://${spec.network.ipv4}:${GATEWAY_PORT}/readyz`).then((r) => r.status === 200, () => false);
      if (!ready) throw new DriverError('checkReadiness', spec.instance_id, 'not-ready', 'waiting for /readyz before swapping the token', true);
      swapTokenOf = null;
      const file = path.join(this.vmDir(spec.instance_id), 'drives', 'secrets', 'gateway-token');
      const owner = statSync(file);
      await writeFile(file, 'a-token-the-gateway-does-not-have\n');
      chownSync(file, owner.uid, owner.gid);
    }
    return super.checkReadiness(spec, service, ctx);
  }
}

async function openHost(): Promise<void> {
  driver = new HookedSimDriver({ stateDir, clock: systemClock, stopGraceMs: 3000, adoptedPollMs: 200, openclaw: 'require' });
  host = await createHost({ dataDir, driver, clock: systemClock, roles: catalog });
}

async function until<T>(what: string, probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs: number): Promise<T> {
  const start = systemClock.now();
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (systemClock.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => systemClock.setTimeout(() => resolve(), 250));
  }
}

function status(id: string): string {
  const view = host.instance(id);
  return `${view?.status} (${view?.status_reason})`;
}

interface CallResult {
  ok: boolean;
  payload?: any;
  code?: string;
  detailsCode?: string | null;
  message?: string;
}

/** An operator call made inside the gateway's VM (its network namespace), over its loopback. */
function gatewayCall(instanceId: string, method: string, params: unknown = {}, token?: string): CallResult {
  const view = host.instance(instanceId)!;
  const net = vmNetwork(driver.stateDir, { instance_id: instanceId, tenant_id: view.tenant_id, network: view.network });
  const tokenArg = token !== undefined ? `token:${token}` : path.join(driver.vmDir(instanceId), 'drives', 'secrets', 'gateway-token');
  const out = execFileSync('ip', ['netns', 'exec', net.netns, process.execPath, '--import', 'tsx', CALL, String(GATEWAY_PORT), tokenArg, path.join(root, `operator-${instanceId}.json`), method, JSON.stringify(params)], { cwd: PACKAGE_ROOT, encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out.trim().split('\n').pop()!) as CallResult;
}

function tenantUid(netId: number): number {
  return 90_000 + netId;
}

beforeAll(async () => {
  catalog = await testCatalog();
  await openHost();
  // Tenant A's Telegram bot token is present before its gateway boots; tenant B has none.
  await host.secrets.put('oca', 'telegram-bot-token', '123456789:AAFakeTokenForTestsOnly');
  const started = systemClock.now();
  const result = await host.apply(document(1));
  expect(result.refusal).toBeNull();
  expect(result.issues).toEqual([]);
  await until(`both gateways and the worker running (${host.instances().map((i) => `${i.instance_id}: ${status(i.instance_id)}`).join(', ')})`, () => host.instances().length === 3 && host.instances().every((i) => i.status === 'running'), 240_000);
  figures.fleet_apply_to_all_running_ms = systemClock.now() - started;
}, 420_000);

afterAll(async () => {
  try {
    for (const view of host?.instances() ?? []) host.stop(view.instance_id);
    await until('every VM stopped', () => host.instances().every((i) => i.status === 'stopped' || i.status === 'failed'), 90_000).catch(() => undefined);
    await host?.close();
  } finally {
    driver?.close();
    await killSimRunners(stateDir);
    // Anything a SIGKILLed runner left in a VM namespace of this test goes too.
    const ours = `${vmNetwork(stateDir, { instance_id: 'x', tenant_id: 'x', network: { ipv4: '10.0.0.2' } }).netns.slice(0, -1)}`;
    execFileSync('sh', ['-c', `for ns in $(ip netns list | awk '{print $1}' | grep '^${ours}'); do for p in $(ip netns pids $ns); do kill -9 $p; done; ip netns del $ns; done; true`]);
    console.log(`openclaw sim figures: ${JSON.stringify(figures)}`);
    const left = await listeningPorts();
    await rm(root, { recursive: true, force: true });
    expect(left.has(GATEWAY_PORT), 'a gateway still listens after the fleet stopped').toBe(false);

  }
}, 180_000);

describe('the real OpenClaw in the simulator, through the host', () => {
  it('runs the gateways as real OpenClaw on their tenant address and port, under the tenant uid, ready through the handshake', async () => {
    for (const id of ['oca-gateway-0', 'ocb-gateway-0']) {
      const services = await driver.simulatedServices(id);
      expect(services?.simulated, `${id} has no simulated stand-in`).toEqual([]);
      expect((services as unknown as { real: { service: string }[] }).real.map((s) => s.service)).toEqual(['openclaw-gateway']);
      // The process that answers is OpenClaw, as the tenant's uid.
      const ip = host.instance(id)!.network.ipv4;
      const readyz = await fetch(`http://${ip}:${GATEWAY_PORT}/readyz`);
      expect(readyz.status).toBe(200);
      const connect = gatewayCall(id, 'connect');
      expect(connect.ok, JSON.stringify(connect)).toBe(true);
      expect(connect.payload.server.version).toBe('2026.9.6');
    }
    const pid = Number(readFileSync(path.join(driver.vmDir('oca-gateway-0'), 'run', 'pids', 'openclaw-gateway.pid'), 'utf8'));
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(new RegExp(`^Uid:\\s+${tenantUid(3201)}\\s`, 'm'));
    const config = JSON.parse(readFileSync(path.join(driver.vmDir('oca-gateway-0'), 'drives', 'config', 'openclaw.json'), 'utf8'));
    expect(config.gateway).toMatchObject({ mode: 'local', port: GATEWAY_PORT, bind: 'custom', customBindHost: host.instance('oca-gateway-0')!.network.ipv4 });
    expect(config.env.vars).toEqual({ MVM_TENANT_ID: 'oca', MVM_INSTANCE_ID: 'oca-gateway-0' });
  });

  it("pairs the worker's node host with a code its own gateway minted; the gateway lists it and system.which round-trips", async () => {
    const node = await until(
      'the worker listed as a connected, approved node',
      () => {
        const listed = gatewayCall('oca-gateway-0', 'node.list');
        return listed.ok && (listed.payload.nodes as any[]).find((n) => n.displayName === 'oca-workers-0' && n.connected === true && n.approvalState === 'approved');
      },
      120_000,
    );
    expect(node.paired).toBe(true);
    const invoked = gatewayCall('oca-gateway-0', 'node.invoke', { nodeId: node.nodeId, command: 'system.which', params: { bins: ['sh'] }, idempotencyKey: `t-${systemClock.now()}`, timeoutMs: 15_000 });
    expect(invoked.ok, JSON.stringify(invoked)).toBe(true);
    expect(invoked.payload.payload).toEqual({ bins: { sh: expect.stringMatching(/\/sh$/) } });
    // The code came through the worker's secrets drive; its device identity and token are on its /data.
    expect(existsSync(path.join(driver.vmDir('oca-workers-0'), 'drives', 'secrets', 'node-setup-code'))).toBe(true);
    const workerData = execFileSync('find', [path.join(driver.vmDir('oca-workers-0'), 'drives', 'data'), '-name', 'openclaw.sqlite'], { encoding: 'utf8' });
    expect(workerData).toMatch(/openclaw\/state\/state\/openclaw\.sqlite/);
  }, 180_000);

  it('Telegram with its token file: OpenClaw reports tokenSource tokenFile, tokenStatus available', () => {
    const status = gatewayCall('oca-gateway-0', 'channels.status', {});
    expect(status.ok, JSON.stringify(status)).toBe(true);
    const accounts = JSON.stringify(status.payload).match(/\{[^{}]*"tokenSource"[^{}]*\}/g) ?? [];
    expect(accounts.some((a) => a.includes('"tokenSource":"tokenFile"') && a.includes('"tokenStatus":"available"')), JSON.stringify(status.payload).slice(0, 1500)).toBe(true);
    expect(host.instance('oca-gateway-0')!.connectors).toEqual({ telegram: { enabled: true, missing: [] } });
  });

  it('without the secret, Telegram stays out of the config and disabled on the instance, and the gateway runs', () => {
    const config = JSON.parse(readFileSync(path.join(driver.vmDir('ocb-gateway-0'), 'drives', 'config', 'openclaw.json'), 'utf8'));
    expect(config.channels).toBeUndefined();
    expect(host.instance('ocb-gateway-0')).toMatchObject({ status: 'running', connectors: { telegram: { enabled: false, missing: ['telegram-bot-token'] } } });
    expect(readdirSync(path.join(driver.vmDir('ocb-gateway-0'), 'drives', 'secrets'))).toEqual(['gateway-token']);
  });

  it("a worker of tenant A cannot reach tenant B's gateway, and no other tenant's gateway mints it a code", async () => {
    const a = host.instance('oca-workers-0')!;
    const bIp = host.instance('ocb-gateway-0')!.network.ipv4;
    const aGatewayIp = host.instance('oca-gateway-0')!.network.ipv4;
    const aNs = vmNetwork(driver.stateDir, { instance_id: a.instance_id, tenant_id: 'oca', network: a.network }).netns;
    const probe = (ip: string) =>
      execFileSync('ip', ['netns', 'exec', aNs, process.execPath, '-e', `const s=require('net').connect(${GATEWAY_PORT},'${ip}');s.setTimeout(3000);s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)});s.on('timeout',()=>{console.log('timeout');process.exit(0)})`], { encoding: 'utf8' }).trim();
    expect(probe(aGatewayIp)).toBe('connected');
    expect(probe(bIp)).toMatch(/ENETUNREACH|EHOSTUNREACH|timeout/);
    // A worker spec of tenant A that names B's gateway as the minter gets no code (the driver checks the tenant).
    const spec = { instance_id: 'oca-workers-9', tenant_id: 'oca', network: a.network, drives: [{ name: 'secrets', device: 'vdc', mount: '/run/secrets', label: 'mvm-secrets', read_only: true, persistence: 'ephemeral', size_mib: 16, files: {} }, { name: 'config', device: 'vdd', mount: '/etc/mvm-config', label: 'mvm-config', read_only: true, persistence: 'versioned', size_mib: 16, files: { 'mvm.json': JSON.stringify({ minted_secrets: [{ name: 'node-setup-code', verb: 'openclaw-setup-code', from_instance: 'ocb-gateway-0' }] }) } }] } as unknown as InstanceSpec;
    await driver.prepareDrives(spec, { signal: new AbortController().signal, deadline: systemClock.now() + 10_000 });
    expect(readdirSync(path.join(driver.vmDir('oca-workers-9'), 'drives', 'secrets'))).toEqual([]);
    expect(readFileSync(path.join(driver.vmDir('oca-workers-9'), 'vm.err.log'), 'utf8')).toContain('belongs to tenant ocb, not oca');
    await driver.destroy('oca-workers-9', { signal: new AbortController().signal, deadline: systemClock.now() + 10_000 });
  }, 60_000);

  it("a file in the gateway's workspace memory survives sleep and wake, and a control-plane restart", async () => {
    const memory = path.join(driver.vmDir('oca-gateway-0'), 'drives', 'data', 'openclaw', 'workspace', 'memory');
    await mkdir(memory, { recursive: true });
    await writeFile(path.join(memory, 'x.md'), '# remembered\n');
    execFileSync('chown', ['-R', `${tenantUid(3201)}:${tenantUid(3201)}`, path.dirname(memory)]);
    expect(host.sleep('oca-gateway-0').accepted).toBe(true);
    await until(`the gateway asleep (${status('oca-gateway-0')})`, () => host.instance('oca-gateway-0')!.status === 'sleeping', 60_000);
    expect(driver.pidOf('oca-gateway-0')).toBeNull();
    const woke = systemClock.now();
    expect(host.wake('oca-gateway-0').accepted).toBe(true);
    await until(`the gateway running again (${status('oca-gateway-0')})`, () => host.instance('oca-gateway-0')!.status === 'running', 180_000);
    figures.gateway_wake_to_ready_ms = systemClock.now() - woke;
    expect(readFileSync(path.join(memory, 'x.md'), 'utf8')).toBe('# remembered\n');

    // The control plane goes away and comes back on the same data: it adopts the running VMs.
    const pidBefore = driver.pidOf('oca-gateway-0');
    await host.close();
    driver.close();
    await openHost();
    await host.apply(document(2));
    expect(driver.pidOf('oca-gateway-0')).toBe(pidBefore);
    expect(host.instance('oca-gateway-0')!.status).toBe('running');
    expect(readFileSync(path.join(memory, 'x.md'), 'utf8')).toBe('# remembered\n');
    expect(gatewayCall('oca-gateway-0', 'connect').ok).toBe(true);
  }, 300_000);

  it('nothing OpenClaw wrote lies outside its instance data dir and its own temp files', () => {
    for (const netId of [3201, 3202]) {
      // Other processes on the machine may delete files while find walks the tree; only those
      // vanishing files may make it exit non-zero.
      const scan = spawnSync('find', ['/', '-xdev', '-uid', String(tenantUid(netId)), '-not', '-path', '/proc/*'], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
      const complaints = scan.stderr.split('\n').filter((l) => l && !/No such file or directory/.test(l));
      expect(scan.status === 0 || complaints.length === 0, scan.stderr).toBe(true);
      const owned = scan.stdout.split('\n').filter(Boolean);
      expect(owned.length).toBeGreaterThan(0);
      const outside = owned.filter((f) => !/\/vms\/[a-z0-9-]+\/(drives\/(data|secrets)|tmp|run)(\/|$)/.test(f) || !f.startsWith(stateDir));
      expect(outside, `files of tenant uid ${tenantUid(netId)} outside its VMs' data, secrets, run and tmp dirs`).toEqual([]);
      expect(owned.some((f) => f.includes('/drives/data/openclaw/state/'))).toBe(true);
    }
    // The guest mount points the simulator created on this machine stay empty: drives were mounted only inside each VM.
    for (const mount of ['/data', '/etc/mvm-config', '/run/secrets', '/opt/mvm-openclaw']) expect(readdirSync(mount)).toEqual([]);
  }, 120_000);

  it('a token that no longer matches the gateway is refused with OpenClaw\'s code, and the instance fails with it, not by timeout', async () => {
    const wrong = gatewayCall('ocb-gateway-0', 'connect', {}, 'not-the-token');
    expect(wrong).toMatchObject({ ok: false, detailsCode: 'AUTH_TOKEN_MISMATCH' });
    // Restart tenant B's gateway; once it runs with its token, the token file on its secrets drive is swapped.
    expect(host.stop('ocb-gateway-0').accepted).toBe(true);
    await until(`B's gateway stopped (${status('ocb-gateway-0')})`, () => host.instance('ocb-gateway-0')!.status === 'stopped', 60_000);
    swapTokenOf = 'ocb-gateway-0';
    const started = systemClock.now();
    expect(host.start('ocb-gateway-0').accepted).toBe(true);
    await until(`B's gateway failed (${status('ocb-gateway-0')})`, () => host.instance('ocb-gateway-0')!.status === 'failed', 150_000);
    expect(host.instance('ocb-gateway-0')!.status_reason).toMatch(/^service openclaw-gateway not ready: openclaw:AUTH_TOKEN_MISMATCH: /);
    // Failed at the refusal, well before the readiness timeout (120 s) ran out.
    expect(swapTokenOf).toBeNull();
    figures.wrong_token_start_to_failed_ms = systemClock.now() - started;
  }, 200_000);
});
