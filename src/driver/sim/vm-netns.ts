import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { execa } from 'execa';

/**
 * A simulated VM's own network stack, for VMs that run the real OpenClaw (root only). OpenClaw's
 * gateway, bound to a specific address, also listens on 127.0.0.1 and [::1] at the same port, so
 * two tenants' gateways on one machine would collide there. In its own network namespace each VM
 * has what a microVM has: its own loopback, and one interface (`eth0`) with its tenant address,
 * so the gateway listens on the role's declared port on the instance's tenant address, as in a
 * real guest.
 *
 * Wiring, like Firecracker's taps on a tenant bridge: one bridge per tenant in the host's
 * namespace holding the tenant gateway address (network + 1, so the control plane reaches every
 * instance of the tenant on-link) and one veth pair per VM. Instances of one tenant share the
 * bridge; different tenants have different bridges and the VMs get no default route, so nothing
 * reaches another tenant's subnet (and the host does not forward between bridges unless
 * ip_forward is on, which the simulator never turns on).
 *
 * Names carry a hash of the driver's state directory, so two fleets on one machine (tests, a dev
 * fleet) never share a namespace or bridge even with the same instance ids.
 */

export interface VmNetwork {
  /** `ip netns` name. */
  netns: string;
  bridge: string;
  /** Host side of the VM's veth pair. */
  hostVeth: string;
  address: string;
  prefixLen: number;
  /** The tenant gateway address on the bridge (network + 1). */
  gateway: string;
}

function short(...parts: string[]): string {
  return createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 10);
}

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

export function vmNetwork(stateDir: string, instance: { instance_id: string; tenant_id: string; network: { ipv4: string; gateway?: string; prefix_len?: number } }): VmNetwork {
  const prefixLen = instance.network.prefix_len ?? 24;
  const size = 2 ** (32 - prefixLen);
  const networkAddress = Math.floor(ipv4ToInt(instance.network.ipv4) / size) * size;
  return {
    netns: `mvsim-${short(stateDir)}-${instance.instance_id}`,
    // IFNAMSIZ: at most 15 characters.
    bridge: `mvsb${short(stateDir, instance.tenant_id)}`,
    hostVeth: `mvsv${short(stateDir, instance.instance_id)}`,
    address: instance.network.ipv4,
    prefixLen,
    gateway: instance.network.gateway ?? intToIpv4(networkAddress + 1),
  };
}

async function ip(args: string[]): Promise<void> {
  const result = await execa('ip', args, { reject: false });
  if (result.exitCode !== 0) throw new Error(`ip ${args.join(' ')} failed: ${result.stderr.trim() || `exit ${result.exitCode}`}`);
}

async function ok(args: string[]): Promise<boolean> {
  return (await execa('ip', args, { reject: false })).exitCode === 0;
}

/** Creates whatever of the namespace, bridge and veth pair is missing (idempotent). */
export async function ensureVmNetwork(net: VmNetwork): Promise<void> {
  if (!(await ok(['netns', 'pids', net.netns]))) await ip(['netns', 'add', net.netns]);
  if (!(await ok(['link', 'show', 'dev', net.bridge]))) await ip(['link', 'add', net.bridge, 'type', 'bridge']);
  const bridgeAddrs = (await execa('ip', ['-o', '-4', 'addr', 'show', 'dev', net.bridge], { reject: false })).stdout;
  if (!bridgeAddrs.includes(` ${net.gateway}/`)) await ip(['addr', 'add', `${net.gateway}/${net.prefixLen}`, 'dev', net.bridge]);
  await ip(['link', 'set', net.bridge, 'up']);
  if (!(await ok(['-n', net.netns, 'link', 'show', 'dev', 'eth0']))) {
    await execa('ip', ['link', 'del', net.hostVeth], { reject: false });
    const peer = `mvsp${net.hostVeth.slice(4)}`;
    await ip(['link', 'add', net.hostVeth, 'type', 'veth', 'peer', 'name', peer]);
    await ip(['link', 'set', peer, 'netns', net.netns]);
    await ip(['-n', net.netns, 'link', 'set', peer, 'name', 'eth0']);
    await ip(['-n', net.netns, 'addr', 'add', `${net.address}/${net.prefixLen}`, 'dev', 'eth0']);
    await ip(['-n', net.netns, 'link', 'set', 'eth0', 'up']);
  }
  await ip(['-n', net.netns, 'link', 'set', 'lo', 'up']);
  await ip(['link', 'set', net.hostVeth, 'master', net.bridge]);
  await ip(['link', 'set', net.hostVeth, 'up']);
}

/** Removes the namespace (its veth pair goes with it) and the tenant's bridge once no VM uses it. */
export async function removeVmNetwork(net: VmNetwork): Promise<void> {
  await execa('ip', ['netns', 'del', net.netns], { reject: false });
  await execa('ip', ['link', 'del', net.hostVeth], { reject: false });
  let ports: string[];
  try {
    ports = readdirSync(`/sys/class/net/${net.bridge}/brif`);
  } catch {
    return;
  }
  if (ports.length === 0) await execa('ip', ['link', 'del', net.bridge], { reject: false });
}

/** The command prefix that runs a program inside the VM's namespace (also a private mount namespace). */
export function inNetns(net: VmNetwork): string[] {
  return ['netns', 'exec', net.netns];
}
