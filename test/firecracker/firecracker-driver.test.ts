import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.ts';
import { FirecrackerRefusal } from '../../src/driver/firecracker/firecracker-driver.ts';
import { readProcStat } from '../../src/driver/sim/proc.ts';
import { DriverError, type InstanceSpec, type OpContext, type VmExit } from '../../src/driver/vmm-driver.ts';
import { connectGuestAgent } from '../../src/vsock/host-client.ts';
import { describeDriverContract } from '../driver/driver-contract.ts';
import { type FakeRig, agentSpec, makeFakeRig } from './fake-harness.ts';

/**
 * The Firecracker driver against the fake Firecracker, started as a real child process in place
 * of the `firecracker` binary (real Unix sockets, real ext4 images, the real guest agent behind
 * the fake's vsock device). Every test kills the processes it may have left.
 */

const rigs: FakeRig[] = [];
function rig(): FakeRig {
  const r = makeFakeRig();
  rigs.push(r);
  return r;
}
async function cleanupAll(): Promise<void> {
  for (const r of rigs.splice(0)) await r.cleanup();
}

describeDriverContract('the Firecracker driver (against the fake Firecracker)', () => {
  const r = rig();
  // No readDrive: this driver deletes the secrets image as soon as the VM runs (by design), so the
  // contract's "ephemeral drive readable while running" does not apply; drive contents are checked below.
  return { driver: r.driver, clock: systemClock, spec: agentSpec, cleanup: cleanupAll };
});

const ctx = (): OpContext => ({ signal: new AbortController().signal, deadline: systemClock.now() + 30_000 });
const rejection = async (call: Promise<unknown>): Promise<DriverError> => {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DriverError);
  return error as DriverError;
};
/** The configuring calls (GET / polls left out), as "METHOD path". */
const configCalls = (r: FakeRig, from = 0) =>
  r
    .calls()
    .slice(from)
    .filter((c) => c.method !== 'GET')
    .map((c) => `${c.method} ${c.path}`);

async function up(r: FakeRig, spec: InstanceSpec): Promise<void> {
  await r.driver.prepareDrives(spec, ctx());
  await r.driver.boot(spec, ctx());
}

function alive(pid: number): boolean {
  const s = readProcStat(pid);
  return s !== null && s.state !== 'Z';
}

async function until(what: string, done: () => boolean, ms = 10_000): Promise<void> {
  const giveUpAt = Date.now() + ms;
  while (!done()) {
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('the Firecracker driver', () => {
  afterEach(cleanupAll);

  it('boots with the documented call order, the design drive order and the static IP, then deletes the secrets image', async () => {
    const r = rig();
    const spec = agentSpec('fc-boot');
    await up(r, spec);
    expect(configCalls(r)).toEqual([
      'PUT /machine-config',
      'PUT /boot-source',
      'PUT /drives/rootfs',
      'PUT /drives/data',
      'PUT /drives/secrets',
      'PUT /drives/config',
      'PUT /network-interfaces/eth0',
      'PUT /vsock',
      'PUT /actions',
    ]);
    const calls = r.calls().filter((c) => c.method === 'PUT');
    expect(calls.every((c) => c.status === 204)).toBe(true);
    const body = (p: string) => calls.find((c) => c.path === p)!.body as Record<string, unknown>;
    expect(body('/machine-config')).toMatchObject({ vcpu_count: 1, mem_size_mib: 256, track_dirty_pages: false });
    expect(String(body('/boot-source').boot_args)).toContain('ip=10.200.0.2::10.200.0.1:255.255.255.0::eth0:off');
    expect(body('/drives/rootfs')).toMatchObject({ is_root_device: true, is_read_only: true });
    expect(body('/drives/data')).toMatchObject({ is_read_only: false, cache_type: 'Writeback' });
    expect(body('/drives/secrets')).toMatchObject({ is_read_only: true });
    expect(body('/network-interfaces/eth0')).toEqual({ iface_id: 'eth0', host_dev_name: spec.network.tap, guest_mac: spec.network.mac });
    expect(body('/vsock')).toMatchObject({ guest_cid: spec.network.vsock_cid });
    expect(body('/actions')).toEqual({ action_type: 'InstanceStart' });

    const vmDir = r.driver.vmDir('fc-boot');
    expect(existsSync(path.join(vmDir, 'drives', 'secrets.ext4'))).toBe(false);
    expect(existsSync(path.join(vmDir, 'drives', 'data.ext4'))).toBe(true);
    expect(existsSync(path.join(vmDir, 'drives', 'config.ext4'))).toBe(true);
    // No secret value is ever written outside the (deleted) secrets image.
    expect(readFileSync(path.join(vmDir, 'runtime.json'), 'utf8')).not.toContain('contract-secret');
    // The guest saw its secrets and config: the agent answers over vsock with the instance's identity.
    const agent = await connectGuestAgent({ udsPath: path.join(vmDir, 'v.sock'), port: 5000, instanceId: 'fc-boot', clock: systemClock });
    expect(agent.hello.instance_id).toBe('fc-boot');
    expect(await agent.request('ping', {})).toMatchObject({ pong: true, instance_id: 'fc-boot' });
    agent.close();
  });

  it('warms with PATCH /vm Paused and Resumed', async () => {
    const r = rig();
    await up(r, agentSpec('fc-warm'));
    const from = r.calls().length;
    await r.driver.pause('fc-warm', ctx());
    expect((await r.driver.describe()).find((vm) => vm.instance_id === 'fc-warm')?.state).toBe('paused');
    await r.driver.resume('fc-warm', ctx());
    expect(configCalls(r, from)).toEqual(['PATCH /vm', 'PATCH /vm']);
    expect(r.calls().filter((c) => c.method === 'PATCH').map((c) => c.body)).toEqual([{ state: 'Paused' }, { state: 'Resumed' }]);
  });

  it('sleeps (drain over vsock, pause, full snapshot, process stopped, data kept) and wakes (load with overrides, resume, post-restore)', async () => {
    const r = rig();
    const spec = agentSpec('fc-sleep');
    await up(r, spec);
    const pid = r.driver.pidOf('fc-sleep')!;
    const vmDir = r.driver.vmDir('fc-sleep');
    await r.driver.drain('fc-sleep', ctx());
    const from = r.calls().length;
    const ref = await r.driver.snapshot(spec, ctx());
    expect(ref).toMatchObject({ artifacts: 'bundle-a', manifest_hash: spec.manifest_hash });
    expect(r.calls().slice(from).map((c) => `${c.method} ${c.path}`)).toEqual(['GET /', 'PATCH /vm', 'PUT /snapshot/create']);
    expect(r.calls().at(-1)!.body).toEqual({ snapshot_type: 'Full', snapshot_path: path.join(vmDir, 'snapshot', 'vmstate'), mem_file_path: path.join(vmDir, 'snapshot', 'memory') });
    expect(alive(pid)).toBe(false);
    const record = JSON.parse(readFileSync(path.join(vmDir, 'snapshot', 'snapshot.json'), 'utf8')) as Record<string, unknown>;
    expect(record).toMatchObject({ snapshot_id: ref.snapshot_id, artifacts: 'bundle-a', bundle_hash: r.bundles.get('bundle-a')!.hash, manifest_hash: spec.manifest_hash, snapshot_type: 'Full' });
    expect(existsSync(path.join(vmDir, 'drives', 'data.ext4'))).toBe(true);
    expect(await r.driver.describe()).toEqual([{ instance_id: 'fc-sleep', state: 'stopped', snapshot: ref }]);
    // Asked again (an actor re-invoked after a restart): the same snapshot, no new call.
    const calls = r.calls().length;
    expect(await r.driver.snapshot(spec, ctx())).toEqual(ref);
    expect(r.calls().length).toBe(calls);

    // Wake with a new secrets epoch: the guest agent must hear it in its post-restore step.
    const woken: InstanceSpec = { ...spec, revision: { ...spec.revision, secrets_epoch: 7 } };
    await r.driver.prepareDrives(woken, ctx());
    const wakeFrom = r.calls().length;
    await r.driver.restore(woken, ref, ctx());
    expect(configCalls(r, wakeFrom)).toEqual(['PUT /snapshot/load']);
    expect(r.calls().find((c) => c.path === '/snapshot/load')!.body).toEqual({
      snapshot_path: path.join(vmDir, 'snapshot', 'vmstate'),
      mem_backend: { backend_type: 'File', backend_path: path.join(vmDir, 'snapshot', 'memory') },
      track_dirty_pages: false,
      resume_vm: true,
      network_overrides: [{ iface_id: 'eth0', host_dev_name: spec.network.tap }],
      vsock_override: { uds_path: path.join(vmDir, 'v.sock') },
    });
    expect(r.driver.pidOf('fc-sleep')).not.toBe(pid);
    expect(existsSync(path.join(vmDir, 'drives', 'secrets.ext4'))).toBe(false);
    const agent = await connectGuestAgent({ udsPath: path.join(vmDir, 'v.sock'), port: 5000, instanceId: 'fc-sleep', clock: systemClock });
    expect(agent.hello.secrets_epoch).toBe(7);
    agent.close();
    expect(await r.driver.describe()).toEqual([{ instance_id: 'fc-sleep', state: 'running', snapshot: null }]);
    // Waking again is a no-op on a running VM.
    await r.driver.restore(woken, ref, ctx());
    expect(configCalls(r, wakeFrom)).toEqual(['PUT /snapshot/load']);
  });

  it('refuses a wake when the bundle name now points at other content, and keeps the snapshot', async () => {
    const r = rig();
    const spec = agentSpec('fc-rebundle');
    await up(r, spec);
    const ref = await r.driver.snapshot(spec, ctx());
    r.bundles.set('bundle-a', { ...r.bundles.get('bundle-a')!, hash: `sha256:${'c'.repeat(64)}` });
    await r.driver.prepareDrives(spec, ctx());
    const error = await rejection(r.driver.restore(spec, ref, ctx()));
    expect(error).toMatchObject({ code: 'snapshot-mismatch', retryable: false });
    expect(error.message).toContain(`sha256:${'c'.repeat(64)}`);
    expect((await r.driver.describe())[0]).toMatchObject({ state: 'stopped', snapshot: ref });
  });

  it('surfaces a Firecracker refusal as a typed, non-retryable error with its fault message, and leaves no process behind', async () => {
    const r = rig();
    const spec = agentSpec('fc-refused');
    // A kernel that is not there: Firecracker refuses the boot source.
    r.bundles.set('bundle-a', { ...r.bundles.get('bundle-a')!, kernel: path.join(r.dir, 'no-such-vmlinux') });
    await r.driver.prepareDrives(spec, ctx());
    const error = await rejection(r.driver.boot(spec, ctx()));
    expect(error).toBeInstanceOf(FirecrackerRefusal);
    expect(error).toMatchObject({ code: 'vmm-refused', retryable: false });
    expect((error as FirecrackerRefusal).api).toMatchObject({ status: 400, method: 'PUT', path: '/boot-source' });
    expect((error as FirecrackerRefusal).api.faultMessage).toContain('no-such-vmlinux');
    expect(r.driver.pidOf('fc-refused')).toBeNull();
    expect(await r.driver.describe()).toEqual([{ instance_id: 'fc-refused', state: 'stopped', snapshot: null }]);
  });

  it('refuses to boot a bundle that carries another manifest than the pool role', async () => {
    const r = rig();
    const spec: InstanceSpec = { ...agentSpec('fc-wrongbundle'), revision: { artifacts: 'bundle-b', config_version: 1, secrets_epoch: 1 } };
    await r.driver.prepareDrives(spec, ctx());
    expect(await rejection(r.driver.boot(spec, ctx()))).toMatchObject({ code: 'bundle-mismatch', retryable: false });
    expect(configCalls(r)).toEqual([]);
  });

  it('a restarted control plane adopts the running VM by its pid file and does not boot it twice', async () => {
    const r = rig();
    const spec = agentSpec('fc-adopt');
    await up(r, spec);
    const pid = r.driver.pidOf('fc-adopt');
    r.driver.close();
    const second = r.newDriver();
    expect(await second.describe()).toEqual([{ instance_id: 'fc-adopt', state: 'running', snapshot: null }]);
    expect(second.pidOf('fc-adopt')).toBe(pid);
    const before = configCalls(r).length;
    await second.prepareDrives(spec, ctx());
    await second.boot(spec, ctx());
    expect(configCalls(r).length).toBe(before);
    // The adopted VM is watched: its death is reported by the new driver.
    const exits: VmExit[] = [];
    second.onExit((exit) => exits.push(exit));
    process.kill(pid!, 'SIGKILL');
    await until('the adopted exit report', () => exits.length > 0);
    expect(exits).toEqual([{ instance_id: 'fc-adopt', reason: 'exited (adopted VM; exit status unknown)' }]);
  });

  it('reports an unexpected exit of a Firecracker process it started, and not the exits it caused', async () => {
    const r = rig();
    const exits: VmExit[] = [];
    r.driver.onExit((exit) => exits.push(exit));
    await up(r, agentSpec('fc-crash'));
    await up(r, agentSpec('fc-calm'));
    await r.driver.stop('fc-calm', ctx());
    process.kill(r.driver.pidOf('fc-crash')!, 'SIGKILL');
    await until('the exit report', () => exits.length > 0);
    expect(exits).toEqual([{ instance_id: 'fc-crash', reason: 'SIGKILL' }]);
    expect((await r.driver.describe()).map((vm) => [vm.instance_id, vm.state])).toEqual([
      ['fc-calm', 'stopped'],
      ['fc-crash', 'stopped'],
    ]);
    // Booting again after the crash starts a fresh process.
    await r.driver.boot(agentSpec('fc-crash'), ctx());
    expect((await r.driver.describe()).find((vm) => vm.instance_id === 'fc-crash')?.state).toBe('running');
  });
});
