import { z } from 'zod';
import { AddressExhaustedError, hostAddressRange, identityFor, NumberPool, type NetworkIdentity as Identity, type TenantNetwork } from '../host/addressing.ts';
import { NetworkIdentity } from '../schemas/instance.ts';
import type { Store } from '../store/lmdb-store.ts';

/**
 * Hands out instance addresses (and vsock CIDs) and persists every allocation before it is used.
 *
 * Each allocation is one meta record, `net-alloc/<instance_id>`, queued with `putMeta` in the same
 * synchronous turn that creates the instance, so it commits in the same LMDB batch as the
 * instance's first snapshot (the store commits a tick's writes as one transaction): after a crash
 * either both are there or neither is, and no address is ever handed out twice. Releasing
 * deletes the record in the batch that deletes the instance's snapshot.
 *
 * A restarted host loads every record before it creates anything, so its first allocation already
 * avoids what the previous process handed out.
 */

export const ALLOCATION_META_PREFIX = 'net-alloc/';

export const AllocationRecord = z
  .object({
    schema_version: z.literal(1),
    instance_id: z.string().min(1),
    tenant_id: z.string().min(1),
    pool_id: z.string().min(1),
    tenant_net_id: z.number().int().min(1),
    /** Offset of the address from the tenant's network address. */
    offset: z.number().int().min(2),
    network: NetworkIdentity,
  })
  .strict();
export type AllocationRecord = z.infer<typeof AllocationRecord>;

export interface AllocatorLoadReport {
  loaded: number;
  /** Records that failed validation or repeat an address already loaded; they are skipped. */
  skipped: { key: string; reason: string }[];
}

export class AddressAllocator {
  readonly #store: Store | null;
  readonly #byInstance = new Map<string, AllocationRecord>();
  readonly #offsets = new Map<string, NumberPool>();
  readonly #cids = new NumberPool(3);
  readonly loadReport: AllocatorLoadReport = { loaded: 0, skipped: [] };

  /** `store: null` keeps allocations in memory only (pure planning, benchmarks). */
  constructor(store: Store | null) {
    this.#store = store;
    if (store) this.#load(store);
  }

  #load(store: Store): void {
    for (const key of store.metaKeys(ALLOCATION_META_PREFIX)) {
      const parsed = AllocationRecord.safeParse(store.getMeta(key));
      if (!parsed.success) {
        this.loadReport.skipped.push({ key, reason: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
        continue;
      }
      const conflict = this.#conflict(parsed.data);
      if (conflict) {
        this.loadReport.skipped.push({ key, reason: conflict });
        continue;
      }
      this.#remember(parsed.data);
      this.loadReport.loaded++;
    }
  }

  #pool(tenantId: string): NumberPool {
    let pool = this.#offsets.get(tenantId);
    if (!pool) this.#offsets.set(tenantId, (pool = new NumberPool(2)));
    return pool;
  }

  #conflict(record: AllocationRecord): string | null {
    if (this.#pool(record.tenant_id).has(record.offset)) return `address ${record.network.ipv4} of tenant "${record.tenant_id}" is already allocated`;
    if (this.#cids.has(record.network.vsock_cid)) return `vsock CID ${record.network.vsock_cid} is already allocated`;
    return null;
  }

  #remember(record: AllocationRecord): void {
    this.#byInstance.set(record.instance_id, record);
    this.#pool(record.tenant_id).claim(record.offset);
    this.#cids.claim(record.network.vsock_cid);
  }

  #persist(record: AllocationRecord): void {
    this.#remember(record);
    this.#store?.putMeta(`${ALLOCATION_META_PREFIX}${record.instance_id}`, record);
  }

  /**
   * The instance's identity: the one it already has, or the lowest free address of this host's
   * range of the tenant subnet and the lowest free CID. Throws AddressExhaustedError when the
   * range is full.
   */
  allocate(instanceId: string, tenant: TenantNetwork, poolId: string): Identity {
    const existing = this.#byInstance.get(instanceId);
    if (existing) return existing.network;
    const range = hostAddressRange(tenant);
    const offset = this.#pool(tenant.tenant_id).takeWithin(range.firstOffset, range.lastOffset);
    if (offset === undefined) {
      const where = tenant.host_slice !== undefined ? `host_slice ${tenant.host_slice} of ipv4_subnet ${tenant.ipv4_subnet}` : `ipv4_subnet ${tenant.ipv4_subnet}`;
      const usable = Math.max(0, range.lastOffset - range.firstOffset + 1);
      throw new AddressExhaustedError(tenant.tenant_id, tenant.host_slice !== undefined ? 'host_slice' : 'ipv4_subnet', `${where} (${usable} usable, all taken)`);
    }
    const network = identityFor(tenant, offset, this.#cids.take());
    this.#persist({ schema_version: 1, instance_id: instanceId, tenant_id: tenant.tenant_id, pool_id: poolId, tenant_net_id: tenant.tenant_net_id, offset, network });
    return network;
  }

  /**
   * Records an identity found in a restored instance snapshot that has no allocation record (a
   * store written before allocations were persisted). Returns false when its address or CID is
   * already held by another instance.
   */
  adopt(instanceId: string, tenantId: string, poolId: string, network: Identity): boolean {
    if (this.#byInstance.has(instanceId)) return true;
    const match = /^mv(\d+)-(\d+)$/.exec(network.tap);
    if (!match) return false;
    const record: AllocationRecord = { schema_version: 1, instance_id: instanceId, tenant_id: tenantId, pool_id: poolId, tenant_net_id: Number(match[1]), offset: Number(match[2]), network };
    if (this.#conflict(record)) return false;
    this.#persist(record);
    return true;
  }

  release(instanceId: string): void {
    const record = this.#byInstance.get(instanceId);
    if (!record) return;
    this.#byInstance.delete(instanceId);
    this.#offsets.get(record.tenant_id)?.release(record.offset);
    this.#cids.release(record.network.vsock_cid);
    this.#store?.deleteMeta(`${ALLOCATION_META_PREFIX}${instanceId}`);
  }

  get size(): number {
    return this.#byInstance.size;
  }

  get(instanceId: string): AllocationRecord | undefined {
    return this.#byInstance.get(instanceId);
  }

  /** Every allocation, ordered by instance id. */
  list(): AllocationRecord[] {
    return [...this.#byInstance.values()].sort((a, b) => (a.instance_id < b.instance_id ? -1 : a.instance_id > b.instance_id ? 1 : 0));
  }
}
