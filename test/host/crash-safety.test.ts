import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, tempDir } from '../helpers/fixtures.ts';

const SCRIPT = path.join(REPO_ROOT, 'test/host/crash-host.ts');

/** 6 tenants, each a gateway and 7 workers: 48 instances, all running. */
function desiredState() {
  return {
    schema_version: 1,
    node_id: 'crash-test',
    generation: 1,
    tenants: Array.from({ length: 6 }, (_, t) => ({
      tenant_id: `t${t}`,
      tenant_net_id: t + 1,
      ipv4_subnet: `10.${t}.0.0/24`,
      pools: [
        { pool_id: 'gw', role: 'gateway', profile: 'openclaw-gateway', revision: { artifacts: 'gw-1', config_version: 1, secrets_epoch: 0 }, resources: { vcpus: 2, mem_mib: 2048, data_disk_mib: 1024 }, desired_counts: { running: 1, warm: 0, sleeping: 0 } },
        { pool_id: 'wk', role: 'worker', profile: 'openclaw-worker', revision: { artifacts: 'wk-1', config_version: 1, secrets_epoch: 0 }, resources: { vcpus: 1, mem_mib: 1024, data_disk_mib: 1024 }, desired_counts: { running: 7, warm: 0, sleeping: 0 } },
      ],
    })),
  };
}

function hostProcess(dir: string) {
  return execa('node', ['--import', 'tsx', SCRIPT, path.join(dir, 'data'), path.join(dir, 'hypervisor.json'), path.join(dir, 'desired.json')], {
    cwd: REPO_ROOT,
    reject: false,
    buffer: true,
    lines: false,
  });
}

describe('crash safety', () => {
  it('a host SIGKILLed in the middle of an apply restarts on the same data and converges: nothing lost, nothing duplicated', async () => {
    const dir = await tempDir('mvm-crash-');
    await writeFile(path.join(dir, 'desired.json'), JSON.stringify(desiredState()));

    // First run: kill it once some, but not all, instances have moved.
    const first = hostProcess(dir);
    let seen = 0;
    await new Promise<void>((resolve, reject) => {
      first.stdout!.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString().split('\n')) {
          const match = /^transitions (\d+)$/.exec(line);
          if (match) seen = Number(match[1]);
          if (line.startsWith('settled')) reject(new Error('the host settled before it could be killed; slow the driver down'));
        }
        if (seen >= 60) {
          first.kill('SIGKILL');
          resolve();
        }
      });
      first.catch(reject);
    });
    const killed = await first;
    expect(killed.signal).toBe('SIGKILL');

    // Second run: restore, re-apply the same generation, converge.
    const second = await hostProcess(dir);
    expect(second.exitCode, second.stderr).toBe(0);
    const summary = JSON.parse(second.stdout.split('\n').find((l) => l.startsWith('settled '))!.slice('settled '.length));
    const ids = Object.keys(summary.vms).sort();
    const expected = desiredState().tenants.flatMap((t) => [`${t.tenant_id}-gw-0`, ...Array.from({ length: 7 }, (_, i) => `${t.tenant_id}-wk-${i}`)]).sort();
    expect(ids).toEqual(expected);
    expect(summary.observed).toEqual(expected);
    for (const [id, vm] of Object.entries(summary.vms) as [string, { status: string; driver: string; boots: number }][]) {
      expect(vm.status, id).toBe('running');
      expect(vm.driver, id).toBe('running');
      // Booted exactly once across both processes: a restored boot effect found the VM already up.
      expect(vm.boots, id).toBe(1);
    }
  });
});
