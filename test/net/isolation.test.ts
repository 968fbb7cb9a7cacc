import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.ts';
import type { InstanceSpec } from '../../src/driver/vmm-driver.ts';
import { hostAddressRange } from '../../src/host/addressing.ts';
import { AddressAllocator } from '../../src/net/address-allocator.ts';
import { HostNetwork } from '../../src/net/host-network.ts';
import { readNetInputs, rulesetFor, storePathFor } from '../../src/net/net-inputs.ts';
import type { Ruleset } from '../../src/net/nft-ruleset.ts';
import { DesiredState } from '../../src/schemas/desired-state.ts';
import { formatIpv4 } from '../../src/schemas/ipv4.ts';
import { openStore } from '../../src/store/lmdb-store.ts';
import { builtinCatalog, CLI, REPO_ROOT } from '../helpers/fixtures.ts';
import { netDesiredState } from './net-fixture.ts';
import { assertTools, Lab, sh } from './netns.ts';

/**
 * Tenant isolation for real: a "host" network namespace with one bridge per tenant, one "VM"
 * namespace per instance joined to its bridge by a veth pair (the host end named as the
 * instance's tap, the VM end holding the address the allocator gave it), an "outside" namespace
 * on an uplink, and the generated ruleset applied with nft in the host namespace. Every check that
 * expects a failure has a positive twin, so a broken setup cannot pass as isolation.
 */

const CONTROL_PORT = 7070;
const INGRESS_BASE = 20_000;
const TENANT_PORT = 9000;
const GATEWAY_WS = 18789; // the gateway role's ingress target_port
const HOST_UPLINK = '192.0.2.1';
const OUTSIDE = '192.0.2.2';

const lab = new Lab();
let dataDir = '';
let hostNs = '';
let outsideNs = '';
let network: HostNetwork;
let ruleset: Ruleset;
const vm: Record<string, { ns: string; ipv4: string }> = {};

beforeAll(async () => {
  await assertTools();
  const catalog = await builtinCatalog();
  dataDir = await mkdtemp(path.join(tmpdir(), 'mvm-net-iso-'));
  const desired = DesiredState.parse(netDesiredState());

  // Allocate as a host does: persisted in its store, read back by readNetInputs (and the CLI).
  const store = openStore({ path: storePathFor(dataDir), clock: systemClock });
  const allocator = new AddressAllocator(store);
  const specs: InstanceSpec[] = [];
  for (const tenant of desired.tenants) {
    for (const p of tenant.pools) {
      for (let n = 0; n < p.desired_counts.running; n++) {
        const id = `${tenant.tenant_id}-${p.pool_id}-${n}`;
        const identity = allocator.allocate(id, tenant, p.pool_id);
        specs.push({ instance_id: id, tenant_id: tenant.tenant_id, pool_id: p.pool_id, network: identity } as InstanceSpec);
      }
    }
  }
  store.putMeta('desired_state', { generation: desired.generation, document: desired });
  await store.close();

  ruleset = rulesetFor(await readNetInputs(dataDir, systemClock), catalog, { controlPorts: [CONTROL_PORT], ingressPortBase: INGRESS_BASE });
  hostNs = await lab.addNamespace('host');
  outsideNs = await lab.addNamespace('out');
  network = new HostNetwork({ netns: hostNs });
  await network.sync(desired.tenants, ruleset);

  for (const spec of specs) {
    const tenant = desired.tenants.find((t) => t.tenant_id === spec.tenant_id)!;
    const range = hostAddressRange(tenant);
    const ns = await lab.addNamespace(spec.instance_id.replace(/-/g, ''));
    await sh('ip', ['-n', hostNs, 'link', 'add', spec.network.tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await sh('ip', ['-n', ns, 'addr', 'add', `${spec.network.ipv4}/${range.subnet.prefix}`, 'dev', 'eth0']);
    await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', spec.network.mac, 'up']);
    await sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', formatIpv4(range.gateway)]);
    await network.ensureTap(spec);
    await network.ensureTap(spec); // idempotent
    vm[spec.instance_id] = { ns, ipv4: spec.network.ipv4 };
    await lab.serve(ns, spec.instance_id, [TENANT_PORT, GATEWAY_WS]);
  }

  await sh('ip', ['-n', hostNs, 'link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outsideNs]);
  await sh('ip', ['-n', hostNs, 'addr', 'add', `${HOST_UPLINK}/24`, 'dev', 'uplink']);
  await sh('ip', ['-n', hostNs, 'link', 'set', 'uplink', 'up']);
  await sh('ip', ['-n', outsideNs, 'addr', 'add', `${OUTSIDE}/24`, 'dev', 'eth0']);
  await sh('ip', ['-n', outsideNs, 'link', 'set', 'eth0', 'up']);
  await sh('ip', ['-n', outsideNs, 'route', 'add', 'default', 'via', HOST_UPLINK]);
  await lab.serve(hostNs, 'control', [CONTROL_PORT]);
  await lab.serve(outsideNs, 'internet', [8080]);
}, 60_000);

afterAll(async () => {
  await lab.cleanup();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('tenant isolation in network namespaces', () => {
  it('gave the VMs addresses from their tenant subnets, net ids above 255 included', () => {
    expect(vm['acme-gw-0']!.ipv4).toBe('10.81.0.2');
    expect(vm['acme-wk-0']!.ipv4).toBe('10.81.0.3');
    expect(vm['bravo-gw-0']!.ipv4).toBe('10.82.0.2');
  });

  it('within a tenant: ping and TCP connect succeed', async () => {
    expect(await lab.ping(vm['acme-wk-0']!.ns, vm['acme-gw-0']!.ipv4)).toBe(true);
    expect(await lab.connect(vm['acme-wk-0']!.ns, vm['acme-gw-0']!.ipv4, TENANT_PORT)).toBe('acme-gw-0:9000');
    expect(await lab.connect(vm['acme-gw-0']!.ns, vm['acme-wk-0']!.ipv4, GATEWAY_WS)).toBe('acme-wk-0:18789');
  });

  it('across tenants: ping and TCP connect fail in both directions', async () => {
    expect(await lab.ping(vm['acme-wk-0']!.ns, vm['bravo-gw-0']!.ipv4)).toBe(false);
    expect(await lab.ping(vm['bravo-gw-0']!.ns, vm['acme-gw-0']!.ipv4)).toBe(false);
    expect(await lab.connect(vm['acme-wk-0']!.ns, vm['bravo-gw-0']!.ipv4, TENANT_PORT)).toBeNull();
    expect(await lab.connect(vm['bravo-gw-0']!.ns, vm['acme-gw-0']!.ipv4, TENANT_PORT)).toBeNull();
    expect(await lab.connect(vm['bravo-gw-0']!.ns, vm['acme-wk-0']!.ipv4, GATEWAY_WS)).toBeNull();
    // Nor through the other tenant's gateway address on the host.
    expect(await lab.ping(vm['bravo-gw-0']!.ns, '10.81.0.1')).toBe(false);
  });

  it('egress: a guest reaches the outside, masqueraded behind the host', async () => {
    expect(await lab.connect(vm['bravo-gw-0']!.ns, OUTSIDE, 8080)).toBe('internet:8080');
    expect(await lab.ping(vm['acme-gw-0']!.ns, OUTSIDE)).toBe(true);
  });

  it('ingress: reachable from outside only where the role allows it and the pool enables it', async () => {
    // acme's gateway pool enables ingress: host port base + tenant_net_id (7) reaches gateway-ws.
    expect(await lab.connect(outsideNs, HOST_UPLINK, INGRESS_BASE + 7)).toBe('acme-gw-0:18789');
    // bravo's gateway keeps the role default (off): no way in on its port.
    expect(await lab.connect(outsideNs, HOST_UPLINK, INGRESS_BASE + 300)).toBeNull();
    // Routed straight at a guest, without the ingress DNAT: dropped, even for acme's gateway.
    expect(await lab.connect(outsideNs, vm['acme-gw-0']!.ipv4, GATEWAY_WS)).toBeNull();
    expect(await lab.connect(outsideNs, vm['acme-wk-0']!.ipv4, TENANT_PORT)).toBeNull();
    expect(await lab.connect(outsideNs, vm['bravo-gw-0']!.ipv4, GATEWAY_WS)).toBeNull();
  });

  it("a guest cannot reach the host's control port on any host address, and may ping only its own gateway", async () => {
    expect(await lab.connect(outsideNs, HOST_UPLINK, CONTROL_PORT)).toBe('control:7070'); // it listens
    for (const address of ['10.81.0.1', '10.82.0.1', HOST_UPLINK]) {
      expect(await lab.connect(vm['acme-gw-0']!.ns, address, CONTROL_PORT)).toBeNull();
    }
    expect(await lab.connect(vm['bravo-gw-0']!.ns, '10.82.0.1', CONTROL_PORT)).toBeNull();
    expect(await lab.ping(vm['acme-gw-0']!.ns, '10.81.0.1')).toBe(true);
    expect(await lab.ping(vm['bravo-gw-0']!.ns, '10.82.0.1')).toBe(true);
  });

  it('net verify: the live table matches, a tampered one is reported difference by difference, apply restores it', async () => {
    expect(await network.verify(ruleset)).toEqual({ ok: true, differences: [] });
    await sh('ip', ['netns', 'exec', hostNs, 'nft', 'add', 'rule', 'inet', 'mvm', 'from_t7', 'accept']);
    await sh('ip', ['netns', 'exec', hostNs, 'nft', 'delete', 'element', 'inet', 'mvm', 'tenant_bridges', '{ "mvbr300" }']);
    const drift = await network.verify(ruleset);
    expect(drift.ok).toBe(false);
    expect(drift.differences).toEqual([
      { where: 'set tenant_bridges', kind: 'missing', detail: 'element "mvbr300"' },
      expect.objectContaining({ where: 'chain from_t7', kind: 'unexpected' }),
    ]);

    const cli = (...args: string[]) => execa('ip', ['netns', 'exec', hostNs, 'node', CLI, 'net', ...args, '--data-dir', dataDir], { cwd: REPO_ROOT, reject: false });
    const verify = await cli('verify');
    expect(verify.exitCode).toBe(1);
    expect(verify.stdout).toContain('2 differences');
    expect(verify.stdout).toMatch(/missing\s+set tenant_bridges: element "mvbr300"/);
    const json = await cli('verify', '--json');
    expect(JSON.parse(json.stdout).differences).toHaveLength(2);

    const apply = await cli('apply');
    expect(apply.exitCode, apply.stderr).toBe(0);
    const again = await cli('verify');
    expect(again.exitCode, again.stdout).toBe(0);
    // Restored for real: bravo's bridge is a tenant bridge again, so acme cannot reach it.
    expect(await lab.connect(vm['acme-wk-0']!.ns, vm['bravo-gw-0']!.ipv4, TENANT_PORT)).toBeNull();
  });

  it('net verify reports a missing table', async () => {
    await sh('ip', ['netns', 'exec', hostNs, 'nft', 'delete', 'table', 'inet', 'mvm']);
    const result = await network.verify(ruleset);
    expect(result.differences).toEqual([{ where: 'table', kind: 'missing', detail: 'the table is not loaded; run `mvm-actors net apply`' }]);
    await network.apply(ruleset);
    expect((await network.verify(ruleset)).ok).toBe(true);
  });

  it('removes taps and bridges idempotently', async () => {
    const spec = { instance_id: 'x', tenant_id: 'acme', network: { tap: 'mv7-200', ipv4: '10.81.0.200', mac: '02:07:0a:51:00:c8', vsock_cid: 99 } } as InstanceSpec;
    await network.ensureTap(spec);
    const links = await sh('ip', ['-n', hostNs, '-j', 'link', 'show', 'master', 'mvbr7']);
    expect(JSON.parse(links).map((l: { ifname: string }) => l.ifname)).toContain('mv7-200');
    await network.removeTap(spec);
    await network.removeTap(spec);
    expect(await sh('ip', ['-n', hostNs, '-j', 'link', 'show', 'master', 'mvbr7'])).not.toContain('mv7-200');
  });
});
