import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseCidr, parseIpv4 } from '../../schemas/ipv4.ts';

/**
 * Simulated VMs listen on loopback addresses derived from their tenant address: 10.a.b.c ->
 * 127.a.b.c (layout.ts, loopbackFor). Two simulated fleets on one machine (two state dirs) whose
 * tenants have the same subnets would therefore want the same addresses, and the second fleet's
 * services could not listen. This finds the running simulated VMs of *other* state dirs whose
 * loopback address falls in one of the given tenant subnets, so `mvm-actors dev` can refuse up
 * front and name the other fleet, instead of failing VM by VM.
 */

export interface LoopbackConflict {
  tenant_id: string;
  ipv4_subnet: string;
  /** The loopback address the other VM listens on. */
  loopback: string;
  /** The other VM's directory: `<its state dir>/vms/<instance>`. */
  vm_dir: string;
}

/** Running VM runners on this machine (any state dir), from /proc: VM directory -> its loopback address. */
function runningSimVms(): Map<string, string> {
  const found = new Map<string, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const at = argv.findIndex((a) => a.endsWith(`${path.sep}vm-runner.ts`));
      const vmDir = at >= 0 ? argv[at + 1] : undefined;
      if (!vmDir) continue;
      const runner = JSON.parse(readFileSync(path.join(vmDir, 'runner.json'), 'utf8')) as { loopback?: unknown };
      if (typeof runner.loopback === 'string') found.set(path.resolve(vmDir), runner.loopback);
    } catch {
      // gone, unreadable or not a runner: not a conflict we can name
    }
  }
  return found;
}

/** Loopback addresses use the low 24 bits of the tenant address. */
const low24 = (address: number) => address % 2 ** 24;

export function findLoopbackConflicts(stateDir: string, tenants: readonly { tenant_id: string; ipv4_subnet: string }[]): LoopbackConflict[] {
  const own = `${path.resolve(stateDir)}${path.sep}`;
  const others = [...runningSimVms()].filter(([vmDir]) => !vmDir.startsWith(own));
  if (others.length === 0) return [];
  const conflicts: LoopbackConflict[] = [];
  for (const tenant of tenants) {
    const cidr = parseCidr(tenant.ipv4_subnet);
    if (!cidr) continue; // validation reports it
    const size = 2 ** (32 - cidr.prefix);
    for (const [vmDir, loopback] of others) {
      const address = parseIpv4(loopback);
      if (address === undefined) continue;
      // The subnet's addresses, reduced to 24 bits, against the other VM's loopback.
      const offset = (low24(address) - low24(cidr.network) + 2 ** 24) % 2 ** 24;
      if (offset < size) conflicts.push({ tenant_id: tenant.tenant_id, ipv4_subnet: tenant.ipv4_subnet, loopback, vm_dir: vmDir });
    }
  }
  return conflicts;
}
