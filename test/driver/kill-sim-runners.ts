import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

/** Kills every simulated VM runner (its whole process group) recorded under a sim driver's state dir. */
export async function killSimRunners(stateDir: string): Promise<void> {
  const vms = await readdir(path.join(stateDir, 'vms')).catch(() => [] as string[]);
  for (const vm of vms) {
    const text = await readFile(path.join(stateDir, 'vms', vm, 'runner.pid'), 'utf8').catch(() => null);
    if (!text) continue;
    const { pid } = JSON.parse(text) as { pid: number };
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
