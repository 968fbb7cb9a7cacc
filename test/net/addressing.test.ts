import { describe, expect, it } from 'vitest';
import { AddressExhaustedError, bridgeName, hostAddressRange, identityFor, macFor, tapName } from '../../src/host/addressing.ts';
import { AddressAllocator } from '../../src/net/address-allocator.ts';
import { DesiredState, hostSliceProblem } from '../../src/schemas/desired-state.ts';
import { parseIpv4 } from '../../src/schemas/ipv4.ts';
import { validateDesiredState } from '../../src/validation/validate-desired-state.ts';
import { builtinCatalog } from '../helpers/fixtures.ts';
import { netDesiredState } from './net-fixture.ts';

const tenant = (ipv4_subnet: string, tenant_net_id = 1, host_slice?: string) => ({ tenant_id: 'acme', tenant_net_id, ipv4_subnet, ...(host_slice ? { host_slice } : {}) });

describe('addressing: pure derivation', () => {
  it.each([
    ['10.1.0.0/24', 2, 254],
    ['10.1.0.0/29', 2, 6],
    ['10.1.0.0/23', 2, 510],
    ['10.0.0.0/8', 2, 2 ** 24 - 2],
  ])('%s: the gateway is .1, instances from network + 2 to broadcast - 1', (subnet, first, last) => {
    const range = hostAddressRange(tenant(subnet));
    expect(range.gateway).toBe(parseIpv4(subnet.split('/')[0]!)! + 1);
    expect([range.firstOffset, range.lastOffset]).toEqual([first, last]);
  });

  it('a host slice narrows the range and never hands out the gateway or broadcast', () => {
    expect(hostAddressRange(tenant('10.1.0.0/24', 1, '10.1.0.64/26'))).toMatchObject({ firstOffset: 64, lastOffset: 127 });
    expect(hostAddressRange(tenant('10.1.0.0/24', 1, '10.1.0.0/26'))).toMatchObject({ firstOffset: 2, lastOffset: 63 });
    expect(hostAddressRange(tenant('10.1.0.0/24', 1, '10.1.0.192/26'))).toMatchObject({ firstOffset: 192, lastOffset: 254 });
    expect(() => hostAddressRange(tenant('10.1.0.0/24', 1, '10.2.0.0/26'))).toThrow(/host_slice "10.2.0.0\/26" is not a CIDR inside ipv4_subnet 10.1.0.0\/24/);
  });

  it('interface names fit 15 bytes at the extremes and cannot collide between bridges and taps', () => {
    expect(tapName(4094, 2 ** 24 - 2)).toBe('mv4094-16777214');
    expect(tapName(4094, 2 ** 24 - 2)).toHaveLength(15);
    expect(bridgeName(4094)).toBe('mvbr4094');
    expect(identityFor(tenant('10.0.0.0/8', 4094), 2 ** 24 - 2, 3).tap.length).toBeLessThanOrEqual(15);
    expect(tapName(1, 2)).not.toMatch(/^mvbr/);
  });

  it('the MAC is locally administered, unicast, and carries the net id (above 255 too) and the address', () => {
    for (const netId of [1, 255, 256, 300, 4094]) {
      const mac = macFor(netId, parseIpv4('10.1.2.3')!);
      const first = parseInt(mac.slice(0, 2), 16);
      expect(first & 0b10).toBe(0b10); // locally administered
      expect(first & 0b1).toBe(0); // unicast
      expect(((first >> 4) << 8) | parseInt(mac.slice(3, 5), 16)).toBe(netId);
      expect(mac.endsWith(':0a:01:02:03')).toBe(true);
    }
    expect(macFor(300, parseIpv4('10.82.0.2')!)).toBe('12:2c:0a:52:00:02');
    expect(macFor(44, parseIpv4('10.82.0.2')!)).not.toBe(macFor(300, parseIpv4('10.82.0.2')!));
  });
});

describe('addressing: the allocator (in memory)', () => {
  it('hands out the lowest free address, is idempotent per instance, reuses released ones', () => {
    const a = new AddressAllocator(null);
    const t = tenant('10.1.0.0/29', 300);
    const ips = ['i0', 'i1', 'i2'].map((id) => a.allocate(id, t, 'p').ipv4);
    expect(ips).toEqual(['10.1.0.2', '10.1.0.3', '10.1.0.4']);
    expect(a.allocate('i1', t, 'p').ipv4).toBe('10.1.0.3');
    a.release('i1');
    expect(a.allocate('i3', t, 'p')).toEqual({ ipv4: '10.1.0.3', mac: '12:2c:0a:01:00:03', tap: 'mv300-3', vsock_cid: 4 });
  });

  it('subnet exhaustion is an error naming the tenant and the field', () => {
    const a = new AddressAllocator(null);
    const t = tenant('10.1.0.0/29');
    for (let i = 0; i < 5; i++) a.allocate(`i${i}`, t, 'p');
    expect(() => a.allocate('i5', t, 'p')).toThrow(AddressExhaustedError);
    expect(() => a.allocate('i5', t, 'p')).toThrow(/tenant "acme": no free instance address in ipv4_subnet 10.1.0.0\/29 \(5 usable, all taken\); widen tenants\[\]\.ipv4_subnet/);
    const sliced = new AddressAllocator(null);
    const s = tenant('10.1.0.0/24', 1, '10.1.0.248/30');
    expect([sliced.allocate('a', s, 'p').ipv4, sliced.allocate('b', s, 'p').ipv4, sliced.allocate('c', s, 'p').ipv4, sliced.allocate('d', s, 'p').ipv4]).toEqual(['10.1.0.248', '10.1.0.249', '10.1.0.250', '10.1.0.251']);
    expect(() => sliced.allocate('e', s, 'p')).toThrow(/host_slice 10.1.0.248\/30 of ipv4_subnet 10.1.0.0\/24 \(4 usable, all taken\); widen tenants\[\]\.host_slice/);
  });

  it('two hosts with disjoint slices of one subnet never hand out the same address', () => {
    const h1 = new AddressAllocator(null);
    const h2 = new AddressAllocator(null);
    const got = new Set<string>();
    for (let i = 0; i < 60; i++) {
      got.add(h1.allocate(`a${i}`, tenant('10.9.0.0/24', 9, '10.9.0.0/25'), 'p').ipv4);
      got.add(h2.allocate(`b${i}`, tenant('10.9.0.0/24', 9, '10.9.0.128/25'), 'p').ipv4);
    }
    expect(got.size).toBe(120);
  });
});

describe('desired state: host_slice', () => {
  const withSlice = (slice: string, running = 1) => {
    const doc = netDesiredState();
    (doc.tenants[0] as Record<string, unknown>).host_slice = slice;
    doc.tenants[0]!.pools[1]!.desired_counts.running = running;
    return doc;
  };

  it('accepts a slice inside the subnet', async () => {
    const report = validateDesiredState(withSlice('10.81.0.64/26'), await builtinCatalog());
    expect(report.issues).toEqual([]);
    expect(DesiredState.parse(withSlice('10.81.0.64/26')).tenants[0]!.host_slice).toBe('10.81.0.64/26');
  });

  it.each([
    ['10.99.0.0/26', /host_slice 10.99.0.0\/26 of tenant "acme" is not inside its ipv4_subnet 10.81.0.0\/24/],
    ['10.81.0.64', /host_slice "10.81.0.64" is not an IPv4 CIDR/],
    ['10.81.0.65/26', /host bits set; did you mean "10.81.0.64\/26"/],
  ])('rejects %s with a message naming the field', async (slice, message) => {
    const report = validateDesiredState(withSlice(slice), await builtinCatalog());
    const found = report.issues.filter((i) => i.path === 'tenants[0].host_slice');
    expect(found).toHaveLength(1);
    expect(found[0]!.message).toMatch(message);
    expect(report.rejected.tenants).toEqual(['tenants[0]']);
  });

  it('rejects a slice too small for the pools', async () => {
    const report = validateDesiredState(withSlice('10.81.0.0/30', 2), await builtinCatalog());
    expect(report.issues.map((i) => [i.path, i.message])).toEqual([['tenants[0].host_slice', 'host_slice 10.81.0.0/30 of tenant "acme" has room for 2 instances but the pools ask for 3']]);
    expect(hostSliceProblem({ tenant_id: 'acme', ipv4_subnet: '10.81.0.0/24' }, 1000)).toBeNull();
  });
});
