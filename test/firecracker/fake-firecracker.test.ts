import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.ts';
import { FirecrackerApiClient, FirecrackerApiError } from '../../src/firecracker/api-client.ts';
import { FakeFirecracker } from './fake-firecracker.ts';

/**
 * The API client and the fake Firecracker's rules, in-process over real Unix sockets: every rule
 * the fake enforces answers 400 with a fault_message, which the client turns into a typed
 * FirecrackerApiError; calls in the wrong order are made on purpose.
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fcapi-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function fake(): Promise<{ fc: FakeFirecracker; client: FirecrackerApiClient; dir: string; kernel: string; disk: string }> {
  const dir = tempDir();
  const fc = await FakeFirecracker.start({ apiSock: path.join(dir, 'api.sock'), guest: false });
  cleanups.push(() => fc.close());
  const kernel = path.join(dir, 'vmlinux');
  const disk = path.join(dir, 'disk.ext4');
  writeFileSync(kernel, 'kernel');
  writeFileSync(disk, 'disk');
  return { fc, client: new FirecrackerApiClient({ socketPath: fc.apiSock, clock: systemClock }), dir, kernel, disk };
}

async function refusal(call: Promise<unknown>): Promise<FirecrackerApiError> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(FirecrackerApiError);
  return error as FirecrackerApiError;
}

async function started(f: Awaited<ReturnType<typeof fake>>): Promise<void> {
  await f.client.putMachineConfig({ vcpu_count: 1, mem_size_mib: 128 });
  await f.client.putBootSource({ kernel_image_path: f.kernel, boot_args: 'console=ttyS0' });
  await f.client.putDrive({ drive_id: 'rootfs', is_root_device: true, is_read_only: true, path_on_host: f.disk });
  await f.client.instanceStart();
}

describe('the fake Firecracker enforces the documented rules, and the client types every refusal', () => {
  it('answers GET / with the instance state as it changes', async () => {
    const f = await fake();
    expect(await f.client.describeInstance()).toMatchObject({ state: 'Not started' });
    await started(f);
    expect(await f.client.describeInstance()).toMatchObject({ state: 'Running' });
    await f.client.patchVm('Paused');
    expect(await f.client.describeInstance()).toMatchObject({ state: 'Paused' });
  });

  it('validates request bodies against the spec (missing, mistyped and unknown fields)', async () => {
    const f = await fake();
    const missing = await refusal(f.client.request('PUT', '/drives/rootfs', { drive_id: 'rootfs', path_on_host: f.disk }));
    expect(missing).toMatchObject({ kind: 'status', status: 400, method: 'PUT', path: '/drives/rootfs' });
    expect(missing.faultMessage).toContain('is_root_device');
    expect((await refusal(f.client.request('PUT', '/machine-config', { vcpu_count: 'two', mem_size_mib: 128 }))).faultMessage).toContain('vcpu_count');
    expect((await refusal(f.client.request('PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 128, vcpus: 1 }))).faultMessage).toContain('vcpus');
    expect((await refusal(f.client.request('PATCH', '/vm', { state: 'Sleeping' }))).faultMessage).toContain('state');
    expect((await refusal(f.client.request('PUT', '/no-such-resource', {}))).faultMessage).toContain('Invalid request');
    expect(f.fc.calls.map((c) => c.status)).toEqual([400, 400, 400, 400, 400]);
  });

  it('refuses pre-boot-only resources after InstanceStart, and a second InstanceStart', async () => {
    const f = await fake();
    await started(f);
    for (const call of [
      f.client.putMachineConfig({ vcpu_count: 2, mem_size_mib: 256 }),
      f.client.putBootSource({ kernel_image_path: f.kernel }),
      f.client.putDrive({ drive_id: 'data', is_root_device: false, is_read_only: false, path_on_host: f.disk }),
      f.client.putNetworkInterface({ iface_id: 'eth0', host_dev_name: 'tap0' }),
      f.client.putVsock({ guest_cid: 3, uds_path: path.join(f.dir, 'v.sock') }),
      f.client.instanceStart(),
    ]) {
      expect((await refusal(call)).faultMessage).toContain('not supported after starting the microVM');
    }
  });

  it('refuses InstanceStart without a boot source, drives and kernels that are not there, and PATCH /vm before start', async () => {
    const f = await fake();
    expect((await refusal(f.client.instanceStart())).faultMessage).toContain('without kernel configuration');
    expect((await refusal(f.client.putDrive({ drive_id: 'data', is_root_device: false, is_read_only: false, path_on_host: path.join(f.dir, 'absent.ext4') }))).faultMessage).toContain('absent.ext4');
    expect((await refusal(f.client.putBootSource({ kernel_image_path: path.join(f.dir, 'absent-vmlinux') }))).faultMessage).toContain('absent-vmlinux');
    expect((await refusal(f.client.patchVm('Paused'))).faultMessage).toContain('before starting');
  });

  it('creates a snapshot only while paused, and loads one only into a fresh process', async () => {
    const f = await fake();
    await started(f);
    const files = { snapshot_path: path.join(f.dir, 'vmstate'), mem_file_path: path.join(f.dir, 'memory') };
    expect((await refusal(f.client.createSnapshot(files))).faultMessage).toContain('must be paused');
    await f.client.patchVm('Paused');
    await f.client.createSnapshot({ ...files, snapshot_type: 'Full' });
    expect((await refusal(f.client.loadSnapshot({ snapshot_path: files.snapshot_path, mem_backend: { backend_type: 'File', backend_path: files.mem_file_path } }))).faultMessage).toContain(
      'not allowed after configuring',
    );

    // A fresh process that configured something is no longer fresh.
    const g = await fake();
    await g.client.putMachineConfig({ vcpu_count: 1, mem_size_mib: 128 });
    expect((await refusal(g.client.loadSnapshot({ snapshot_path: files.snapshot_path, mem_backend: { backend_type: 'File', backend_path: files.mem_file_path } }))).faultMessage).toContain(
      'not allowed after configuring',
    );

    // A fresh one loads it (logger first is allowed), resumed, with the tap override applied.
    const h = await fake();
    await h.client.putLogger({ level: 'Info' });
    await h.client.loadSnapshot({ snapshot_path: files.snapshot_path, mem_backend: { backend_type: 'File', backend_path: files.mem_file_path }, resume_vm: true });
    expect(await h.client.describeInstance()).toMatchObject({ state: 'Running' });
    expect((await refusal(h.client.putMachineConfig({ vcpu_count: 1, mem_size_mib: 128 }))).faultMessage).toContain('not supported after starting');
  });

  it('refuses a snapshot load whose files are missing, and reports the failure as fatal', async () => {
    const dir = tempDir();
    const fatal: string[] = [];
    const fc = await FakeFirecracker.start({ apiSock: path.join(dir, 'api.sock'), guest: false, onFatal: (reason) => fatal.push(reason) });
    cleanups.push(() => fc.close());
    const client = new FirecrackerApiClient({ socketPath: fc.apiSock, clock: systemClock });
    const error = await refusal(client.loadSnapshot({ snapshot_path: path.join(dir, 'nothing'), mem_backend: { backend_type: 'File', backend_path: path.join(dir, 'nomem') } }));
    expect(error.faultMessage).toContain('cannot read the microVM state');
    expect(fatal).toHaveLength(1);
  });
});

describe('the Firecracker API client', () => {
  it('sends one request at a time per socket, in call order', async () => {
    const dir = tempDir();
    const socketPath = path.join(dir, 'slow.sock');
    let inFlight = 0;
    let maxInFlight = 0;
    const order: string[] = [];
    const server = http.createServer((request, response) => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      order.push(request.url ?? '');
      setTimeout(() => {
        inFlight -= 1;
        response.writeHead(204).end();
      }, 5);
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const client = new FirecrackerApiClient({ socketPath, clock: systemClock });
    await Promise.all(Array.from({ length: 12 }, (_, i) => client.request('PUT', `/drives/d${i}`, { drive_id: `d${i}`, is_root_device: false })));
    expect(maxInFlight).toBe(1);
    expect(order).toEqual(Array.from({ length: 12 }, (_, i) => `/drives/d${i}`));
  });

  it('gives up at the deadline, and tells an absent socket from a refusal', async () => {
    const dir = tempDir();
    const socketPath = path.join(dir, 'mute.sock');
    const server = http.createServer(() => {
      // never answers
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const client = new FirecrackerApiClient({ socketPath, clock: systemClock });
    const late = await refusal(client.describeInstance({ deadline: systemClock.now() + 100 }));
    expect(late).toMatchObject({ kind: 'deadline', status: 0, method: 'GET', path: '/' });
    // The queue moves on after a request that timed out.
    expect(await refusal(client.describeInstance({ deadline: systemClock.now() + 50 }))).toMatchObject({ kind: 'deadline' });

    const absent = new FirecrackerApiClient({ socketPath: path.join(dir, 'absent.sock'), clock: systemClock });
    expect(await refusal(absent.describeInstance())).toMatchObject({ kind: 'unreachable' });
    const aborted = new AbortController();
    aborted.abort();
    expect(await refusal(client.describeInstance({ signal: aborted.signal }))).toMatchObject({ kind: 'aborted' });
  });
});
