import { cidrContains, cidrLast, formatCidr, formatIpv4, parseCidr, parseIpv4, type Ipv4Cidr } from '../schemas/ipv4.ts';

/**
 * Cluster-wide addressing of tenant networks, as pure functions of the desired state.
 *
 * - A tenant's `ipv4_subnet` spans the cluster. Its first usable address (network + 1) is the
 *   tenant's gateway: every host that runs the tenant puts it on the tenant's bridge, so a guest's
 *   default route is the same wherever it runs. Instances get network + 2 up to broadcast - 1.
 * - An instance's address is named by its **offset** from the tenant's network address. A
 *   coordinator that spreads a tenant over several hosts gives each host a disjoint `host_slice`
 *   of the subnet; a host only hands out offsets inside its slice, so addresses stay unique
 *   cluster-wide without the hosts talking to each other.
 * - Interface names (Linux allows 15 bytes) are decimal and deterministic:
 *   bridge `mvbr<tenant_net_id>` (at most 8 bytes: the id is at most 4094), tap
 *   `mv<tenant_net_id>-<offset>` (at most 2 + 4 + 1 + 8 = 15 bytes: the widest subnet, a /8, has
 *   offsets below 2^24 = 16777216, eight digits). A tap's third byte is a digit, so no tap name
 *   can be a bridge name. Tap names are unique per host because (tenant, offset) is.
 * - The MAC is locally administered and unicast, and carries the tenant net id and the address:
 *   `X2:NN:a:b:c:d` where X is the high 4 bits of the 12-bit net id, NN its low 8 bits and a.b.c.d
 *   the IPv4 address. The pair (net id, address) is unique cluster-wide, so the MAC is too.
 *
 * The identity is computed once at allocation and stored with the instance, so it stays the same
 * across sleep, wake and control-plane restarts.
 */

export interface NetworkIdentity {
  ipv4: string;
  mac: string;
  tap: string;
  vsock_cid: number;
}

/** The parts of a tenant spec addressing needs. */
export interface TenantNetwork {
  tenant_id: string;
  tenant_net_id: number;
  ipv4_subnet: string;
  host_slice?: string | undefined;
}

/** Offsets (from the tenant's network address) this host may give to instances, inclusive. */
export interface HostAddressRange {
  subnet: Ipv4Cidr;
  /** network + 1: the tenant's gateway, on this host's tenant bridge. */
  gateway: number;
  firstOffset: number;
  lastOffset: number;
}

/** No free address left for a tenant on this host: names the tenant and the field to widen. */
export class AddressExhaustedError extends Error {
  override readonly name = 'AddressExhaustedError';
  constructor(
    readonly tenantId: string,
    readonly field: 'ipv4_subnet' | 'host_slice',
    detail: string,
  ) {
    super(`tenant "${tenantId}": no free instance address in ${detail}; widen tenants[].${field} (tenant "${tenantId}") or run fewer instances of it on this host`);
  }
}

function subnetOf(tenant: TenantNetwork): Ipv4Cidr {
  const subnet = parseCidr(tenant.ipv4_subnet);
  if (!subnet) throw new Error(`tenant "${tenant.tenant_id}": ipv4_subnet "${tenant.ipv4_subnet}" is not an IPv4 CIDR; write it like "10.20.1.0/24"`);
  return subnet;
}

export function hostAddressRange(tenant: TenantNetwork): HostAddressRange {
  const subnet = subnetOf(tenant);
  const gateway = subnet.network + 1;
  let first = 2;
  let last = cidrLast(subnet) - 1 - subnet.network;
  if (tenant.host_slice !== undefined) {
    const slice = parseCidr(tenant.host_slice);
    if (!slice || !cidrContains(subnet, slice)) {
      throw new Error(`tenant "${tenant.tenant_id}": host_slice "${tenant.host_slice}" is not a CIDR inside ipv4_subnet ${formatCidr(subnet)}`);
    }
    first = Math.max(first, slice.network - subnet.network);
    last = Math.min(last, cidrLast(slice) - subnet.network);
  }
  return { subnet, gateway, firstOffset: first, lastOffset: last };
}

export function bridgeName(tenantNetId: number): string {
  return `mvbr${tenantNetId}`;
}

export function tapName(tenantNetId: number, offset: number): string {
  return `mv${tenantNetId}-${offset}`;
}

export function macFor(tenantNetId: number, ipv4: number): string {
  const bytes = [(((tenantNetId >> 8) & 0x0f) << 4) | 0x02, tenantNetId & 0xff, ...[24, 16, 8, 0].map((shift) => Math.floor(ipv4 / 2 ** shift) % 256)];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export function identityFor(tenant: TenantNetwork, offset: number, vsockCid: number): NetworkIdentity {
  const subnet = subnetOf(tenant);
  const address = subnet.network + offset;
  return { ipv4: formatIpv4(address), mac: macFor(tenant.tenant_net_id, address), tap: tapName(tenant.tenant_net_id, offset), vsock_cid: vsockCid };
}

/** The offset of a recorded identity inside its tenant subnet (from the address, not the tap name). */
export function offsetOf(tenant: Pick<TenantNetwork, 'tenant_id' | 'ipv4_subnet'> & Partial<TenantNetwork>, ipv4: string): number {
  const subnet = subnetOf(tenant as TenantNetwork);
  const address = parseIpv4(ipv4);
  if (address === undefined || address < subnet.network || address > cidrLast(subnet)) {
    throw new Error(`tenant "${tenant.tenant_id}": address ${ipv4} is not inside ipv4_subnet ${formatCidr(subnet)}`);
  }
  return address - subnet.network;
}

/** Hands out the lowest free number at or above `first`, reusing numbers given back. */
export class NumberPool {
  readonly #used = new Set<number>();
  #next: number;
  constructor(readonly first: number) {
    this.#next = first;
  }
  take(): number {
    while (this.#used.has(this.#next)) this.#next++;
    this.#used.add(this.#next);
    return this.#next;
  }
  /** The lowest free number in [low, high], or undefined when all are taken. */
  takeWithin(low: number, high: number): number | undefined {
    // Every number in [first, #next) is used, so a search from `low` can start at #next.
    let n = low < this.first ? low : Math.max(low, this.#next);
    while (n <= high && this.#used.has(n)) n++;
    if (n > high) return undefined;
    this.#used.add(n);
    // Keep #next at the lowest free number so the next search does not rescan a used run.
    while (this.#used.has(this.#next)) this.#next++;
    return n;
  }
  has(n: number): boolean {
    return this.#used.has(n);
  }
  claim(n: number): void {
    this.#used.add(n);
  }
  release(n: number): void {
    this.#used.delete(n);
    if (n < this.#next && n >= this.first) this.#next = n;
  }
  get size(): number {
    return this.#used.size;
  }
}
