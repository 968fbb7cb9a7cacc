import { holdProcessOpen } from '../../src/common/clock.ts';
import { loadDeviceIdentity } from '../../src/openclaw/device-identity.ts';
import { connectOperator, gatewayArgs, listNodes, mintNodeSetupCode, nodeHostArgs } from '../../src/openclaw/enrolment.ts';
import { probeGatewayOnce, waitForGatewayReady } from '../../src/openclaw/gateway-handshake.ts';
import { findOpenClaw } from '../../src/openclaw/install-location.ts';
import { clock, freePort, Harness, instanceDirs, putSecret, sleep, writeConfig } from '../openclaw/openclaw-harness.ts';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Catalog, LoadedRole } from '../../src/catalog/catalog.ts';
import { loadCatalogStrict } from '../../src/catalog/load-catalog.ts';
import { manifestHash } from '../../src/catalog/manifest-hash.ts';
import { SimDriver } from '../../src/driver/sim/sim-driver.ts';
import { vmNetwork } from '../../src/driver/sim/vm-netns.ts';
import { createHost } from '../../src/host/host.ts';
import { killSimRunners } from '../driver/kill-sim-runners.ts';

/**
 * The real OpenClaw on this machine: gateway launch to ready (through the handshake), hello-ok
 * latency, node host launch to enrolled, and resident memory of each (from /proc, whole process
 * groups); then, through the simulator and the host as test/openclaw/sim-openclaw.test.ts drives
 * it, a gateway's cold apply to running and its wake (from sleep) to ready. Null when OpenClaw
 * is not installed (`npm run openclaw:install`).
 */
export async function benchOpenClaw(): Promise<{ rows: { label: string; figure: string }[]; json: Record<string, number> } | null> {
  if (findOpenClaw() === null) return null;
  const harness = new Harness();
  const json: Record<string, number> = {};
  // The clock's timers and the children are unref'd; keep the bench process alive while it waits on them.
  const release = holdProcessOpen();
  try {
    const port = await freePort();
    const gw = instanceDirs(harness.parent, 'bench-gateway-0');
    putSecret(gw, 'gateway-token', 'bench-gateway-token');
    writeConfig(gw, { format: 'openclaw-gateway', tenant_id: 'bench', instance_id: 'bench-gateway-0', listen: { address: '127.0.0.1', port }, token_secret: 'gateway-token', connectors: [], secrets_present: ['gateway-token'], plugins_available: [] });
    const identity = loadDeviceIdentity(join(harness.parent, 'operator.json'));
    const target = { host: '127.0.0.1', port, token: 'bench-gateway-token', role: 'operator' as const, scopes: ['operator.read'], identity };
    const gateway = harness.start(gw, gatewayArgs(), 'gateway');
    const ready = await waitForGatewayReady(target, { clock, deadline: clock.now() + 180_000, intervalMs: 100 });
    json.gateway_launch_to_ready_ms = clock.now() - gateway.startedAt;
    const hellos: number[] = [ready.hello_ok_ms];
    for (let i = 0; i < 9; i += 1) hellos.push((await probeGatewayOnce(target, clock, clock.now() + 10_000)).hello_ok_ms);
    hellos.sort((a, b) => a - b);
    json.hello_ok_median_ms = hellos[Math.floor(hellos.length / 2)]!;
    json.hello_ok_max_ms = hellos[hellos.length - 1]!;

    const operator = await connectOperator(target, clock, clock.now() + 15_000);
    const code = await mintNodeSetupCode(operator, clock, clock.now() + 10_000);
    const worker = instanceDirs(harness.parent, 'bench-worker-0');
    writeConfig(worker, { format: 'openclaw-node', tenant_id: 'bench', instance_id: 'bench-worker-0', listen: null, token_secret: null, connectors: [], secrets_present: [], plugins_available: [] });
    const node = harness.start(worker, nodeHostArgs({ gatewayHost: '127.0.0.1', gatewayPort: port, displayName: 'bench-worker-0', setupCode: code.setupCode }), 'node');
    const deadline = clock.now() + 120_000;
    while (clock.now() < deadline) {
      const listed = (await listNodes(operator, clock, clock.now() + 5_000)).find((n) => n.displayName === 'bench-worker-0');
      if (listed?.connected === true && listed.approvalState === 'approved') break;
      await sleep(100);
    }
    json.node_launch_to_enrolled_ms = clock.now() - node.startedAt;
    // Memory after a short settle: the figures that size a VM.
    await sleep(5_000);
    json.gateway_rss_mib = Math.round(gateway.memory().reduce((s, p) => s + p.rss_bytes, 0) / 2 ** 20);
    json.node_rss_mib = Math.round(node.memory().reduce((s, p) => s + p.rss_bytes, 0) / 2 ** 20);
    operator.close();
    json.node_stop_ms = (await node.stop(10_000)).stop_ms;
    json.gateway_stop_ms = (await gateway.stop(10_000)).stop_ms;
  } finally {
    await harness.stopAll(2_000);
    harness.cleanup();
  }
  try {
    Object.assign(json, await benchGatewayWake());
  } finally {
    release();
  }
  return {
    rows: [
      { label: 'OpenClaw gateway launch -> ready (/readyz + hello-ok)', figure: `${(json.gateway_launch_to_ready_ms! / 1000).toFixed(1)} s` },
      { label: 'OpenClaw hello-ok after socket open (median / max of 10)', figure: `${json.hello_ok_median_ms} / ${json.hello_ok_max_ms} ms` },
      { label: 'OpenClaw node host launch -> enrolled and connected', figure: `${(json.node_launch_to_enrolled_ms! / 1000).toFixed(1)} s` },
      { label: 'OpenClaw gateway RSS (process group)', figure: `${json.gateway_rss_mib} MiB` },
      { label: 'OpenClaw node host RSS (process group)', figure: `${json.node_rss_mib} MiB` },
      { label: 'OpenClaw stop (SIGTERM -> gone): node host / gateway', figure: `${json.node_stop_ms} / ${json.gateway_stop_ms} ms` },
      { label: 'OpenClaw gateway in the simulator: apply -> running (cold boot, handshake readiness)', figure: `${(json.sim_gateway_apply_to_running_ms! / 1000).toFixed(1)} s` },
      { label: 'OpenClaw gateway in the simulator: sleep accepted -> sleeping', figure: `${(json.sim_gateway_sleep_ms! / 1000).toFixed(1)} s` },
      { label: 'OpenClaw gateway in the simulator: wake -> ready (running)', figure: `${(json.sim_gateway_wake_to_ready_ms! / 1000).toFixed(1)} s` },
    ],
    json,
  };
}

async function until(what: string, probe: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = clock.now() + timeoutMs;
  while (!probe()) {
    if (clock.now() > deadline) throw new Error(`bench: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * One tenant with one real gateway in the simulator (its own network namespace and uid, so root
 * is needed), driven through the host: apply to running, sleep, then wake to ready. The gateway
 * role's minimum runtime and floor are set to 0 so it may sleep at once, as in the tests.
 */
async function benchGatewayWake(): Promise<Record<string, number>> {
  const builtin = await loadCatalogStrict();
  const roles = new Map<string, LoadedRole>(builtin.roles);
  const role = builtin.roles.get('gateway')!;
  const manifest = structuredClone(role.manifest);
  manifest.sleep = { ...manifest.sleep, min_runtime_s: 0, floor: 0 };
  roles.set('gateway', { ...role, manifest, hash: manifestHash(manifest) });
  const catalog: Catalog = { dir: builtin.dir, roles, profiles: builtin.profiles };

  const root = mkdtempSync(join(tmpdir(), 'mvm-bench-ocsim-'));
  const stateDir = join(root, 'sim');
  const driver = new SimDriver({ stateDir, clock, stopGraceMs: 3000, adoptedPollMs: 200, openclaw: 'require' });
  const host = await createHost({ dataDir: join(root, 'data'), driver, clock, roles: catalog });
  const id = 'ocbench-gateway-0';
  const status = () => `${host.instance(id)?.status} (${host.instance(id)?.status_reason})`;
  const figures: Record<string, number> = {};
  try {
    const pool = { pool_id: 'gateway', role: 'gateway', profile: 'openclaw-gateway', revision: { artifacts: 'gateway-dev', config_version: 1, secrets_epoch: 0 }, resources: { vcpus: 2, mem_mib: 2048, data_disk_mib: 1024 }, desired_counts: { running: 1, warm: 0, sleeping: 0 } };
    const applied = clock.now();
    const result = await host.apply({ schema_version: 1, node_id: 'oc-bench', generation: 1, tenants: [{ tenant_id: 'ocbench', tenant_net_id: 3290, ipv4_subnet: '10.243.90.0/24', pools: [pool] }] });
    if (result.refusal !== null) throw new Error(`bench: apply refused: ${JSON.stringify(result.refusal)}`);
    await until(`the gateway running (${status()})`, () => host.instance(id)?.status === 'running', 240_000);
    figures.sim_gateway_apply_to_running_ms = clock.now() - applied;
    const slept = clock.now();
    if (!host.sleep(id).accepted) throw new Error('bench: sleep not accepted');
    await until(`the gateway asleep (${status()})`, () => host.instance(id)?.status === 'sleeping', 90_000);
    figures.sim_gateway_sleep_ms = clock.now() - slept;
    const woke = clock.now();
    if (!host.wake(id).accepted) throw new Error('bench: wake not accepted');
    await until(`the gateway running again (${status()})`, () => host.instance(id)?.status === 'running', 240_000);
    figures.sim_gateway_wake_to_ready_ms = clock.now() - woke;
    host.stop(id);
    await until(`the gateway stopped (${status()})`, () => host.instance(id)?.status === 'stopped' || host.instance(id)?.status === 'failed', 90_000).catch(() => undefined);
  } finally {
    await host.close();
    driver.close();
    await killSimRunners(stateDir);
    const ours = vmNetwork(stateDir, { instance_id: 'x', tenant_id: 'x', network: { ipv4: '10.0.0.2' } }).netns.slice(0, -1);
    execFileSync('sh', ['-c', `for ns in $(ip netns list | awk '{print $1}' | grep '^${ours}'); do for p in $(ip netns pids $ns); do kill -9 $p; done; ip netns del $ns; done; true`]);
    rmSync(root, { recursive: true, force: true });
  }
  return figures;
}
