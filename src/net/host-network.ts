import { execa } from 'execa';
import type { InstanceSpec } from '../driver/vmm-driver.ts';
import { bridgeName, hostAddressRange, type TenantNetwork } from '../host/addressing.ts';
import { formatIpv4 } from '../schemas/ipv4.ts';
import { diffNft, normalizeNftJson, type NftDifference } from './nft-diff.ts';
import type { Ruleset } from './nft-ruleset.ts';

/**
 * The host side of tenant networking, through `ip` and `nft` (run as root): one bridge per tenant
 * holding the tenant's gateway address, one tap per instance enslaved to it, IPv4 forwarding,
 * and the nftables ruleset from nft-ruleset.ts applied in one `nft -f` transaction.
 *
 * Every operation is idempotent, so a driver can call ensureTap at every boot and wake and
 * removeTap at every stop and destroy. With `netns`, every command runs inside that named network
 * namespace (the isolation tests build a whole host in one).
 */

export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs one command; resolves with its result whatever the exit code. */
export type CommandRunner = (command: string, args: string[], input?: string) => Promise<CommandResult>;

export const runCommand: CommandRunner = async (command, args, input) => {
  const result = await execa(command, args, { input: input ?? '', reject: false, stripFinalNewline: false });
  if (result.failed && result.exitCode === undefined) throw new Error(`${command}: ${result.shortMessage ?? 'could not run'}; is it installed and on PATH?`);
  return { stdout: String(result.stdout), stderr: String(result.stderr), exitCode: result.exitCode ?? -1 };
};

/** A command that failed: names it, with what it printed. */
export class HostNetworkError extends Error {
  override readonly name = 'HostNetworkError';
}

export interface HostNetworkOptions {
  /** Run everything inside this named network namespace (`ip netns add`), e.g. in tests. */
  netns?: string;
  /** nftables table name; must match the generated ruleset's. Default mvm. */
  table?: string;
  run?: CommandRunner;
}

export interface VerifyResult {
  ok: boolean;
  differences: NftDifference[];
}

export class HostNetwork {
  readonly #netns: string | undefined;
  readonly #run: CommandRunner;
  readonly table: string;
  readonly #tenants = new Map<string, TenantNetwork>();

  constructor(options: HostNetworkOptions = {}) {
    this.#netns = options.netns;
    this.#run = options.run ?? runCommand;
    this.table = options.table ?? 'mvm';
  }

  /** Runs a command in this host's namespace; throws HostNetworkError on a non-zero exit unless `allow` accepts it. */
  async #exec(command: string, args: string[], input?: string, allow?: (r: CommandResult) => boolean): Promise<CommandResult> {
    const [cmd, argv] = this.#netns ? ['ip', ['netns', 'exec', this.#netns, command, ...args]] : [command, args];
    const result = await this.#run(cmd, argv, input);
    if (result.exitCode !== 0 && !allow?.(result)) {
      throw new HostNetworkError(`${[command, ...args].join(' ')}${this.#netns ? ` (netns ${this.#netns})` : ''} exited ${result.exitCode}: ${result.stderr.trim() || result.stdout.trim()}`);
    }
    return result;
  }

  async #linkExists(name: string): Promise<boolean> {
    const result = await this.#exec('ip', ['-j', 'link', 'show', 'dev', name], undefined, () => true);
    return result.exitCode === 0;
  }

  /** The tenants ensureTap may attach instances to (from the desired state). */
  configure(tenants: readonly TenantNetwork[]): void {
    this.#tenants.clear();
    for (const tenant of tenants) this.#tenants.set(tenant.tenant_id, tenant);
  }

  async enableForwarding(): Promise<void> {
    await this.#exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  }

  /** The tenant's bridge exists, is up and holds the tenant gateway address. */
  async ensureBridge(tenant: TenantNetwork): Promise<string> {
    const bridge = bridgeName(tenant.tenant_net_id);
    const range = hostAddressRange(tenant);
    if (!(await this.#linkExists(bridge))) await this.#exec('ip', ['link', 'add', 'name', bridge, 'type', 'bridge'], undefined, (r) => /File exists/.test(r.stderr));
    await this.#exec('ip', ['addr', 'replace', `${formatIpv4(range.gateway)}/${range.subnet.prefix}`, 'dev', bridge]);
    await this.#exec('ip', ['link', 'set', 'dev', bridge, 'up']);
    return bridge;
  }

  async removeBridge(tenantNetId: number): Promise<void> {
    await this.#exec('ip', ['link', 'del', 'dev', bridgeName(tenantNetId)], undefined, (r) => /Cannot find device|does not exist/.test(r.stderr));
  }

  /** Bridge names (`mvbr<id>`) present on the host. */
  async listBridges(): Promise<string[]> {
    const result = await this.#exec('ip', ['-j', 'link', 'show', 'type', 'bridge']);
    const links = JSON.parse(result.stdout || '[]') as { ifname: string }[];
    return links.map((l) => l.ifname).filter((n) => /^mvbr\d+$/.test(n)).sort();
  }

  /**
   * The instance's tap exists (created when absent; an existing link of that name, such as a
   * test's veth end, is kept), is enslaved to its tenant's bridge and is up.
   */
  async ensureTap(spec: InstanceSpec): Promise<void> {
    const tenant = this.#tenants.get(spec.tenant_id);
    if (!tenant) throw new HostNetworkError(`ensureTap(${spec.instance_id}): tenant "${spec.tenant_id}" is not configured; call configure() with the desired state's tenants first`);
    const bridge = await this.ensureBridge(tenant);
    const tap = spec.network.tap;
    if (!(await this.#linkExists(tap))) await this.#exec('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap'], undefined, (r) => /File exists|Device or resource busy/.test(r.stderr));
    await this.#exec('ip', ['link', 'set', 'dev', tap, 'master', bridge]);
    await this.#exec('ip', ['link', 'set', 'dev', tap, 'up']);
  }

  async removeTap(spec: InstanceSpec): Promise<void> {
    await this.#exec('ip', ['link', 'del', 'dev', spec.network.tap], undefined, (r) => /Cannot find device|does not exist/.test(r.stderr));
  }

  /** Replaces the table with the ruleset in one nft transaction. */
  async apply(ruleset: Ruleset): Promise<void> {
    if (ruleset.table !== this.table) throw new HostNetworkError(`ruleset is for table ${ruleset.table}, this host network manages table ${this.table}`);
    await this.#exec('nft', ['-f', '-'], ruleset.text);
  }

  /**
   * Bridges for the tenants, stale `mvbr*` bridges removed, the existing taps of live instances
   * attached to their tenant's bridge again, forwarding on, then the ruleset. Re-attaching matters
   * after a restart: a bridge deleted while the control plane was down comes back empty, and VMs
   * that were adopted (not booted again) never pass through ensureTap.
   */
  async sync(tenants: readonly TenantNetwork[], ruleset: Ruleset, taps: readonly { tenant_id: string; tap: string }[] = []): Promise<{ bridges: string[]; removed: string[]; reattached: string[] }> {
    this.configure(tenants);
    const bridges: string[] = [];
    const bridgeOf = new Map<string, string>();
    for (const tenant of tenants) {
      const bridge = await this.ensureBridge(tenant);
      bridges.push(bridge);
      bridgeOf.set(tenant.tenant_id, bridge);
    }
    const removed = (await this.listBridges()).filter((b) => !bridges.includes(b));
    for (const bridge of removed) await this.#exec('ip', ['link', 'del', 'dev', bridge], undefined, (r) => /Cannot find device/.test(r.stderr));
    const reattached: string[] = [];
    const masters = await this.#tapMasters();
    for (const { tenant_id, tap } of taps) {
      const bridge = bridgeOf.get(tenant_id);
      // A tap that does not exist belongs to a VM that is not running: its next boot or wake creates it.
      if (bridge === undefined || !masters.has(tap) || masters.get(tap) === bridge) continue;
      await this.#exec('ip', ['link', 'set', 'dev', tap, 'master', bridge]);
      await this.#exec('ip', ['link', 'set', 'dev', tap, 'up']);
      reattached.push(tap);
    }
    await this.enableForwarding();
    await this.apply(ruleset);
    return { bridges, removed, reattached };
  }

  /** Every link on the host with the bridge it is enslaved to (null when none), by name. */
  async #tapMasters(): Promise<Map<string, string | null>> {
    const result = await this.#exec('ip', ['-j', 'link', 'show']);
    const links = JSON.parse(result.stdout || '[]') as { ifname: string; master?: string }[];
    return new Map(links.map((l) => [l.ifname, l.master ?? null]));
  }

  /** The live table as `nft -j` text, or null when it is not loaded. */
  async liveJson(): Promise<string | null> {
    const result = await this.#exec('nft', ['-j', 'list', 'table', 'inet', this.table], undefined, (r) => /No such file or directory|does not exist/.test(r.stderr));
    return result.exitCode === 0 ? result.stdout : null;
  }

  /**
   * The generated ruleset as nft itself renders it: loaded into a throwaway network namespace
   * (`unshare -n`, gone when the command ends) and listed there, so it compares with the live
   * table in nft's own canonical form.
   */
  async renderedJson(ruleset: Ruleset): Promise<string> {
    const result = await this.#run('unshare', ['-n', '--', 'sh', '-c', 'nft -f - && nft -j list table inet "$0"', ruleset.table], ruleset.text);
    if (result.exitCode !== 0) throw new HostNetworkError(`loading the generated ruleset into a scratch namespace failed (exit ${result.exitCode}): ${result.stderr.trim()}`);
    return result.stdout;
  }

  /** Every difference between the live table and the generated ruleset. */
  async verify(ruleset: Ruleset): Promise<VerifyResult> {
    const expected = normalizeNftJson(await this.renderedJson(ruleset));
    const liveText = await this.liveJson();
    const differences = diffNft(expected, liveText === null ? null : normalizeNftJson(liveText));
    return { ok: differences.length === 0, differences };
  }
}
