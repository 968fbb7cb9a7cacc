import type { Logger } from 'pino';
import type { Catalog } from '../../catalog/catalog.ts';
import type { Clock } from '../../common/clock.ts';
import type { GuestNetwork } from '../../firecracker/vm-config.ts';
import { guestNetworkOf } from '../../host/drive-plan.ts';
import type { HostNetwork } from '../../net/host-network.ts';
import { generateRuleset, type NetInstance, type NetOptions, type Ruleset } from '../../net/nft-ruleset.ts';
import type { DesiredState, TenantSpec } from '../../schemas/desired-state.ts';
import type { InstanceSpec } from '../vmm-driver.ts';
import type { TapManager } from './firecracker-driver.ts';

/**
 * The host's tenant networking as `serve --driver firecracker` runs it, from what the host holds:
 * the applied desired state and the instances with their addresses.
 *
 * - Taps (the driver's TapManager): a tap is created on its tenant's bridge before each boot and
 *   wake, against the tenant as the desired state has it now, and removed on destroy.
 * - Sync: the tenant bridges (stale `mvbr*` bridges removed), forwarding, and the nftables
 *   ruleset in one `nft -f`, generated exactly as `mvm-actors net apply|verify` generates it from
 *   the store, so `net verify` finds no drift. Syncs never overlap: one asked for while another
 *   runs is done once after it, with whatever the host holds then.
 * - A failed sync is logged and kept in `status()` until a later sync succeeds; the applied
 *   desired state stands either way (the network is brought back by the next successful sync).
 */

/** What the networking is derived from (the host; late-bound, because the host needs the driver first). */
export interface NetworkSource {
  readonly catalog: Catalog;
  desiredState(): DesiredState | null;
  instances(): { instance_id: string; tenant_id: string; pool_id: string; status: string; network: { ipv4: string; tap: string } }[];
}

export interface NetworkSyncStatus {
  state: 'pending' | 'synced' | 'failed';
  /** The desired-state generation of the last attempt. */
  generation: number | null;
  /** Why the last sync failed, or null. */
  error: string | null;
  /** When the last sync ended (clock ms). */
  at: number | null;
}

/** A tenant of the applied desired state by id, indexed once per applied document. */
export class TenantLookup {
  #source: Pick<NetworkSource, 'desiredState'> | null = null;
  #indexed: DesiredState | null = null;
  #byId = new Map<string, TenantSpec>();

  bind(source: Pick<NetworkSource, 'desiredState'>): void {
    this.#source = source;
  }

  tenant(tenantId: string): TenantSpec | undefined {
    const desired = this.#source?.desiredState() ?? null;
    if (desired !== this.#indexed) {
      this.#indexed = desired;
      this.#byId = new Map((desired?.tenants ?? []).map((t) => [t.tenant_id, t]));
    }
    return this.#byId.get(tenantId);
  }

  /** The driver's guestNetwork option: the tenant's gateway and prefix length, for specs built without the tenant. */
  guestNetwork(spec: InstanceSpec): GuestNetwork | undefined {
    const tenant = this.tenant(spec.tenant_id);
    if (!tenant) return undefined;
    const net = guestNetworkOf(tenant);
    return { gateway: net.gateway, prefixLength: net.prefix_len };
  }
}

export interface HostNetworkSyncOptions {
  network: HostNetwork;
  tenants: TenantLookup;
  /** controlPorts must include the serve API port; the same options `net verify` is given. */
  netOptions: NetOptions;
  clock: Clock;
  log: Logger;
}

export class HostNetworkSync implements TapManager {
  readonly #network: HostNetwork;
  readonly #tenants: TenantLookup;
  readonly #netOptions: NetOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  #source: NetworkSource | null = null;
  #status: NetworkSyncStatus = { state: 'pending', generation: null, error: null, at: null };
  #enabled = false;
  #running: Promise<NetworkSyncStatus> | null = null;
  #again: Promise<NetworkSyncStatus> | null = null;

  constructor(options: HostNetworkSyncOptions) {
    this.#network = options.network;
    this.#tenants = options.tenants;
    this.#netOptions = options.netOptions;
    this.#clock = options.clock;
    this.#log = options.log;
  }

  bind(source: NetworkSource): void {
    this.#source = source;
    this.#tenants.bind(source);
  }

  /** Syncs asked for before this (e.g. while serve's port is not known yet) do nothing. */
  enable(): void {
    this.#enabled = true;
  }

  status(): NetworkSyncStatus {
    return { ...this.#status };
  }

  async ensureTap(spec: InstanceSpec): Promise<void> {
    const tenant = this.#tenants.tenant(spec.tenant_id);
    // A tenant no longer applied gets no tap (and its bridge is not brought back).
    if (!tenant) throw new Error(`ensureTap(${spec.instance_id}): tenant "${spec.tenant_id}" is not in the applied desired state`);
    // HostNetwork attaches taps only to configured tenants: give it this one as applied now (read
    // synchronously by ensureTap before its first await, so concurrent taps do not interfere).
    this.#network.configure([tenant]);
    await this.#network.ensureTap(spec);
  }

  async removeTap(spec: InstanceSpec): Promise<void> {
    await this.#network.removeTap(spec);
  }

  /** The ruleset for what the host holds now (what `net show` prints from the store). */
  ruleset(): Ruleset | null {
    const source = this.#source;
    const desired = source?.desiredState() ?? null;
    if (!source || !desired) return null;
    // Destroyed instances have given their address back (or are about to): no ingress target.
    const instances: NetInstance[] = source
      .instances()
      .filter((i) => i.status !== 'destroyed')
      .map((i) => ({ instance_id: i.instance_id, tenant_id: i.tenant_id, pool_id: i.pool_id, ipv4: i.network.ipv4 }));
    return generateRuleset({ desired, roleOf: (name) => source.catalog.roles.get(name)?.manifest, instances, options: this.#netOptions });
  }

  /** Bridges and ruleset for the current desired state; resolves with the outcome, never rejects. */
  sync(): Promise<NetworkSyncStatus> {
    if (!this.#enabled) return Promise.resolve(this.status());
    if (this.#running) {
      // One more pass after the running one, shared by everyone who asks meanwhile.
      this.#again ??= this.#running.then(() => {
        this.#again = null;
        return this.#start();
      });
      return this.#again;
    }
    return this.#start();
  }

  #start(): Promise<NetworkSyncStatus> {
    const run = this.#syncOnce().finally(() => {
      if (this.#running === run) this.#running = null;
    });
    this.#running = run;
    return run;
  }

  async #syncOnce(): Promise<NetworkSyncStatus> {
    const desired = this.#source?.desiredState() ?? null;
    const generation = desired?.generation ?? null;
    try {
      const ruleset = this.ruleset();
      if (!desired || !ruleset) {
        this.#status = { state: 'pending', generation, error: null, at: this.#clock.now() };
        return this.status();
      }
      const started = this.#clock.now();
      const taps = (this.#source?.instances() ?? []).filter((i) => i.status !== 'destroyed').map((i) => ({ tenant_id: i.tenant_id, tap: i.network.tap }));
      const result = await this.#network.sync(desired.tenants, ruleset, taps);
      this.#status = { state: 'synced', generation, error: null, at: this.#clock.now() };
      this.#log.info({ generation, bridges: result.bridges.length, removed: result.removed, reattached: result.reattached, ms: this.#clock.now() - started }, 'host network synced');
    } catch (error) {
      this.#status = { state: 'failed', generation, error: (error as Error).message, at: this.#clock.now() };
      this.#log.error({ generation, err: error }, 'host network sync failed; the desired state stays applied, the network is retried at the next apply (or run `mvm-actors net apply`)');
    }
    return this.status();
  }
}
