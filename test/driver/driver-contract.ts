import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DriverError, type InstanceSpec, type ObservedVm, type OpContext, type VmmDriver } from '../../src/driver/vmm-driver.ts';
import type { ServiceSpec } from '../../src/schemas/role-manifest.ts';

/**
 * The promises of the VMM driver port (src/driver/vmm-driver.ts), as tests any driver must pass:
 * the fake driver, the dev-mode simulator and the Firecracker driver call describeDriverContract
 * with their own harness. Only the port is used, plus the optional `readDrive` hook to look at
 * drive contents; everything else is observed through describe().
 */

export interface DriverHarness {
  driver: VmmDriver;
  /** The clock the driver was given; the contract only reads it to compute deadlines. */
  clock: { now(): number };
  /** Files of one drive as the host holds it, or undefined when the drive does not exist. Without it, drive contents are not checked. */
  readDrive?: (instanceId: string, drive: string) => Promise<Record<string, string> | undefined> | Record<string, string> | undefined;
  /** The spec to use for an instance (default contractSpec); it needs one persistent and one ephemeral drive, each with files. */
  spec?: (instanceId: string) => InstanceSpec;
  /** A service of that spec whose probe the driver can run (default contractService). */
  service?: ServiceSpec;
  cleanup?: () => Promise<void>;
}

const HASH_A = `sha256:${'a'.repeat(64)}`;
const HASH_B = `sha256:${'b'.repeat(64)}`;

/** A spec with a persistent data drive, an ephemeral secrets drive and a versioned config drive. */
export function contractSpec(instanceId: string): InstanceSpec {
  return {
    instance_id: instanceId,
    tenant_id: 'contract',
    pool_id: 'pool',
    role: 'contract-role',
    profile: 'base',
    revision: { artifacts: 'bundle-a', config_version: 1, secrets_epoch: 1 },
    resources: { vcpus: 1, mem_mib: 256, data_disk_mib: 64 },
    network: { ipv4: '10.200.0.2', mac: '06:00:0a:c8:00:02', tap: 'tap-contract', vsock_cid: 3 },
    drives: [
      { name: 'data', device: 'vdb', mount: '/data', label: 'mvm-data', read_only: false, persistence: 'persistent', size_mib: 64, files: { 'marker.txt': 'first' } },
      { name: 'secrets', device: 'vdc', mount: '/run/secrets', label: 'mvm-secrets', read_only: true, persistence: 'ephemeral', size_mib: 1, files: { token: 'contract-secret' } },
      { name: 'config', device: 'vdd', mount: '/etc/mvm-config', label: 'mvm-config', read_only: true, persistence: 'versioned', size_mib: 1, files: { 'app.json': '{"v":1}' } },
    ],
    manifest_hash: HASH_A,
    vsock: { agent_port: 5000, handlers: ['ping', 'readiness'] },
  };
}

export const contractService: ServiceSpec = {
  name: 'app',
  description: 'The contract test service',
  program: 'app',
  args: [],
  ports: [],
  readiness: { kind: 'agent', timeout_s: 30, interval_s: 1 },
  stop_timeout_s: 10,
};

const RELOAD_HANDLERS = ['ping', 'readiness', 'config-reload', 'secrets-reload'];

/**
 * The harness's spec for a role that enables the reload verbs, at a given config version and
 * secrets epoch: the config drive carries a guest config (mvm.json) stamped with the version and
 * naming the handlers, so a real guest agent answers config-reload and secrets-reload; the
 * secrets drive carries `secret`.
 */
export function reloadableSpec(base: InstanceSpec, revision: { config_version: number; secrets_epoch: number }, secret: string, handlers = RELOAD_HANDLERS): InstanceSpec {
  const mvm = {
    schema_version: 1,
    instance_id: base.instance_id,
    tenant_id: base.tenant_id,
    role: base.role,
    config_version: revision.config_version,
    secrets_epoch: revision.secrets_epoch,
    services: [],
    ports: [],
    vsock: { agent_port: base.vsock.agent_port, handlers },
    connectors: [],
  };
  return {
    ...base,
    revision: { ...base.revision, ...revision },
    vsock: { ...base.vsock, handlers },
    drives: base.drives.map((d) => {
      if (d.persistence === 'versioned') return { ...d, files: { ...d.files, 'mvm.json': JSON.stringify(mvm) } };
      if (d.persistence === 'ephemeral') return { ...d, files: Object.fromEntries(Object.keys(d.files).map((name) => [name, secret])) };
      return d;
    }),
  };
}

export function describeDriverContract(name: string, makeDriver: () => DriverHarness | Promise<DriverHarness>): void {
  describe(`${name} keeps the VMM driver port's promises`, () => {
    let h: DriverHarness;
    let driver: VmmDriver;
    beforeEach(async () => {
      h = await makeDriver();
      driver = h.driver;
    });
    afterEach(async () => {
      await h.cleanup?.();
    });

    const ctx = (): OpContext => ({ signal: new AbortController().signal, deadline: h.clock.now() + 60_000 });
    const specOf = (id: string) => (h.spec ?? contractSpec)(id);
    const driveOf = (spec: InstanceSpec, persistence: 'persistent' | 'ephemeral') => {
      const drive = spec.drives.find((d) => d.persistence === persistence && Object.keys(d.files).length > 0);
      if (!drive) throw new Error(`the contract spec needs a ${persistence} drive with files`);
      return drive;
    };
    const observed = async (id: string): Promise<ObservedVm[]> => (await driver.describe()).filter((vm) => vm.instance_id === id);
    const stateOf = async (id: string) => (await observed(id)).map((vm) => vm.state);
    /** Checks drive contents when the harness can read them. */
    const expectDrive = async (id: string, drive: string, files: Record<string, string> | undefined) => {
      if (h.readDrive) expect(await h.readDrive(id, drive)).toEqual(files);
    };
    const rejection = async (call: Promise<unknown>): Promise<DriverError> => {
      const error = await call.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DriverError);
      return error as DriverError;
    };
    const running = async (id: string) => {
      const spec = specOf(id);
      await driver.prepareDrives(spec, ctx());
      await driver.boot(spec, ctx());
      return spec;
    };

    it('boots once however often boot is called, and describe shows one running VM', async () => {
      const spec = specOf('contract-boot');
      await driver.prepareDrives(spec, ctx());
      await driver.boot(spec, ctx());
      await driver.boot(spec, ctx());
      await driver.prepareDrives(spec, ctx());
      await driver.boot(spec, ctx());
      expect(await stateOf('contract-boot')).toEqual(['running']);
    });

    it('describe follows the VM through pause, resume, snapshot, restore, stop and destroy', async () => {
      const spec = await running('contract-life');
      await driver.pause('contract-life', ctx());
      expect(await observed('contract-life')).toEqual([{ instance_id: 'contract-life', state: 'paused', snapshot: null }]);
      await driver.resume('contract-life', ctx());
      expect(await stateOf('contract-life')).toEqual(['running']);
      const ref = await driver.snapshot(spec, ctx());
      expect(ref).toMatchObject({ artifacts: spec.revision.artifacts, manifest_hash: spec.manifest_hash });
      expect(await observed('contract-life')).toEqual([{ instance_id: 'contract-life', state: 'stopped', snapshot: ref }]);
      await driver.prepareDrives(spec, ctx());
      await driver.restore(spec, ref, ctx());
      expect(await stateOf('contract-life')).toEqual(['running']);
      await driver.stop('contract-life', ctx());
      expect(await stateOf('contract-life')).toEqual(['stopped']);
      await driver.destroy('contract-life', ctx());
      expect(await observed('contract-life')).toEqual([]);
    });

    it('pause and resume converge when repeated', async () => {
      await running('contract-pause');
      await driver.pause('contract-pause', ctx());
      await driver.pause('contract-pause', ctx());
      expect(await stateOf('contract-pause')).toEqual(['paused']);
      await driver.resume('contract-pause', ctx());
      await driver.resume('contract-pause', ctx());
      expect(await stateOf('contract-pause')).toEqual(['running']);
    });

    it('drain leaves a running VM running, however often it is called', async () => {
      await running('contract-drain');
      await driver.drain('contract-drain', ctx());
      await driver.drain('contract-drain', ctx());
      expect(await stateOf('contract-drain')).toEqual(['running']);
    });

    it('stop and destroy converge when repeated, and succeed for a VM the host never had', async () => {
      await running('contract-stop');
      await driver.stop('contract-stop', ctx());
      await driver.stop('contract-stop', ctx());
      expect(await stateOf('contract-stop')).toEqual(['stopped']);
      await driver.destroy('contract-stop', ctx());
      await driver.destroy('contract-stop', ctx());
      await driver.stop('contract-never', ctx());
      await driver.destroy('contract-never', ctx());
      expect(await observed('contract-stop')).toEqual([]);
      expect(await observed('contract-never')).toEqual([]);
    });

    it('describe lists every VM it has, each once', async () => {
      await running('contract-one');
      await running('contract-two');
      await driver.stop('contract-two', ctx());
      const mine = (await driver.describe()).filter((vm) => vm.instance_id.startsWith('contract-'));
      expect(mine.map(({ instance_id, state }) => ({ instance_id, state })).sort((a, b) => a.instance_id.localeCompare(b.instance_id))).toEqual([
        { instance_id: 'contract-one', state: 'running' },
        { instance_id: 'contract-two', state: 'stopped' },
      ]);
    });

    it.each([
      ['another bundle', (spec: InstanceSpec): InstanceSpec => ({ ...spec, revision: { ...spec.revision, artifacts: 'bundle-b' } })],
      ['another manifest', (spec: InstanceSpec): InstanceSpec => ({ ...spec, manifest_hash: HASH_B })],
    ])('restore refuses a snapshot taken with %s and leaves the snapshot in place', async (_what, change) => {
      const spec = await running('contract-mismatch');
      const ref = await driver.snapshot(spec, ctx());
      const changed = change(spec);
      await driver.prepareDrives(changed, ctx());
      expect(await rejection(driver.restore(changed, ref, ctx()))).toMatchObject({ code: 'snapshot-mismatch', retryable: false });
      expect(await observed('contract-mismatch')).toEqual([{ instance_id: 'contract-mismatch', state: 'stopped', snapshot: ref }]);
      await driver.restore(spec, ref, ctx());
      expect(await stateOf('contract-mismatch')).toEqual(['running']);
    });

    it('restore without a snapshot is refused', async () => {
      const spec = specOf('contract-nosnap');
      await driver.prepareDrives(spec, ctx());
      const ref = { snapshot_id: 'snap-unknown', artifacts: spec.revision.artifacts, manifest_hash: spec.manifest_hash, created_at: 0 };
      expect(await rejection(driver.restore(spec, ref, ctx()))).toMatchObject({ code: 'no-snapshot', retryable: false });
      expect(await stateOf('contract-nosnap')).not.toContain('running');
    });

    it('keeps the persistent drive across stop and snapshot/restore, rebuilds the ephemeral one, and removes both on destroy', async () => {
      const spec = await running('contract-drives');
      const persistent = driveOf(spec, 'persistent');
      const ephemeral = driveOf(spec, 'ephemeral');
      await expectDrive('contract-drives', persistent.name, persistent.files);
      await expectDrive('contract-drives', ephemeral.name, ephemeral.files);

      await driver.stop('contract-drives', ctx());
      await expectDrive('contract-drives', persistent.name, persistent.files);
      await expectDrive('contract-drives', ephemeral.name, undefined);

      // A later prepare with other contents must keep the persistent drive as it is.
      const later: InstanceSpec = {
        ...spec,
        drives: spec.drives.map((d) => (d.persistence === 'persistent' || d.persistence === 'ephemeral' ? { ...d, files: { 'other.txt': 'second' } } : d)),
      };
      await driver.prepareDrives(later, ctx());
      await driver.boot(later, ctx());
      await expectDrive('contract-drives', persistent.name, persistent.files);
      await expectDrive('contract-drives', ephemeral.name, { 'other.txt': 'second' });

      const ref = await driver.snapshot(later, ctx());
      await expectDrive('contract-drives', persistent.name, persistent.files);
      await expectDrive('contract-drives', ephemeral.name, undefined);
      await driver.prepareDrives(later, ctx());
      await driver.restore(later, ref, ctx());
      expect(await stateOf('contract-drives')).toEqual(['running']);
      await expectDrive('contract-drives', persistent.name, persistent.files);

      await driver.destroy('contract-drives', ctx());
      await expectDrive('contract-drives', persistent.name, undefined);
      expect(await observed('contract-drives')).toEqual([]);
    });

    it('reload brings a new config version and secrets epoch to the running VM without a reboot, converges when repeated, and needs a running VM', async () => {
      const id = 'contract-reload';
      const first = reloadableSpec(specOf(id), { config_version: 1, secrets_epoch: 1 }, 'first-secret');
      await driver.prepareDrives(first, ctx());
      await driver.boot(first, ctx());
      const next = reloadableSpec(specOf(id), { config_version: 2, secrets_epoch: 3 }, 'rotated-secret');
      await driver.reload(next, { config: true, secrets: true }, ctx());
      await driver.reload(next, { config: true, secrets: true }, ctx());
      expect(await observed(id)).toEqual([{ instance_id: id, state: 'running', snapshot: null }]);
      const config = next.drives.find((d) => d.persistence === 'versioned')!;
      await expectDrive(id, config.name, config.files);
      await expectDrive(id, driveOf(next, 'ephemeral').name, driveOf(next, 'ephemeral').files);
      // Only what is asked: a secrets-only reload leaves the config drive as it is.
      const third = reloadableSpec(specOf(id), { config_version: 3, secrets_epoch: 4 }, 'third-secret');
      await driver.reload({ ...third, revision: { ...third.revision, config_version: 2 }, drives: third.drives.map((d) => (d.persistence === 'versioned' ? config : d)) }, { config: false, secrets: true }, ctx());
      await expectDrive(id, config.name, config.files);
      await expectDrive(id, driveOf(third, 'ephemeral').name, driveOf(third, 'ephemeral').files);
      await driver.stop(id, ctx());
      expect(await rejection(driver.reload(next, { config: true, secrets: true }, ctx()))).toMatchObject({ op: 'reload', code: 'vm-missing', retryable: false });
      expect(await stateOf(id)).toEqual(['stopped']);
    });

    it('reload of a verb the role does not enable is refused with handler-disabled', async () => {
      const id = 'contract-noreload';
      const spec = reloadableSpec(specOf(id), { config_version: 1, secrets_epoch: 1 }, 'first-secret', ['ping', 'readiness']);
      await driver.prepareDrives(spec, ctx());
      await driver.boot(spec, ctx());
      const next = reloadableSpec(specOf(id), { config_version: 2, secrets_epoch: 1 }, 'first-secret', ['ping', 'readiness']);
      expect(await rejection(driver.reload(next, { config: true, secrets: false }, ctx()))).toMatchObject({ op: 'reload', code: 'handler-disabled', retryable: false });
      expect(await stateOf(id)).toEqual(['running']);
    });

    it('pause of a VM that does not run is refused with vm-missing', async () => {
      const spec = specOf('contract-missing');
      await driver.prepareDrives(spec, ctx());
      expect(await rejection(driver.pause('contract-missing', ctx()))).toMatchObject({ code: 'vm-missing', retryable: false });
      expect(await rejection(driver.pause('contract-nowhere', ctx()))).toMatchObject({ code: 'vm-missing', retryable: false });
      expect(await stateOf('contract-missing')).toEqual(['stopped']);
    });

    it('a readiness probe of a stopped VM never reports ready', async () => {
      await running('contract-probe');
      await driver.stop('contract-probe', ctx());
      const error = await rejection(driver.checkReadiness(specOf('contract-probe'), h.service ?? contractService, ctx()));
      expect(error).toMatchObject({ op: 'checkReadiness', instanceId: 'contract-probe' });
    });

    it('a call whose signal is already aborted rejects with aborted and changes nothing', async () => {
      const spec = specOf('contract-aborted');
      const aborted = new AbortController();
      aborted.abort();
      expect(await rejection(driver.prepareDrives(spec, { signal: aborted.signal, deadline: h.clock.now() + 60_000 }))).toMatchObject({ code: 'aborted' });
      expect(await observed('contract-aborted')).toEqual([]);
    });

    it('a call whose deadline has passed rejects with a retryable deadline error and changes nothing', async () => {
      const spec = specOf('contract-late');
      await driver.prepareDrives(spec, ctx());
      const late = { signal: new AbortController().signal, deadline: h.clock.now() - 1 };
      expect(await rejection(driver.boot(spec, late))).toMatchObject({ code: 'deadline', retryable: true });
      expect(await stateOf('contract-late')).toEqual(['stopped']);
    });
  });
}
