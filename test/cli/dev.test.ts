import { readdirSync, readFileSync } from 'node:fs';
import { execa, type ResultPromise } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, REPO_ROOT, tempDir } from '../helpers/fixtures.ts';

/** Pids of the simulated VM runners whose command line names this state dir. */
function runnersOf(stateDir: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`vm-runner.ts\0${stateDir}`);
      } catch {
        return false;
      }
    })
    .map(Number);
}

let dev: ResultPromise | undefined;
let stateDir: string | undefined;
/** Pids of `mvm-actors dev` control planes for this state dir. */
function controlPlanesOf(stateDir: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return cmd.includes('bin.js\0dev') && cmd.includes(stateDir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

afterEach(async () => {
  if (dev?.pid) {
    try {
      process.kill(-dev.pid, 'SIGKILL');
    } catch {
      // the group is gone already
    }
  }
  if (stateDir) await execa('node', [CLI, 'dev', '--down', '--state-dir', stateDir], { reject: false });
  for (const pid of stateDir ? runnersOf(stateDir) : []) process.kill(pid, 'SIGKILL');
});

describe('npm run dev', { timeout: 90_000 }, () => {
  it('brings up the example fleet of real simulated VMs, stops on Ctrl-C without stopping them, and --down stops them', async () => {
    stateDir = await tempDir('mvm-dev-');
    // Its own process group, so Ctrl-C can be delivered as a terminal does: to the whole group (npm and node).
    dev = execa('npm', ['run', '--silent', 'dev', '--', '--state-dir', stateDir], { cwd: REPO_ROOT, reject: false, buffer: false, detached: true });
    let output = '';
    dev.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    dev.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    for (let i = 0; i < 450 && !output.includes('fleet up'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(output).toContain('fleet up');
    expect(output).toMatch(/visualizer: http:\/\/127\.0\.0\.1:\d+\/viz\?token=\S{20,}/);
    // Gateway first: the workers waited while the gateway came up.
    expect(output).toMatch(/waiting/);
    expect(output).toMatch(/^tenant-1-gateway-0 +gateway +running +10\.200\.0\.2/m);
    expect(output).toMatch(/^tenant-1-workers-1 +worker +running/m);
    expect(runnersOf(stateDir)).toHaveLength(4);
    expect(output).toMatch(/^simulated services: .*gateway: openclaw-gateway \(openclaw, simulated on :18789\)/m);
    expect(output).toMatch(/^simulated services: .*worker: openclaw-node \(openclaw, simulated\)/m);

    process.kill(-dev.pid!, 'SIGINT');
    await dev;
    for (let i = 0; i < 100 && controlPlanesOf(stateDir).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(output).toContain('control plane stopped; the simulated VMs keep running');
    expect(controlPlanesOf(stateDir)).toEqual([]);
    expect(runnersOf(stateDir)).toHaveLength(4);

    const down = await execa('node', [CLI, 'dev', '--down', '--state-dir', stateDir], { cwd: REPO_ROOT });
    expect(down.stdout).toBe(`stopped 4 simulated VM(s); their data stays in ${stateDir}`);
    expect(runnersOf(stateDir)).toEqual([]);
    expect(readdirSync(`${stateDir}/sim/vms`).sort()).toEqual(['tenant-1-builds-0', 'tenant-1-gateway-0', 'tenant-1-workers-0', 'tenant-1-workers-1']);
  });
});
