import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { createFakeDriver, type FakeDriverOptions } from '../../src/driver/fake-driver.ts';
import { DriverError, type DriverOp, type InstanceSpec, type OpContext, type SnapshotRef, type VmExit } from '../../src/driver/vmm-driver.ts';
import type { ServiceSpec } from '../../src/schemas/role-manifest.ts';
import { describeDriverContract } from './driver-contract.ts';

describeDriverContract('the fake driver', () => {
  const clock = new SimulatedClock();
  const fake = createFakeDriver({ clock });
  return { driver: fake, clock, readDrive: (id, drive) => fake.drive(id, drive)?.files };
});

// --- helpers ---

const MANIFEST_A = `sha256:${'1'.repeat(64)}`;
const MANIFEST_B = `sha256:${'2'.repeat(64)}`;

/** A valid spec with a persistent data drive, an ephemeral secrets drive and a versioned config drive. */
function aSpec(id: string, change: (spec: InstanceSpec) => void = () => {}): InstanceSpec {
  const spec: InstanceSpec = {
    instance_id: id,
    tenant_id: 'acme',
    pool_id: 'main',
    role: 'test-role',
    profile: 'base',
    revision: { artifacts: 'bundle-1', config_version: 3, secrets_epoch: 2 },
    resources: { vcpus: 2, mem_mib: 512, data_disk_mib: 1024 },
    network: { ipv4: '10.101.0.2', mac: '06:00:0a:65:00:02', tap: 'tap-acme-1', vsock_cid: 3 },
    drives: [
      { name: 'data', device: 'vdb', mount: '/data', label: 'mvm-data', read_only: false, persistence: 'persistent', size_mib: 1024, files: {} },
      { name: 'secrets', device: 'vdc', mount: '/run/secrets', label: 'mvm-secrets', read_only: true, persistence: 'ephemeral', size_mib: 1, files: { 'api-token': 's3cret' } },
      { name: 'config', device: 'vdd', mount: '/etc/mvm-config', label: 'mvm-config', read_only: true, persistence: 'versioned', size_mib: 1, files: { 'app.json': '{"version":3}' } },
    ],
    manifest_hash: MANIFEST_A,
    vsock: { agent_port: 5000, handlers: ['ping', 'readiness'] },
  };
  change(spec);
  return spec;
}

function aService(name = 'api'): ServiceSpec {
  return { name, description: `the ${name} service`, program: name, args: [], ports: [], readiness: { kind: 'agent', timeout_s: 30, interval_s: 1 }, stop_timeout_s: 10 };
}

function setup(options: Omit<FakeDriverOptions, 'clock'> = {}) {
  const clock = new SimulatedClock();
  clock.set(1_000_000);
  const fake = createFakeDriver({ clock, ...options });
  /** A context that gives up `withinMs` after now. */
  const ctx = (withinMs = 60_000, signal: AbortSignal = new AbortController().signal): OpContext => ({ signal, deadline: clock.now() + withinMs });
  const running = async (id: string, spec = aSpec(id)) => {
    await fake.prepareDrives(spec, ctx());
    await fake.boot(spec, ctx());
    return spec;
  };
  return { clock, fake, ctx, running };
}

/** The DriverError a call rejected with (fails the test if it resolved or threw something else). */
async function rejection(call: Promise<unknown>): Promise<DriverError> {
  const outcome = await call.then(
    () => 'resolved' as const,
    (e: unknown) => e,
  );
  expect(outcome).toBeInstanceOf(DriverError);
  return outcome as DriverError;
}

/** Follows a promise without awaiting it, so a test can look at it while the clock stands still. */
function watch<T>(call: Promise<T>) {
  const seen: { status: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } = { status: 'pending' };
  call.then(
    (value) => Object.assign(seen, { status: 'resolved', value }),
    (error: unknown) => Object.assign(seen, { status: 'rejected', error }),
  );
  return seen;
}

/** Let every pending microtask run. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

// --- behaviour ---

describe('the fake driver runs a VM through its lifecycle', () => {
  it('boots a VM from its prepared drives and counts one boot', async () => {
    const { fake, running } = setup();
    await running('vm-1');
    expect(fake.vm('vm-1')).toMatchObject({ state: 'running', bootCount: 1, restoreCount: 0, drives: ['config', 'data', 'secrets'], snapshot: null });
    expect(fake.bootedInstances()).toEqual(['vm-1']);
  });

  it('pauses a running VM with its drives in place and resumes it', async () => {
    const { fake, ctx, running } = setup();
    await running('vm-1');
    await fake.pause('vm-1', ctx());
    expect(fake.vm('vm-1')).toMatchObject({ state: 'paused', drives: ['config', 'data', 'secrets'] });
    await fake.resume('vm-1', ctx());
    expect(fake.vm('vm-1')).toMatchObject({ state: 'running', bootCount: 1 });
  });

  it('snapshots to a stopped VM that keeps data and config, drops secrets, and ties the snapshot to its bundle and manifest', async () => {
    const { clock, fake, ctx, running } = setup();
    const spec = await running('vm-1');
    clock.increment(5_000);
    const ref = await fake.snapshot(spec, ctx());
    expect(ref).toEqual({ snapshot_id: 'snap-1', artifacts: 'bundle-1', manifest_hash: MANIFEST_A, created_at: clock.now() });
    expect(fake.vm('vm-1')).toMatchObject({ state: 'stopped', drives: ['config', 'data'], snapshot: ref });
    expect(fake.bootedInstances()).toEqual([]);
  });

  it('ties the snapshot to what the VM was booted with, not to the spec passed to snapshot', async () => {
    const { fake, ctx, running } = setup();
    await running('vm-1');
    const ref = await fake.snapshot(aSpec('vm-1', (s) => (s.manifest_hash = MANIFEST_B)), ctx());
    expect(ref.manifest_hash).toBe(MANIFEST_A);
  });

  it('restores from the snapshot once the secrets are prepared again, and the snapshot is used up', async () => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    const ref = await fake.snapshot(spec, ctx());
    await fake.prepareDrives(spec, ctx());
    await fake.restore(spec, ref, ctx());
    expect(fake.vm('vm-1')).toMatchObject({ state: 'running', bootCount: 1, restoreCount: 1, snapshot: null, drives: ['config', 'data', 'secrets'] });
  });

  it('refuses to boot or restore while a drive of the spec is not prepared', async () => {
    const { fake, ctx, running } = setup();
    expect(await rejection(fake.boot(aSpec('vm-new'), ctx()))).toMatchObject({ code: 'drives-missing', retryable: false });
    expect(fake.vm('vm-new').state).toBe('absent');

    const spec = await running('vm-1');
    const ref = await fake.snapshot(spec, ctx());
    const error = await rejection(fake.restore(spec, ref, ctx()));
    expect(error).toMatchObject({ code: 'drives-missing' });
    expect(error.message).toContain('secrets');
    expect(fake.vm('vm-1')).toMatchObject({ state: 'stopped', snapshot: ref });
  });

  it('keeps what the guest wrote to the data drive across stop, snapshot and restore, and loses it on destroy', async () => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    fake.guestWrite('vm-1', 'data', 'notes.txt', 'hello');
    await fake.stop('vm-1', ctx());
    expect(fake.drive('vm-1', 'data')?.files).toEqual({ 'notes.txt': 'hello' });
    await running('vm-1');
    const ref = await fake.snapshot(spec, ctx());
    await fake.prepareDrives(spec, ctx());
    await fake.restore(spec, ref, ctx());
    expect(fake.drive('vm-1', 'data')?.files).toEqual({ 'notes.txt': 'hello' });
    await fake.destroy('vm-1', ctx());
    expect(fake.drive('vm-1', 'data')).toBeUndefined();
    expect(fake.vm('vm-1')).toMatchObject({ state: 'absent', drives: [], bootCount: 0 });
  });

  it('rewrites the secrets and config drives on every prepare but keeps an existing data drive', async () => {
    const { fake, ctx, running } = setup();
    await running('vm-1');
    fake.guestWrite('vm-1', 'data', 'db', 'rows');
    const next = aSpec('vm-1', (s) => {
      s.revision = { ...s.revision, config_version: 4, secrets_epoch: 3 };
      s.drives = s.drives.map((d) => ({ ...d, files: { [`${d.name}-v4`]: 'new' } }));
    });
    await fake.prepareDrives(next, ctx());
    expect(fake.drive('vm-1', 'secrets')?.files).toEqual({ 'secrets-v4': 'new' });
    expect(fake.drive('vm-1', 'config')?.files).toEqual({ 'config-v4': 'new' });
    expect(fake.drive('vm-1', 'data')?.files).toEqual({ db: 'rows' });
  });

  it('keeps a disposable drive until destroy, like a persistent one', async () => {
    const { fake, ctx, running } = setup();
    const withScratch = (files: Record<string, string>) =>
      aSpec('vm-1', (s) => s.drives.push({ name: 'scratch', device: 'vde', mount: '/scratch', label: 'mvm-scratch', read_only: false, persistence: 'disposable', size_mib: 64, files }));
    await running('vm-1', withScratch({ 'job.json': 'first' }));
    await fake.stop('vm-1', ctx());
    await fake.prepareDrives(withScratch({ 'job.json': 'second' }), ctx());
    expect(fake.drive('vm-1', 'scratch')?.files).toEqual({ 'job.json': 'first' });
    await fake.destroy('vm-1', ctx());
    expect(fake.drive('vm-1', 'scratch')).toBeUndefined();
  });

  it('drops a stale snapshot when the VM is cold-booted instead of restored', async () => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    const ref = await fake.snapshot(spec, ctx());
    await running('vm-1');
    expect(fake.vm('vm-1')).toMatchObject({ state: 'running', bootCount: 2, snapshot: null });
    await fake.stop('vm-1', ctx());
    expect(await rejection(fake.restore(spec, ref, ctx()))).toMatchObject({ code: 'no-snapshot' });
  });

  it('does not let the guest write to a read-only drive or while it is not running', async () => {
    const { fake, ctx, running } = setup();
    await running('vm-1');
    expect(() => fake.guestWrite('vm-1', 'config', 'x', 'y')).toThrow(/read-only/);
    await fake.pause('vm-1', ctx());
    expect(() => fake.guestWrite('vm-1', 'data', 'x', 'y')).toThrow(/paused/);
    expect(fake.drive('vm-1', 'data')?.files).toEqual({});
  });
});

describe('every operation converges when repeated', () => {
  it('boot of a running or paused VM is left alone: still one boot', async () => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    await fake.boot(spec, ctx());
    expect(fake.vm('vm-1')).toMatchObject({ state: 'running', bootCount: 1 });
    await fake.pause('vm-1', ctx());
    await fake.boot(spec, ctx());
    expect(fake.vm('vm-1')).toMatchObject({ state: 'paused', bootCount: 1 });
  });

  it('prepareDrives twice leaves the same drives with the same contents', async () => {
    const { fake, ctx } = setup();
    const spec = aSpec('vm-1');
    await fake.prepareDrives(spec, ctx());
    const first = ['data', 'secrets', 'config'].map((d) => fake.drive('vm-1', d));
    await fake.prepareDrives(spec, ctx());
    expect(['data', 'secrets', 'config'].map((d) => fake.drive('vm-1', d))).toEqual(first);
    expect(first.map((d) => d?.files)).toEqual([{}, { 'api-token': 's3cret' }, { 'app.json': '{"version":3}' }]);
    expect(fake.vm('vm-1')).toMatchObject({ state: 'stopped', bootCount: 0 });
  });

  it('pause of a paused VM and resume of a running VM change nothing', async () => {
    const { fake, ctx, running } = setup();
    await running('vm-1');
    await fake.resume('vm-1', ctx());
    expect(fake.vm('vm-1').state).toBe('running');
    await fake.pause('vm-1', ctx());
    await fake.pause('vm-1', ctx());
    expect(fake.vm('vm-1').state).toBe('paused');
  });

  it('a second snapshot returns the snapshot already taken', async () => {
    const { clock, fake, ctx, running } = setup();
    const spec = await running('vm-1');
    const first = await fake.snapshot(spec, ctx());
    clock.increment(1_000);
    expect(await fake.snapshot(spec, ctx())).toEqual(first);
    expect(fake.vm('vm-1').snapshot).toEqual(first);
  });

  it('restore of a VM already running from its snapshot succeeds without restoring again', async () => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    const ref = await fake.snapshot(spec, ctx());
    await fake.prepareDrives(spec, ctx());
    await fake.restore(spec, ref, ctx());
    await fake.restore(spec, ref, ctx());
    expect(fake.vm('vm-1')).toMatchObject({ state: 'running', restoreCount: 1, bootCount: 1 });
  });

  it('stop and destroy of a VM the host never had succeed, twice, and create nothing', async () => {
    const { fake, ctx } = setup();
    await fake.stop('ghost', ctx());
    await fake.stop('ghost', ctx());
    await fake.destroy('ghost', ctx());
    await fake.destroy('ghost', ctx());
    expect(await fake.describe()).toEqual([]);
    expect(fake.vm('ghost').state).toBe('absent');
  });

  it('a runtime that re-invokes a whole boot sequence after a restart still has one VM', async () => {
    const { fake, ctx } = setup();
    const spec = aSpec('vm-1');
    const bootSequence = async () => {
      await fake.prepareDrives(spec, ctx());
      await fake.boot(spec, ctx());
      await fake.checkReadiness(spec, aService(), ctx());
    };
    await bootSequence();
    await bootSequence();
    expect(fake.vm('vm-1')).toMatchObject({ state: 'running', bootCount: 1, ready: ['api'] });
    expect(fake.bootedInstances()).toEqual(['vm-1']);
  });
});

describe('invalid operations are refused with typed errors', () => {
  it.each(['pause', 'resume', 'drain', 'snapshot'] as const)('%s of an absent or stopped VM is vm-missing, not retryable', async (op) => {
    const { fake, ctx, running } = setup();
    const call = (id: string) => (op === 'snapshot' ? fake.snapshot(aSpec(id), ctx()) : fake[op](id, ctx()));
    expect(await rejection(call('absent-vm'))).toMatchObject({ op, instanceId: 'absent-vm', code: 'vm-missing', retryable: false });
    await running('vm-1');
    await fake.stop('vm-1', ctx());
    expect(await rejection(call('vm-1'))).toMatchObject({ op, code: 'vm-missing', retryable: false });
    expect(fake.vm('vm-1')).toMatchObject({ state: 'stopped', snapshot: null });
  });

  it.each([
    ['bundle', (s: InstanceSpec) => (s.revision = { ...s.revision, artifacts: 'bundle-2' }), /bundle bundle-1, not bundle-2/],
    ['manifest', (s: InstanceSpec) => (s.manifest_hash = MANIFEST_B), /manifest sha256:1+, not sha256:2+/],
  ])('restore refuses a snapshot from another %s and keeps it', async (_what, change, message) => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    const ref = await fake.snapshot(spec, ctx());
    const upgraded = aSpec('vm-1', change);
    await fake.prepareDrives(upgraded, ctx());
    const error = await rejection(fake.restore(upgraded, ref, ctx()));
    expect(error).toMatchObject({ code: 'snapshot-mismatch', retryable: false });
    expect(error.message).toMatch(message);
    expect(fake.vm('vm-1')).toMatchObject({ state: 'stopped', snapshot: ref, restoreCount: 0 });
  });

  it('restore refuses a ref that claims another bundle than the snapshot on disk', async () => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    const ref = await fake.snapshot(spec, ctx());
    const upgraded = aSpec('vm-1', (s) => (s.revision = { ...s.revision, artifacts: 'bundle-2' }));
    await fake.prepareDrives(upgraded, ctx());
    const forged: SnapshotRef = { ...ref, artifacts: 'bundle-2' };
    expect(await rejection(fake.restore(upgraded, forged, ctx()))).toMatchObject({ code: 'snapshot-mismatch' });
    expect(fake.vm('vm-1').state).toBe('stopped');
  });

  it('restore without a recorded snapshot, or with one this host does not have, is no-snapshot', async () => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    await fake.stop('vm-1', ctx());
    const ref: SnapshotRef = { snapshot_id: 'snap-9', artifacts: 'bundle-1', manifest_hash: MANIFEST_A, created_at: 0 };
    await fake.prepareDrives(spec, ctx());
    expect(await rejection(fake.restore(spec, ref, ctx()))).toMatchObject({ code: 'no-snapshot', retryable: false });
    await running('vm-1');
    await fake.snapshot(spec, ctx());
    await fake.prepareDrives(spec, ctx());
    expect(await rejection(fake.restore(spec, ref, ctx()))).toMatchObject({ code: 'no-snapshot' });
    expect(fake.vm('vm-1').state).toBe('stopped');
  });

  it('drain of a paused VM is vm-paused: its guest agent cannot answer', async () => {
    const { fake, ctx, running } = setup();
    await running('vm-1');
    await fake.drain('vm-1', ctx());
    await fake.drain('vm-1', ctx());
    await fake.pause('vm-1', ctx());
    expect(await rejection(fake.drain('vm-1', ctx()))).toMatchObject({ code: 'vm-paused', retryable: false });
    expect(fake.vm('vm-1').state).toBe('paused');
  });

  it('a readiness probe of a stopped VM is vm-missing and of a paused VM is vm-paused', async () => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    await fake.pause('vm-1', ctx());
    expect(await rejection(fake.checkReadiness(spec, aService(), ctx()))).toMatchObject({ code: 'vm-paused', retryable: false });
    await fake.stop('vm-1', ctx());
    expect(await rejection(fake.checkReadiness(spec, aService(), ctx()))).toMatchObject({ code: 'vm-missing', retryable: false });
  });
});

describe('time comes from the injected clock', () => {
  it('without latency an operation completes without the clock moving', async () => {
    const { clock, fake, running } = setup();
    const before = clock.now();
    await running('vm-1');
    expect(clock.now()).toBe(before);
    expect(fake.vm('vm-1').state).toBe('running');
  });

  it('with latency an operation completes exactly that many clock milliseconds later, and not before', async () => {
    const { clock, fake, ctx } = setup({ latencyMs: { boot: 500 } });
    const spec = aSpec('vm-1');
    await fake.prepareDrives(spec, ctx());
    const boot = watch(fake.boot(spec, ctx()));
    clock.increment(499);
    await flush();
    expect(boot.status).toBe('pending');
    expect(fake.vm('vm-1').state).toBe('stopped');
    clock.increment(1);
    await flush();
    expect(boot.status).toBe('resolved');
    expect(fake.vm('vm-1').state).toBe('running');
  });

  it('meets a deadline that falls exactly at completion', async () => {
    const { clock, fake, ctx } = setup({ latencyMs: { prepareDrives: 300 } });
    const prepare = watch(fake.prepareDrives(aSpec('vm-1'), ctx(300)));
    clock.increment(300);
    await flush();
    expect(prepare.status).toBe('resolved');
  });

  it('rejects with a retryable deadline error at the deadline when the latency would pass it, and applies nothing', async () => {
    const { clock, fake, ctx } = setup({ latencyMs: { boot: 1_000 } });
    const spec = aSpec('vm-1');
    await fake.prepareDrives(spec, ctx());
    const boot = watch(fake.boot(spec, ctx(300)));
    clock.increment(299);
    await flush();
    expect(boot.status).toBe('pending');
    clock.increment(1);
    await flush();
    expect(boot).toMatchObject({ status: 'rejected', error: { code: 'deadline', retryable: true } });
    expect(boot.error).toBeInstanceOf(DriverError);
    clock.increment(5_000);
    await flush();
    expect(fake.vm('vm-1')).toMatchObject({ state: 'stopped', bootCount: 0 });
  });

  it('rejects at once when the deadline has already passed', async () => {
    const { fake, ctx } = setup();
    expect(await rejection(fake.prepareDrives(aSpec('vm-1'), ctx(-1)))).toMatchObject({ code: 'deadline', retryable: true });
    expect(fake.vm('vm-1').state).toBe('absent');
  });

  it('rejects with aborted when the signal is aborted while the operation runs, and applies nothing even after its latency', async () => {
    const { clock, fake, ctx, running } = setup({ latencyMs: { stop: 200 } });
    await running('vm-1');
    const controller = new AbortController();
    const stop = watch(fake.stop('vm-1', ctx(60_000, controller.signal)));
    clock.increment(100);
    controller.abort();
    await flush();
    expect(stop).toMatchObject({ status: 'rejected', error: { code: 'aborted', op: 'stop', instanceId: 'vm-1' } });
    clock.increment(1_000);
    await flush();
    expect(fake.vm('vm-1').state).toBe('running');
  });

  it('rejects with aborted without latency too, when aborted before the next microtask', async () => {
    const { fake, ctx } = setup();
    const controller = new AbortController();
    const prepare = fake.prepareDrives(aSpec('vm-1'), ctx(60_000, controller.signal));
    controller.abort();
    expect(await rejection(prepare)).toMatchObject({ code: 'aborted' });
    expect(fake.vm('vm-1').state).toBe('absent');
  });

  it('rejects at once with aborted when the signal was aborted before the call', async () => {
    const { fake, ctx } = setup();
    const controller = new AbortController();
    controller.abort();
    expect(await rejection(fake.prepareDrives(aSpec('vm-1'), ctx(60_000, controller.signal)))).toMatchObject({ code: 'aborted', retryable: false });
    expect(fake.vm('vm-1').state).toBe('absent');
  });

  it('checks validity when the operation completes, against the state at that moment', async () => {
    const { clock, fake, ctx, running } = setup({ latencyMs: { pause: 100 } });
    await running('vm-1');
    const pause = watch(fake.pause('vm-1', ctx()));
    await fake.stop('vm-1', ctx());
    clock.increment(100);
    await flush();
    expect(pause).toMatchObject({ status: 'rejected', error: { code: 'vm-missing' } });
  });
});

describe('faults can be injected', () => {
  it('failNext makes the next N matching calls fail with injected, then calls succeed', async () => {
    const { fake, ctx } = setup();
    const spec = aSpec('vm-1');
    await fake.prepareDrives(spec, ctx());
    fake.failNext('boot', { times: 2 });
    expect(await rejection(fake.boot(spec, ctx()))).toMatchObject({ code: 'injected', retryable: true });
    expect(await rejection(fake.boot(spec, ctx()))).toMatchObject({ code: 'injected' });
    expect(fake.vm('vm-1')).toMatchObject({ state: 'stopped', bootCount: 0 });
    await fake.boot(spec, ctx());
    expect(fake.vm('vm-1')).toMatchObject({ state: 'running', bootCount: 1 });
  });

  it('failNext can target one instance and carry its own code and retryability', async () => {
    const { fake, ctx, running } = setup();
    await running('vm-1');
    await running('vm-2');
    fake.failNext('pause', { instanceId: 'vm-2', code: 'firecracker-api', retryable: false });
    await fake.pause('vm-1', ctx());
    expect(await rejection(fake.pause('vm-2', ctx()))).toMatchObject({ op: 'pause', instanceId: 'vm-2', code: 'firecracker-api', retryable: false });
    expect(fake.vm('vm-2').state).toBe('running');
    await fake.pause('vm-2', ctx());
    expect(fake.vm('vm-2').state).toBe('paused');
  });

  it('failNext fails only calls of the named operation', async () => {
    const { fake, ctx, running } = setup();
    fake.failNext('destroy');
    await running('vm-1');
    await fake.stop('vm-1', ctx());
    expect(await rejection(fake.destroy('vm-1', ctx()))).toMatchObject({ code: 'injected' });
    expect(fake.vm('vm-1').state).toBe('stopped');
  });

  it('an injected failure arrives after the operation latency', async () => {
    const { clock, fake, ctx } = setup({ latencyMs: { prepareDrives: 50 } });
    fake.failNext('prepareDrives');
    const prepare = watch(fake.prepareDrives(aSpec('vm-1'), ctx()));
    await flush();
    expect(prepare.status).toBe('pending');
    clock.increment(50);
    await flush();
    expect(prepare).toMatchObject({ status: 'rejected', error: { code: 'injected' } });
  });

  it('crash stops a running VM, keeps its data, drops its secrets and tells every exit listener', async () => {
    const { fake, running } = setup();
    await running('vm-1');
    const heard: VmExit[] = [];
    const unheard: VmExit[] = [];
    fake.onExit((exit) => heard.push(exit));
    const unsubscribe = fake.onExit((exit) => unheard.push(exit));
    unsubscribe();
    fake.crash('vm-1', 'SIGSEGV');
    expect(heard).toEqual([{ instance_id: 'vm-1', reason: 'SIGSEGV' }]);
    expect(unheard).toEqual([]);
    expect(fake.vm('vm-1')).toMatchObject({ state: 'stopped', drives: ['config', 'data'] });
    expect(fake.bootedInstances()).toEqual([]);
  });

  it('a crashed VM boots again once its drives are prepared', async () => {
    const { fake, running } = setup();
    await running('vm-1');
    fake.crash('vm-1');
    await running('vm-1');
    expect(fake.vm('vm-1')).toMatchObject({ state: 'running', bootCount: 2 });
  });

  it('crash of a VM that is not up is a mistake in the test', async () => {
    const { fake, ctx } = setup();
    const heard: VmExit[] = [];
    fake.onExit((exit) => heard.push(exit));
    await fake.prepareDrives(aSpec('vm-1'), ctx());
    expect(() => fake.crash('vm-1')).toThrow(/cannot crash vm-1/);
    expect(heard).toEqual([]);
  });

  it('hang keeps a call pending until its deadline, then rejects it with deadline', async () => {
    const { clock, fake, ctx } = setup();
    const spec = aSpec('vm-1');
    await fake.prepareDrives(spec, ctx());
    fake.hang('boot');
    const boot = watch(fake.boot(spec, ctx(1_000)));
    clock.increment(999);
    await flush();
    expect(boot.status).toBe('pending');
    clock.increment(1);
    await flush();
    expect(boot).toMatchObject({ status: 'rejected', error: { code: 'deadline', retryable: true } });
    expect(fake.vm('vm-1').state).toBe('stopped');
  });

  it('hang keeps a call pending until it is aborted', async () => {
    const { clock, fake, ctx, running } = setup();
    await running('vm-1');
    fake.hang('snapshot', 'vm-1');
    const controller = new AbortController();
    const snapshot = watch(fake.snapshot(aSpec('vm-1'), ctx(10_000_000, controller.signal)));
    clock.increment(60_000);
    await flush();
    expect(snapshot.status).toBe('pending');
    controller.abort();
    await flush();
    expect(snapshot).toMatchObject({ status: 'rejected', error: { code: 'aborted' } });
    expect(fake.vm('vm-1')).toMatchObject({ state: 'running', snapshot: null });
  });

  it('hang for one instance leaves others alone, and lifting it lets later calls through', async () => {
    const { fake, ctx, running } = setup();
    await running('vm-1');
    await running('vm-2');
    const lift = fake.hang('stop', 'vm-1');
    await fake.stop('vm-2', ctx());
    const stuck = watch(fake.stop('vm-1', ctx()));
    await flush();
    expect(stuck.status).toBe('pending');
    lift();
    await fake.stop('vm-1', ctx());
    expect(fake.vm('vm-1').state).toBe('stopped');
    expect(fake.vm('vm-2').state).toBe('stopped');
  });

  it('clearFaults drops pending failNext and hang rules', async () => {
    const { fake, ctx } = setup();
    fake.failNext('prepareDrives', { times: 3 });
    fake.hang('boot');
    fake.clearFaults();
    const spec = aSpec('vm-1');
    await fake.prepareDrives(spec, ctx());
    await fake.boot(spec, ctx());
    expect(fake.vm('vm-1').state).toBe('running');
  });
});

describe('services become ready as configured', () => {
  it('a service is ready on the first probe after boot by default', async () => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    expect(fake.vm('vm-1').ready).toEqual([]);
    await fake.checkReadiness(spec, aService('api'), ctx());
    expect(fake.vm('vm-1').ready).toEqual(['api']);
  });

  it('setReadyAfterProbes answers not-ready, retryable, that many times first and then stays ready', async () => {
    const { fake, ctx, running } = setup();
    fake.setReadyAfterProbes('vm-1', 'api', 3);
    const spec = await running('vm-1');
    for (let probe = 1; probe <= 3; probe++) {
      expect(await rejection(fake.checkReadiness(spec, aService('api'), ctx()))).toMatchObject({ code: 'not-ready', retryable: true });
    }
    await fake.checkReadiness(spec, aService('api'), ctx());
    await fake.checkReadiness(spec, aService('api'), ctx());
    expect(fake.vm('vm-1').ready).toEqual(['api']);
  });

  it('only the named service of the named instance waits', async () => {
    const { fake, ctx, running } = setup();
    fake.setReadyAfterProbes('vm-1', 'api', 1);
    const one = await running('vm-1');
    const two = await running('vm-2');
    await fake.checkReadiness(one, aService('worker'), ctx());
    await fake.checkReadiness(two, aService('api'), ctx());
    expect(await rejection(fake.checkReadiness(one, aService('api'), ctx()))).toMatchObject({ code: 'not-ready' });
  });

  it('readiness starts over after a stop and a new boot', async () => {
    const { fake, ctx, running } = setup();
    fake.setReadyAfterProbes('vm-1', 'api', 1);
    const spec = await running('vm-1');
    await rejection(fake.checkReadiness(spec, aService('api'), ctx()));
    await fake.checkReadiness(spec, aService('api'), ctx());
    await fake.stop('vm-1', ctx());
    await running('vm-1');
    expect(fake.vm('vm-1').ready).toEqual([]);
    expect(await rejection(fake.checkReadiness(spec, aService('api'), ctx()))).toMatchObject({ code: 'not-ready' });
  });

  it('readiness starts over after a restore', async () => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    await fake.checkReadiness(spec, aService('api'), ctx());
    const ref = await fake.snapshot(spec, ctx());
    await fake.prepareDrives(spec, ctx());
    await fake.restore(spec, ref, ctx());
    expect(fake.vm('vm-1').ready).toEqual([]);
  });

  it('setNeverReady keeps the service not-ready however often it is probed', async () => {
    const { fake, ctx, running } = setup();
    fake.setNeverReady('vm-1', 'api');
    const spec = await running('vm-1');
    const codes: string[] = [];
    for (let probe = 0; probe < 20; probe++) codes.push((await rejection(fake.checkReadiness(spec, aService('api'), ctx()))).code);
    expect(new Set(codes)).toEqual(new Set(['not-ready']));
    expect(fake.vm('vm-1').ready).toEqual([]);
  });
});

describe('the fake can be observed', () => {
  it('logs every call with its instance and the clock time it was made', async () => {
    const { clock, fake, ctx } = setup();
    const spec = aSpec('vm-1');
    const start = clock.now();
    await fake.prepareDrives(spec, ctx());
    clock.increment(10);
    await fake.boot(spec, ctx());
    clock.increment(5);
    await rejection(fake.pause('vm-2', ctx()));
    await fake.describe();
    expect(fake.calls).toEqual([
      { op: 'prepareDrives', instanceId: 'vm-1', at: start },
      { op: 'boot', instanceId: 'vm-1', at: start + 10 },
      { op: 'pause', instanceId: 'vm-2', at: start + 15 },
      { op: 'describe', instanceId: null, at: start + 15 },
    ]);
  });

  it('describe() reports every VM it holds, sorted, with its state and snapshot', async () => {
    const { fake, ctx, running } = setup();
    await running('vm-c');
    const b = await running('vm-b');
    await running('vm-a');
    await fake.prepareDrives(aSpec('vm-d'), ctx());
    await fake.pause('vm-a', ctx());
    const ref = await fake.snapshot(b, ctx());
    await running('vm-e');
    await fake.destroy('vm-e', ctx());
    expect(await fake.describe()).toEqual([
      { instance_id: 'vm-a', state: 'paused', snapshot: null },
      { instance_id: 'vm-b', state: 'stopped', snapshot: ref },
      { instance_id: 'vm-c', state: 'running', snapshot: null },
      { instance_id: 'vm-d', state: 'stopped', snapshot: null },
    ]);
    expect(fake.bootedInstances()).toEqual(['vm-a', 'vm-c']);
  });

  it('describe() answers with copies the caller cannot use to change the fake', async () => {
    const { fake, ctx, running } = setup();
    const spec = await running('vm-1');
    await fake.snapshot(spec, ctx());
    const [seen] = await fake.describe();
    seen!.state = 'running';
    seen!.snapshot!.artifacts = 'tampered';
    expect(await fake.describe()).toMatchObject([{ state: 'stopped', snapshot: { artifacts: 'bundle-1' } }]);
  });

  it('vm() is a frozen view of one moment', async () => {
    const { fake, ctx, running } = setup();
    await running('vm-1');
    const before = fake.vm('vm-1');
    await fake.stop('vm-1', ctx());
    expect(before.state).toBe('running');
    expect(fake.vm('vm-1').state).toBe('stopped');
    expect(Object.isFrozen(before) && Object.isFrozen(before.drives)).toBe(true);
  });

  it('describe() can be slowed down and failed like any operation', async () => {
    const { clock, fake, running } = setup({ latencyMs: { describe: 20 } });
    await running('vm-1');
    const listing = watch(fake.describe());
    await flush();
    expect(listing.status).toBe('pending');
    clock.increment(20);
    await flush();
    expect(listing.value).toEqual([{ instance_id: 'vm-1', state: 'running', snapshot: null }]);
    fake.failNext('describe');
    const failed = watch(fake.describe());
    clock.increment(20);
    await flush();
    expect(failed).toMatchObject({ status: 'rejected', error: { op: 'describe', code: 'injected' } });
  });

  it('takes snapshot ids from the injected id source', async () => {
    const { fake, ctx, running } = setup({ ids: { next: (prefix) => `${prefix}-fixed` } });
    const spec = await running('vm-1');
    expect((await fake.snapshot(spec, ctx())).snapshot_id).toBe('snap-fixed');
  });

  it('reports itself as the fake kind', () => {
    expect(setup().fake.kind).toBe('fake');
  });
});

describe('every port operation goes through the same timing and fault rules', () => {
  const ops: DriverOp[] = ['prepareDrives', 'boot', 'checkReadiness', 'pause', 'resume', 'drain', 'snapshot', 'restore', 'stop', 'destroy', 'reload'];
  it.each(ops)('%s can be failed with failNext and is logged', async (op) => {
    const { fake, ctx } = setup();
    fake.failNext(op);
    const spec = aSpec('vm-1');
    const ref: SnapshotRef = { snapshot_id: 'snap-1', artifacts: 'bundle-1', manifest_hash: MANIFEST_A, created_at: 0 };
    const calls: Record<DriverOp, () => Promise<unknown>> = {
      prepareDrives: () => fake.prepareDrives(spec, ctx()),
      boot: () => fake.boot(spec, ctx()),
      checkReadiness: () => fake.checkReadiness(spec, aService(), ctx()),
      pause: () => fake.pause('vm-1', ctx()),
      resume: () => fake.resume('vm-1', ctx()),
      drain: () => fake.drain('vm-1', ctx()),
      snapshot: () => fake.snapshot(spec, ctx()),
      restore: () => fake.restore(spec, ref, ctx()),
      stop: () => fake.stop('vm-1', ctx()),
      destroy: () => fake.destroy('vm-1', ctx()),
      reload: () => fake.reload(spec, { config: true, secrets: true }, ctx()),
      describe: () => fake.describe(),
    };
    expect(await rejection(calls[op]())).toMatchObject({ op, code: 'injected' });
    expect(fake.calls.map((c) => c.op)).toEqual([op]);
  });
});
