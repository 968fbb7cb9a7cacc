import { formatIpv4, parseCidr } from '../schemas/ipv4.ts';

/**
 * Network identity of an instance, derived from its tenant's network and a host number that is
 * unique within the tenant: .1 is the tenant gateway address on the host, instances start at .2.
 * The MAC embeds the IPv4 address (locally administered prefix 06:00), the tap name the tenant
 * network id and host number, so both are unique per host and fit Linux's 15-byte limit.
 */
export interface NetworkIdentity {
  ipv4: string;
  mac: string;
  tap: string;
  vsock_cid: number;
}

export function identityFor(subnet: string, tenantNetId: number, hostNumber: number, vsockCid: number): NetworkIdentity {
  const cidr = parseCidr(subnet);
  if (!cidr) throw new Error(`invalid subnet ${subnet}`);
  const address = cidr.network + hostNumber;
  const bytes = [24, 16, 8, 0].map((shift) => Math.floor(address / 2 ** shift) % 256);
  return {
    ipv4: formatIpv4(address),
    mac: ['06', '00', ...bytes.map((b) => b.toString(16).padStart(2, '0'))].join(':'),
    tap: `mv${tenantNetId}-${hostNumber}`,
    vsock_cid: vsockCid,
  };
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
  claim(n: number): void {
    this.#used.add(n);
  }
  release(n: number): void {
    this.#used.delete(n);
    if (n < this.#next && n >= this.first) this.#next = n;
  }
}
