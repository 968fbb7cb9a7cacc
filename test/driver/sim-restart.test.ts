import { readdirSync, readFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { exampleFleet } from '../../src/cli/commands/dev.ts';
import { systemClock } from '../../src/common/clock.ts';
import { liveProcess } from '../../src/driver/sim/proc.ts';
import { createSimDriver } from '../../src/driver/sim/sim-driver.ts';
import { CLI, REPO_ROOT, tempDir } from '../helpers/fixtures.ts';
import { killSimRunners } from './kill-sim-runners.ts';

/**
 * Restart with SIGKILL, with real processes: `mvm-actors serve --driver sim` runs in a child
 * process with a fleet of simulated VMs (two tenants: gateway, two workers, builder each). Once
 * every VM runs, the control plane is killed with SIGKILL, so it cleans up nothing. A new
 * `serve` on the same data dir must adopt the very same VM processes (same pid and /proc start
 * time), start none of them again, and report the fleet running. afterEach kills every serve and
 * every runner process group the test may have left.
 */

const serves: ResultPromise[] = [];
let dataDir: string | undefined;

afterEach(async () => {
  for (const serve of serves.splice(0)) serve.kill('SIGKILL');
  if (dataDir) {
    await killSimRunners(path.join(dataDir, 'sim'));
    await rm(dataDir, { recursive: true, force: true });
    dataDir = undefined;
  }
});

/** Starts serve and resolves with its API URL once it listens. */
async function startServe(dir: string, desired?: string): Promise<{ serve: ResultPromise; url: string; output: () => string }> {
  const args = [CLI, 'serve', '--driver', 'sim', '--data-dir', dir, '--listen', '127.0.0.1:0', '--log-level', 'warn', ...(desired ? ['--desired', desired] : [])];
  const serve = execa('node', args, { cwd: REPO_ROOT, reject: false, buffer: false });
  serves.push(serve);
  let output = '';
  serve.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  serve.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let exited = false;
  void serve.then(() => (exited = true));
  // Generous: a loaded 2-core machine may need a while to load the server through tsx.
  const url = await until('serve to listen', () => {
    if (exited) throw new Error(`serve exited before it listened:\n${output}`);
    return /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
  }, 90_000, () => output);
  return { serve, url, output: () => output };
}

async function until<T>(what: string, probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 30_000, context: () => string = () => ''): Promise<T> {
  const start = systemClock.now();
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (systemClock.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${context()}`);
    await new Promise((resolve) => systemClock.setTimeout(() => resolve(undefined), 100));
  }
}

interface InstanceView {
  instance_id: string;
  status: string;
  status_reason: string | null;
}

async function api<T>(url: string, route: string, token: string): Promise<T> {
  const response = await fetch(`${url}/v1${route}`, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(`GET ${route}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

const instancesOf = async (url: string, token: string) => (await api<{ instances: InstanceView[] }>(url, '/instances', token)).instances;

/** The runner's pid record of every VM directory: pid and /proc start time. */
function pidRecords(dir: string): Map<string, { pid: number; start_time: string }> {
  const vms = path.join(dir, 'sim', 'vms');
  return new Map(readdirSync(vms).sort().map((id) => [id, JSON.parse(readFileSync(path.join(vms, id, 'runner.pid'), 'utf8'))]));
}

/** How often each VM's runner became ready: one line per runner start in its log. */
async function runnerStarts(dir: string, id: string): Promise<number> {
  return ((await readFile(path.join(dir, 'sim', 'vms', id, 'vm.out.log'), 'utf8')).match(/ready: agent/g) ?? []).length;
}

describe('a control plane killed with SIGKILL, started again', { timeout: 300_000 }, () => {
  it('adopts the same simulated VMs (same pids), starts none of them twice, and reports the fleet running', async () => {
    dataDir = await tempDir('mvm-simr-');
    const dir = dataDir;
    const desired = path.join(dir, 'desired.json');
    await writeFile(desired, JSON.stringify(exampleFleet(2, { firstNetId: 241, subnetBase: [10, 241], nodeId: 'sim-restart-test' })));
    const ids = ['gateway-0', 'workers-0', 'workers-1', 'builds-0'].flatMap((suffix) => [`tenant-1-${suffix}`, `tenant-2-${suffix}`]).sort();

    // First control plane: apply, wait until all eight VMs run.
    const first = await startServe(dir, desired);
    const token = (await readFile(path.join(dir, 'api-token'), 'utf8')).trim();
    await until('all 8 running', async () => {
      const instances = await instancesOf(first.url, token);
      return instances.length === 8 && instances.every((i) => i.status === 'running');
    }, 90_000, first.output);
    const before = pidRecords(dir);
    expect([...before.keys()]).toEqual(ids);
    for (const [id, record] of before) expect(liveProcess(record), id).not.toBeNull();

    // SIGKILL: no shutdown path runs. The VMs, detached in their own process groups, live on.
    first.serve.kill('SIGKILL');
    const killed = await first.serve;
    expect(killed.signal).toBe('SIGKILL');
    for (const [id, record] of before) expect(liveProcess(record), `${id} survived the kill`).not.toBeNull();

    // Second control plane on the same data dir, no desired state given: everything comes from LMDB.
    const second = await startServe(dir);
    await until('all 8 running after the restart', async () => {
      const instances = await instancesOf(second.url, token);
      return instances.length === 8 && instances.every((i) => i.status === 'running');
    }, 90_000, second.output);
    // Give the restored actors time to act on what they observe, then look again.
    await new Promise((resolve) => systemClock.setTimeout(() => resolve(undefined), 1500));
    const instances = await instancesOf(second.url, token);
    expect(instances.map((i) => [i.instance_id, i.status])).toEqual(ids.map((id) => [id, 'running']));

    // The same processes: same pid and start time in the pid files, still alive ...
    expect(pidRecords(dir)).toEqual(before);
    for (const [id, record] of before) expect(liveProcess(record), id).not.toBeNull();
    // ... and what the driver itself observes (a separate driver, reading the same state dir).
    const observer = createSimDriver({ stateDir: path.join(dir, 'sim'), clock: systemClock, isolation: false });
    expect(await observer.describe()).toEqual(ids.map((instance_id) => ({ instance_id, state: 'running', snapshot: null })));
    for (const id of ids) expect(observer.pidOf(id), id).toBe(before.get(id)!.pid);
    observer.close();

    // Nothing was started twice: one runner start per VM, one boot per instance in the journal.
    for (const id of ids) {
      expect(await runnerStarts(dir, id), `${id} runner starts`).toBe(1);
      const detail = await api<{ journal: { kind: string; to?: string }[] }>(second.url, `/instances/${id}`, token);
      expect(detail.journal.filter((e) => e.kind === 'transition' && e.to === 'booting'), `${id} boots`).toHaveLength(1);
    }

    // Clean shutdown of the second control plane, then the VMs; nothing is left running.
    second.serve.kill('SIGTERM');
    expect((await second.serve).exitCode).toBe(0);
    const down = await execa('node', [CLI, 'dev', '--down', '--state-dir', dir], { cwd: REPO_ROOT });
    expect(down.stdout).toContain('stopped 8 simulated VM(s)');
    // Gone (a zombie waiting for init to reap it counts as gone).
    for (const [id, record] of before) expect(liveProcess(record), `${id} is gone`).toBeNull();
  });
});
