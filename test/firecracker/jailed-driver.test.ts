import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.ts';
import type { InstanceSpec, OpContext } from '../../src/driver/vmm-driver.ts';
import { CPU_PERIOD_US, DEFAULT_JAIL_ID_BASE, VMM_MEMORY_OVERHEAD_MIB } from '../../src/firecracker/jailer.ts';
import { connectGuestAgent } from '../../src/vsock/host-client.ts';
import { describeDriverContract } from '../driver/driver-contract.ts';
import { type FakeRig, agentSpec, makeFakeRig } from './fake-harness.ts';

/**
 * The Firecracker driver with a jailer configured, against the fake jailer (test/firecracker/
 * fake-jailer-main.ts), which parses the real jailer's command line, checks the chroot, really
 * drops to the instance's uid/gid (these tests run as root, as CI does) and runs the fake
 * Firecracker with every API path resolved under the chroot. The same contract suite as the
 * unjailed driver, then what the jail itself must get right.
 */

const rigs: FakeRig[] = [];
function rig(): FakeRig {
  const r = makeFakeRig({ jailed: true });
  rigs.push(r);
  return r;
}
async function cleanupAll(): Promise<void> {
  for (const r of rigs.splice(0)) await r.cleanup();
}

interface JailStart {
  id: string;
  chroot: string;
  uid: number;
  gid: number;
  cgroups: Record<string, string>;
  vmm_pid: number;
  api_sock: string;
}
const jailStarts = (r: FakeRig): JailStart[] =>
  readFileSync(r.jail!.log, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as JailStart);

const ctx = (): OpContext => ({ signal: new AbortController().signal, deadline: systemClock.now() + 30_000 });
const putBodies = (r: FakeRig, from = 0) => r.calls().slice(from).filter((c) => c.method === 'PUT');
const body = (r: FakeRig, p: string, from = 0) => putBodies(r, from).find((c) => c.path === p)!.body as Record<string, unknown>;
const uidOf = (pid: number): number => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

describeDriverContract('the Firecracker driver under the jailer (fake jailer, fake Firecracker)', () => {
  const r = rig();
  return { driver: r.driver, clock: systemClock, spec: agentSpec, cleanup: cleanupAll };
});

describe('the Firecracker driver under the jailer', () => {
  afterEach(cleanupAll);

  it('boots through the jailer: its own uid/gid, cgroup v2 limits from the pool, every API path inside the chroot', async () => {
    const r = rig();
    const spec = agentSpec('jail-boot');
    await r.driver.prepareDrives(spec, ctx());
    await r.driver.boot(spec, ctx());

    const [start] = jailStarts(r);
    const chroot = path.join(r.jail!.chrootBase, 'firecracker', 'jail-boot', 'root');
    const id = DEFAULT_JAIL_ID_BASE + spec.network.vsock_cid;
    expect(start).toMatchObject({ id: 'jail-boot', chroot, uid: id, gid: id, api_sock: path.join(chroot, 'run', 'firecracker.socket') });
    expect(start!.cgroups).toEqual({ 'cpu.max': `${spec.resources.vcpus * CPU_PERIOD_US} ${CPU_PERIOD_US}`, 'memory.max': String((spec.resources.mem_mib + VMM_MEMORY_OVERHEAD_MIB) * 1024 * 1024) });
    // The VMM really runs as the instance's uid.
    expect(uidOf(start!.vmm_pid)).toBe(id);

    expect(body(r, '/boot-source')).toMatchObject({ kernel_image_path: '/kernel' });
    expect(String(body(r, '/boot-source').boot_args)).toContain('ip=10.200.0.2::10.200.0.1:255.255.255.0::eth0:off');
    expect(body(r, '/drives/rootfs')).toMatchObject({ path_on_host: '/rootfs.ext4', is_root_device: true });
    expect(body(r, '/drives/data')).toMatchObject({ path_on_host: '/drives/data.ext4', cache_type: 'Writeback' });
    expect(body(r, '/drives/secrets')).toMatchObject({ path_on_host: '/drives/secrets.ext4' });
    expect(body(r, '/drives/config')).toMatchObject({ path_on_host: '/drives/config.ext4' });
    expect(body(r, '/vsock')).toEqual({ guest_cid: spec.network.vsock_cid, uds_path: '/run/v.sock' });
    expect(putBodies(r).every((c) => c.status === 204)).toBe(true);

    // The data image in the jail is the driver's own file (a hard link), now owned by the instance.
    const vmDir = r.driver.vmDir('jail-boot');
    const outside = statSync(path.join(vmDir, 'drives', 'data.ext4'));
    const inside = statSync(path.join(chroot, 'drives', 'data.ext4'));
    expect([inside.ino, inside.dev]).toEqual([outside.ino, outside.dev]);
    expect(inside.uid).toBe(id);
    // The secrets image is gone once the guest runs, in the jail too.
    expect(existsSync(path.join(chroot, 'drives', 'secrets.ext4'))).toBe(false);
    expect(existsSync(path.join(vmDir, 'drives', 'secrets.ext4'))).toBe(false);

    // The guest read its config and secrets through the chroot: the agent answers on the jail's vsock socket.
    const agent = await connectGuestAgent({ udsPath: path.join(chroot, 'run', 'v.sock'), port: 5000, instanceId: 'jail-boot', clock: systemClock });
    expect(await agent.request('ping', {})).toMatchObject({ pong: true, instance_id: 'jail-boot' });
    agent.close();
  });

  it('sleeps and wakes through the jail: snapshot files written inside it, kept outside it, linked back in for the load', async () => {
    const r = rig();
    const spec = agentSpec('jail-sleep');
    await r.driver.prepareDrives(spec, ctx());
    await r.driver.boot(spec, ctx());
    const chroot = path.join(r.jail!.chrootBase, 'firecracker', 'jail-sleep', 'root');
    const vmDir = r.driver.vmDir('jail-sleep');
    await r.driver.drain('jail-sleep', ctx());
    const from = r.calls().length;
    const ref = await r.driver.snapshot(spec, ctx());
    expect(r.calls().slice(from).map((c) => `${c.method} ${c.path}`)).toEqual(['GET /', 'PATCH /vm', 'PUT /snapshot/create']);
    expect(r.calls().at(-1)!.body).toEqual({ snapshot_type: 'Full', snapshot_path: '/snapshot/vmstate', mem_file_path: '/snapshot/memory' });
    // Out of the jail (the jailed uid cannot touch what commits the sleep), and the process is gone.
    expect(existsSync(path.join(vmDir, 'snapshot', 'vmstate'))).toBe(true);
    expect(existsSync(path.join(vmDir, 'snapshot', 'memory'))).toBe(true);
    expect(existsSync(path.join(chroot, 'snapshot', 'vmstate'))).toBe(false);
    expect(r.driver.pidOf('jail-sleep')).toBeNull();
    expect(await r.driver.describe()).toEqual([{ instance_id: 'jail-sleep', state: 'stopped', snapshot: ref }]);

    const woken: InstanceSpec = { ...spec, revision: { ...spec.revision, secrets_epoch: 9 } };
    await r.driver.prepareDrives(woken, ctx());
    const wakeFrom = r.calls().length;
    await r.driver.restore(woken, ref, ctx());
    expect(putBodies(r, wakeFrom).map((c) => c.path)).toEqual(['/snapshot/load']);
    expect(body(r, '/snapshot/load', wakeFrom)).toEqual({
      snapshot_path: '/snapshot/vmstate',
      mem_backend: { backend_type: 'File', backend_path: '/snapshot/memory' },
      track_dirty_pages: false,
      resume_vm: true,
      network_overrides: [{ iface_id: 'eth0', host_dev_name: spec.network.tap }],
      vsock_override: { uds_path: '/run/v.sock' },
    });
    expect(jailStarts(r).map((s) => s.id)).toEqual(['jail-sleep', 'jail-sleep']);
    expect(existsSync(path.join(chroot, 'drives', 'secrets.ext4'))).toBe(false);
    const agent = await connectGuestAgent({ udsPath: path.join(chroot, 'run', 'v.sock'), port: 5000, instanceId: 'jail-sleep', clock: systemClock });
    expect(agent.hello.secrets_epoch).toBe(9);
    agent.close();
    expect(await r.driver.describe()).toEqual([{ instance_id: 'jail-sleep', state: 'running', snapshot: null }]);

    // Destroy takes the whole jail with it.
    await r.driver.destroy('jail-sleep', ctx());
    expect(existsSync(path.dirname(chroot))).toBe(false);
    expect(existsSync(vmDir)).toBe(false);
  });
});
