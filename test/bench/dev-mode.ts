/**
 * Dev-mode figures (issue 5), from real simulated VMs on this machine:
 *
 *   1. simulated VMs per second from apply to running: a host with the simulation driver applies
 *      10 tenants x (gateway + 3 workers + builder) = 50 VMs from nothing, each a real process
 *      tree, and the clock runs until every one of them is running;
 *   2. the latency of one vsock round trip: `ping` through the host client, the VM's Firecracker
 *      style vsock socket (`CONNECT <port>`) and the guest agent, sequential on one connection,
 *      next to the same ping straight to the agent's socket (no VMM hop) and a raw Unix-socket
 *      echo of a frame of the same size with a server in another process (the floor);
 *   3. memory per idle simulated VM: RSS and PSS (shared pages split fairly) of each runner's
 *      process group, from /proc, once the fleet has been idle a moment.
 *
 * `npx tsx test/bench/dev-mode-main.ts` runs it alone; run-bench.ts calls benchDevMode().
 * Everything it starts is stopped before it returns.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { exampleFleet } from '../../src/cli/commands/dev.ts';
import { holdProcessOpen, systemClock } from '../../src/common/clock.ts';
import { createSimDriver, type SimDriver } from '../../src/driver/sim/sim-driver.ts';
import { createHost, type Host } from '../../src/host/host.ts';
import { connectGuestAgent, openHostSession, type VsockHostClient } from '../../src/vsock/host-client.ts';
import { killSimRunners } from '../driver/kill-sim-runners.ts';
import { distribution, fixed, int, type Distribution } from './report.ts';

export interface DevModeOptions {
  tenants?: number;
  workersPerTenant?: number;
  pings?: number;
  /** Progress lines (stderr by default). */
  progress?: (line: string) => void;
}

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const pause = (ms: number) => new Promise<void>((resolve) => systemClock.setTimeout(resolve, ms));

/** 10 tenants x (gateway + 3 workers + builder) by default: 50 simulated VMs. */
function fleet(tenants: number, workers: number) {
  const doc = exampleFleet(tenants, { firstNetId: 3001, subnetBase: [10, 250], nodeId: 'bench-dev-mode' });
  for (const tenant of doc.tenants) for (const pool of tenant.pools) if (pool.role === 'worker') pool.desired_counts.running = workers;
  return doc;
}

async function untilAllRunning(host: Host, expected: number, timeoutMs: number): Promise<void> {
  const start = nowMs();
  for (;;) {
    const instances = host.instances();
    if (instances.length === expected && instances.every((i) => i.status === 'running')) return;
    const broken = instances.filter((i) => i.status === 'failed' || i.status === 'refused');
    if (broken.length > 0) throw new Error(`dev-mode bench: ${broken.map((i) => `${i.instance_id} ${i.status} (${i.status_reason})`).join(', ')}`);
    if (nowMs() - start > timeoutMs) throw new Error(`dev-mode bench: not all ${expected} VMs running after ${timeoutMs} ms`);
    await pause(5);
  }
}

/** Sequential pings on one client; milliseconds per round trip. */
async function pings(client: VsockHostClient, n: number): Promise<number[]> {
  for (let i = 0; i < 100; i++) await client.request('ping', {}); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = nowMs();
    await client.request('ping', {});
    samples.push(nowMs() - t0);
  }
  return samples;
}

/** The floor: a Unix-socket echo server in its own process, echoing a frame of `bytes` bytes. */
async function rawEchoSamples(dir: string, n: number, bytes: number): Promise<number[]> {
  const socketPath = path.join(dir, 'echo.sock');
  const server = execa(process.execPath, ['-e', `require('node:net').createServer((s) => s.pipe(s)).listen(process.argv[1], () => console.log('up'))`, socketPath], { buffer: false, reject: false });
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout!.once('data', () => resolve());
      void server.then((r) => reject(new Error(`echo server exited: ${r.exitCode}`)));
    });
    const socket = net.createConnection({ path: socketPath });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const frame = Buffer.alloc(bytes, 0x61);
    const roundTrip = () =>
      new Promise<void>((resolve) => {
        let got = 0;
        const onData = (chunk: Buffer) => {
          got += chunk.length;
          if (got >= bytes) {
            socket.off('data', onData);
            resolve();
          }
        };
        socket.on('data', onData);
        socket.write(frame);
      });
    for (let i = 0; i < 100; i++) await roundTrip();
    const samples: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = nowMs();
      await roundTrip();
      samples.push(nowMs() - t0);
    }
    socket.destroy();
    return samples;
  } finally {
    server.kill('SIGTERM');
    await server;
  }
}

/** Resident and proportional memory of every process in a process group, from /proc. */
function groupMemory(pgid: number): { rssKiB: number; pssKiB: number; processes: number } {
  let rssKiB = 0;
  let pssKiB = 0;
  let processes = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
      if (pgrp !== pgid) continue;
      const rollup = readFileSync(`/proc/${entry}/smaps_rollup`, 'utf8');
      rssKiB += Number(/^Rss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0);
      pssKiB += Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0);
      processes += 1;
    } catch {
      // the process ended while we looked
    }
  }
  return { rssKiB, pssKiB, processes };
}

const ms = (d: Distribution) => `p50 ${fixed(d.p50 * 1000, 0)} µs, p99 ${fixed(d.p99 * 1000, 0)} µs`;

export async function benchDevMode(options: DevModeOptions = {}): Promise<{ rows: { label: string; figure: string }[]; json: Record<string, number> }> {
  const tenants = options.tenants ?? 10;
  const workers = options.workersPerTenant ?? 3;
  const n = options.pings ?? 2000;
  const progress = options.progress ?? ((line: string) => process.stderr.write(`${line}\n`));
  const expected = tenants * (workers + 2);
  // Short: Unix socket paths are limited to 107 bytes.
  const root = await mkdtemp(path.join(os.tmpdir(), 'bdev-'));
  const stateDir = path.join(root, 'sim');
  let driver: SimDriver | null = null;
  let host: Host | null = null;
  // The clock's timers are unref'd: without this, a standalone run would exit while it waits.
  const release = holdProcessOpen();
  try {
    driver = createSimDriver({ stateDir, clock: systemClock, stopGraceMs: 3000 });
    host = await createHost({ dataDir: path.join(root, 'data'), driver, clock: systemClock });

    // 1. apply to running
    progress(`dev-mode: applying ${expected} simulated VMs (${tenants} tenants)`);
    const t0 = nowMs();
    const result = await host.apply(fleet(tenants, workers));
    if (!result.applied) throw new Error(`dev-mode bench: not applied: ${result.refusal}`);
    await untilAllRunning(host, expected, 300_000);
    const applySeconds = (nowMs() - t0) / 1000;
    const vmsPerSecond = expected / applySeconds;
    progress(`dev-mode: ${expected} running after ${fixed(applySeconds, 2)} s`);

    // 3. memory of idle VMs, measured before (2) so that the pings run on a quiet machine; the
    // VMs get a moment to settle after boot first.
    await pause(2000);
    const per = host.instances().map((i) => groupMemory(driver!.pidOf(i.instance_id) ?? -1));
    const rssMiB = per.reduce((a, m) => a + m.rssKiB, 0) / 1024 / per.length;
    const pssMiB = per.reduce((a, m) => a + m.pssKiB, 0) / 1024 / per.length;
    const processes = per.reduce((a, m) => a + m.processes, 0) / per.length;

    // 2. vsock round trips to one worker, the fleet idle
    const worker = host.instances({ role: 'worker' })[0]!;
    const vmDir = driver.vmDir(worker.instance_id);
    const agentPort = host.catalog.roles.get('worker')!.manifest.vsock.agent_port;
    const viaVmm = await connectGuestAgent({ udsPath: path.join(vmDir, 'vsock.sock'), port: agentPort, instanceId: worker.instance_id, tenantId: worker.tenant_id });
    const vsockSamples = await pings(viaVmm, n);
    viaVmm.close();
    const direct = net.createConnection({ path: path.join(vmDir, 'run', 'agent.sock') });
    await new Promise<void>((resolve, reject) => direct.once('connect', resolve).once('error', reject));
    const directClient = await openHostSession(direct, { instanceId: worker.instance_id, tenantId: worker.tenant_id });
    const directSamples = await pings(directClient, n);
    directClient.close();
    // A ping request frame is about 100 bytes (4-byte length + JSON); echo the same.
    const echoSamples = await rawEchoSamples(root, n, 100);
    const vsock = distribution(vsockSamples);
    const agentDirect = distribution(directSamples);
    const echo = distribution(echoSamples);
    progress(`dev-mode: vsock ping ${ms(vsock)}; raw echo ${ms(echo)}`);
    const isolated = driver.isolation !== null;

    const rows = [
      { label: `simulated VMs apply -> running (${expected} VMs, ${tenants} tenants, ${isolated ? 'per-tenant uids' : 'one uid'})`, figure: `${fixed(vmsPerSecond, 1)} VMs/s (${fixed(applySeconds, 2)} s)` },
      { label: `vsock ping round trip via the VMM socket (${int(n)} sequential)`, figure: ms(vsock) },
      { label: 'ping straight to the agent socket (no VMM hop)', figure: ms(agentDirect) },
      { label: 'raw Unix-socket echo, 100 B, server in another process', figure: ms(echo) },
      { label: 'added by the vsock path over raw echo (p50 / p99)', figure: `${fixed((vsock.p50 - echo.p50) * 1000, 0)} µs / ${fixed((vsock.p99 - echo.p99) * 1000, 0)} µs` },
      { label: `memory per idle simulated VM (${fixed(processes, 0)} process per VM)`, figure: `RSS ${fixed(rssMiB, 1)} MiB, PSS ${fixed(pssMiB, 1)} MiB` },
    ];
    const json = {
      dev_vms: expected,
      dev_apply_s: applySeconds,
      dev_vms_per_s: vmsPerSecond,
      dev_vsock_ping_p50_ms: vsock.p50,
      dev_vsock_ping_p99_ms: vsock.p99,
      dev_agent_direct_ping_p50_ms: agentDirect.p50,
      dev_agent_direct_ping_p99_ms: agentDirect.p99,
      dev_raw_echo_p50_ms: echo.p50,
      dev_raw_echo_p99_ms: echo.p99,
      dev_vm_rss_mib: rssMiB,
      dev_vm_pss_mib: pssMiB,
    };
    return { rows, json };
  } finally {
    // Stop every VM (the driver's own path), then make sure: kill any group left.
    if (host) await host.close().catch(() => undefined);
    if (driver) {
      const ctx = { signal: new AbortController().signal, deadline: systemClock.now() + 30_000 };
      const vms = await driver.describe();
      await Promise.all(vms.map((vm) => driver!.destroy(vm.instance_id, ctx).catch(() => undefined)));
      driver.close();
    }
    await killSimRunners(stateDir);
    await rm(root, { recursive: true, force: true });
    release();
  }
}
