import type { Clock } from '../common/clock.ts';
import type { IdSource } from '../common/ids.ts';
import { DriverError, type DriveContent, type DriverOp, type InstanceSpec, type ObservedState, type ObservedVm, type ReloadRequest, type SnapshotRef } from './vmm-driver.ts';

/**
 * The fake hypervisor's memory: one record per instance and the rules that change it. Every
 * method is synchronous and either applies a whole transition or throws a DriverError and changes
 * nothing. Timing, faults and listeners live in FakeDriver (fake-driver.ts).
 *
 * The record models what a real host keeps:
 * - `stopped` means "nothing runs, but drives or a snapshot are on disk"; prepareDrives alone
 *   creates a stopped record. `absent` means nothing is known (never prepared, or destroyed).
 * - Drives by persistence: `persistent` and `disposable` drives are created once and then kept
 *   (guest writes included) until destroy; `versioned` drives are rewritten from the spec on every
 *   prepare and kept across stop and snapshot; `ephemeral` drives (secrets) are rewritten on every
 *   prepare and removed at stop, snapshot and crash.
 * - A snapshot is tied to the bundle and manifest the VM really ran. It is consumed by the
 *   restore that starts from it and discarded by a cold boot: once the VM runs on, the memory image
 *   no longer matches its disks.
 * - What the guest has applied: the config version and secrets epoch of the spec it booted or was
 *   restored with (the guest agent's post-restore step re-reads the config drive and takes the
 *   spec's epoch), or of the last live reload.
 */

type UpState = 'running' | 'paused';

interface VmRecord {
  state: Exclude<ObservedState, 'absent'>;
  drives: Map<string, DriveContent>;
  snapshot: SnapshotRef | null;
  bootCount: number;
  restoreCount: number;
  /** What the VM runs (or last ran): the snapshot is tied to this. */
  image: { artifacts: string; manifest_hash: string } | null;
  /** Readiness probes since the last boot or restore, by service name. */
  probes: Map<string, number>;
  ready: Set<string>;
  /** The config version and secrets epoch the guest has applied (boot, reload, post-restore). */
  applied: AppliedRevision | null;
  /** Live reloads the guest answered since the record was created. */
  reloadCount: number;
}

/** What the guest in a VM has applied. */
export interface AppliedRevision {
  config_version: number;
  secrets_epoch: number;
}

/** A read-only copy of one instance's record, for tests and invariants. */
export interface FakeVmView {
  readonly state: ObservedState;
  /** Names of the drives that exist, sorted. */
  readonly drives: readonly string[];
  readonly snapshot: SnapshotRef | null;
  /** Cold boots since the record was created (restores are counted apart). */
  readonly bootCount: number;
  readonly restoreCount: number;
  /** Services that answered a readiness probe since the last boot or restore, sorted. */
  readonly ready: readonly string[];
  /** What the guest has applied; null before the first boot. */
  readonly applied: AppliedRevision | null;
  readonly reloadCount: number;
}

const isUp = (vm: VmRecord | undefined): vm is VmRecord & { state: UpState } => vm?.state === 'running' || vm?.state === 'paused';

const copyDrive = (drive: DriveContent): DriveContent => ({ ...drive, files: { ...drive.files } });

/** A record as JSON (Maps and Sets as arrays), for a hypervisor that outlives its process. */
interface VmRecordJson {
  state: VmRecord['state'];
  drives: DriveContent[];
  snapshot: SnapshotRef | null;
  bootCount: number;
  restoreCount: number;
  image: VmRecord['image'];
  ready: string[];
  applied?: AppliedRevision | null;
  reloadCount?: number;
}

export class FakeHypervisor {
  private readonly vms = new Map<string, VmRecord>();
  private readonly readyAfter = new Map<string, number>();
  private readonly neverReady = new Set<string>();

  constructor(
    private readonly clock: Pick<Clock, 'now'>,
    private readonly ids: IdSource,
  ) {}

  prepareDrives(spec: InstanceSpec): void {
    const vm = this.vms.get(spec.instance_id) ?? this.create(spec.instance_id);
    for (const drive of spec.drives) {
      const kept = drive.persistence === 'persistent' || drive.persistence === 'disposable';
      if (kept && vm.drives.has(drive.name)) continue;
      vm.drives.set(drive.name, copyDrive(drive));
    }
  }

  boot(spec: InstanceSpec): void {
    const existing = this.vms.get(spec.instance_id);
    if (isUp(existing)) return;
    this.requireDrives('boot', spec, existing);
    const vm = existing ?? this.create(spec.instance_id);
    vm.state = 'running';
    vm.bootCount += 1;
    vm.snapshot = null;
    vm.image = { artifacts: spec.revision.artifacts, manifest_hash: spec.manifest_hash };
    vm.applied = appliedOf(spec);
    resetGuest(vm);
  }

  /**
   * A live reload: the drives the request names are rewritten from the spec, and the guest
   * applies the spec's config version and/or secrets epoch. Only a running VM's guest agent can
   * answer, and only for a verb its role enables.
   */
  reload(spec: InstanceSpec, what: ReloadRequest): void {
    const id = spec.instance_id;
    const vm = this.requireUp('reload', id);
    if (vm.state === 'paused') throw new DriverError('reload', id, 'vm-paused', 'the VM is paused; its guest agent cannot reload', false);
    const verbs = [...(what.config ? ['config-reload'] : []), ...(what.secrets ? ['secrets-reload'] : [])];
    const disabled = verbs.filter((verb) => !spec.vsock.handlers.includes(verb));
    if (disabled.length > 0) throw new DriverError('reload', id, 'handler-disabled', `the role does not enable the ${disabled.join(' and ')} handler(s) (vsock.handlers)`, false);
    for (const drive of spec.drives) {
      if ((what.config && drive.persistence === 'versioned') || (what.secrets && drive.persistence === 'ephemeral')) vm.drives.set(drive.name, copyDrive(drive));
    }
    const before = vm.applied ?? appliedOf(spec);
    vm.applied = { config_version: what.config ? spec.revision.config_version : before.config_version, secrets_epoch: what.secrets ? spec.revision.secrets_epoch : before.secrets_epoch };
    vm.reloadCount += 1;
  }

  probe(spec: InstanceSpec, service: string): void {
    const id = spec.instance_id;
    const vm = this.vms.get(id);
    if (!isUp(vm)) throw new DriverError('checkReadiness', id, 'vm-missing', `no VM runs (${this.stateOf(id)})`, false);
    if (vm.state === 'paused') throw new DriverError('checkReadiness', id, 'vm-paused', 'the VM is paused; resume it before probing', false);
    if (vm.ready.has(service)) return;
    const probes = (vm.probes.get(service) ?? 0) + 1;
    vm.probes.set(service, probes);
    const key = serviceKey(id, service);
    if (this.neverReady.has(key) || probes <= (this.readyAfter.get(key) ?? 0)) {
      throw new DriverError('checkReadiness', id, 'not-ready', `service ${service} is not ready (probe ${probes})`, true);
    }
    vm.ready.add(service);
  }

  pause(instanceId: string): void {
    const vm = this.requireUp('pause', instanceId);
    vm.state = 'paused';
  }

  resume(instanceId: string): void {
    const vm = this.requireUp('resume', instanceId);
    vm.state = 'running';
  }

  /** The guest agent finishes in-flight work; it can only answer while the VM runs. */
  drain(instanceId: string): void {
    const vm = this.requireUp('drain', instanceId);
    if (vm.state === 'paused') throw new DriverError('drain', instanceId, 'vm-paused', 'the VM is paused; its guest agent cannot drain', false);
  }

  snapshot(spec: InstanceSpec): SnapshotRef {
    const vm = this.vms.get(spec.instance_id);
    // Already snapshotted and stopped: the same call again converges on the same snapshot.
    if (vm?.state === 'stopped' && vm.snapshot) return { ...vm.snapshot };
    const up = this.requireUp('snapshot', spec.instance_id);
    const image = up.image ?? { artifacts: spec.revision.artifacts, manifest_hash: spec.manifest_hash };
    const ref: SnapshotRef = { snapshot_id: this.ids.next('snap'), ...image, created_at: this.clock.now() };
    shutDown(up);
    up.snapshot = ref;
    return { ...ref };
  }

  restore(spec: InstanceSpec, ref: SnapshotRef): void {
    const id = spec.instance_id;
    const mismatch = describeMismatch(ref, spec.revision.artifacts, spec.manifest_hash);
    if (mismatch) throw new DriverError('restore', id, 'snapshot-mismatch', `snapshot ${ref.snapshot_id} ${mismatch}`, false);
    const vm = this.vms.get(id);
    if (isUp(vm)) return;
    if (!vm?.snapshot || vm.snapshot.snapshot_id !== ref.snapshot_id) {
      throw new DriverError('restore', id, 'no-snapshot', `snapshot ${ref.snapshot_id} is not on this host`, false);
    }
    const recorded = describeMismatch(vm.snapshot, ref.artifacts, ref.manifest_hash);
    if (recorded) throw new DriverError('restore', id, 'snapshot-mismatch', `the snapshot on disk ${recorded}`, false);
    this.requireDrives('restore', spec, vm);
    vm.state = 'running';
    vm.restoreCount += 1;
    // The guest agent's post-restore step re-reads the config drive just prepared and takes the spec's epoch.
    vm.applied = appliedOf(spec);
    vm.image = { artifacts: vm.snapshot.artifacts, manifest_hash: vm.snapshot.manifest_hash };
    vm.snapshot = null;
    resetGuest(vm);
  }

  stop(instanceId: string): void {
    const vm = this.vms.get(instanceId);
    if (isUp(vm)) shutDown(vm);
    // A VM stopped before it ever ran still loses its secrets drive.
    else if (vm) removeEphemeralDrives(vm);
  }

  destroy(instanceId: string): void {
    this.vms.delete(instanceId);
  }

  /** Make a running or paused VM exit as if its process died. Returns false when none was up. */
  crash(instanceId: string): boolean {
    const vm = this.vms.get(instanceId);
    if (!isUp(vm)) return false;
    shutDown(vm);
    return true;
  }

  describe(): ObservedVm[] {
    return [...this.vms.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([instance_id, vm]) => ({ instance_id, state: vm.state, snapshot: vm.snapshot && { ...vm.snapshot } }));
  }

  view(instanceId: string): FakeVmView {
    const vm = this.vms.get(instanceId);
    return Object.freeze({
      state: this.stateOf(instanceId),
      drives: Object.freeze([...(vm?.drives.keys() ?? [])].sort()),
      snapshot: vm?.snapshot ? Object.freeze({ ...vm.snapshot }) : null,
      bootCount: vm?.bootCount ?? 0,
      restoreCount: vm?.restoreCount ?? 0,
      ready: Object.freeze([...(vm?.ready ?? [])].sort()),
      applied: vm?.applied ? Object.freeze({ ...vm.applied }) : null,
      reloadCount: vm?.reloadCount ?? 0,
    });
  }

  drive(instanceId: string, name: string): DriveContent | undefined {
    const drive = this.vms.get(instanceId)?.drives.get(name);
    return drive && copyDrive(drive);
  }

  /** The guest writes a file to one of its writable drives (only while it runs). */
  guestWrite(instanceId: string, name: string, path: string, content: string): void {
    const vm = this.vms.get(instanceId);
    if (vm?.state !== 'running') throw new Error(`guest of ${instanceId} cannot write: the VM is ${this.stateOf(instanceId)}`);
    const drive = vm.drives.get(name);
    if (!drive) throw new Error(`guest of ${instanceId} has no drive ${name}`);
    if (drive.read_only) throw new Error(`drive ${name} of ${instanceId} is read-only`);
    drive.files[path] = content;
  }

  /** Instances with a VM up (running or paused), sorted. */
  upInstances(): string[] {
    return [...this.vms.entries()].filter(([, vm]) => isUp(vm)).map(([id]) => id).sort();
  }

  setReadyAfterProbes(instanceId: string, service: string, notReadyProbes: number): void {
    this.readyAfter.set(serviceKey(instanceId, service), notReadyProbes);
    this.neverReady.delete(serviceKey(instanceId, service));
  }

  setNeverReady(instanceId: string, service: string): void {
    this.neverReady.add(serviceKey(instanceId, service));
  }

  private stateOf(instanceId: string): ObservedState {
    return this.vms.get(instanceId)?.state ?? 'absent';
  }

  /** Everything the hypervisor holds, as JSON: what a real host would still have after the control plane dies. */
  toJSON(): Record<string, VmRecordJson> {
    const out: Record<string, VmRecordJson> = {};
    for (const [id, vm] of this.vms) {
      out[id] = { state: vm.state, drives: [...vm.drives.values()], snapshot: vm.snapshot, bootCount: vm.bootCount, restoreCount: vm.restoreCount, image: vm.image, ready: [...vm.ready], applied: vm.applied, reloadCount: vm.reloadCount };
    }
    return out;
  }

  load(json: Record<string, VmRecordJson>): void {
    this.vms.clear();
    for (const [id, vm] of Object.entries(json)) {
      this.vms.set(id, { ...vm, drives: new Map(vm.drives.map((d) => [d.name, d])), probes: new Map(), ready: new Set(vm.ready), applied: vm.applied ?? null, reloadCount: vm.reloadCount ?? 0 });
    }
  }

  private create(instanceId: string): VmRecord {
    const vm: VmRecord = { state: 'stopped', drives: new Map(), snapshot: null, bootCount: 0, restoreCount: 0, image: null, probes: new Map(), ready: new Set(), applied: null, reloadCount: 0 };
    this.vms.set(instanceId, vm);
    return vm;
  }

  private requireUp(op: DriverOp, instanceId: string): VmRecord & { state: UpState } {
    const vm = this.vms.get(instanceId);
    if (!isUp(vm)) throw new DriverError(op, instanceId, 'vm-missing', `no VM runs (${this.stateOf(instanceId)})`, false);
    return vm;
  }

  private requireDrives(op: DriverOp, spec: InstanceSpec, vm: VmRecord | undefined): void {
    const missing = spec.drives.filter((d) => !vm?.drives.has(d.name)).map((d) => d.name);
    if (missing.length > 0) {
      throw new DriverError(op, spec.instance_id, 'drives-missing', `drives not prepared: ${missing.join(', ')}`, false);
    }
  }
}

function appliedOf(spec: InstanceSpec): AppliedRevision {
  return { config_version: spec.revision.config_version, secrets_epoch: spec.revision.secrets_epoch };
}

function serviceKey(instanceId: string, service: string): string {
  return `${instanceId}\u0000${service}`;
}

/** A stopped guest loses its memory: secrets drives go, readiness starts over. */
function shutDown(vm: VmRecord): void {
  vm.state = 'stopped';
  removeEphemeralDrives(vm);
  resetGuest(vm);
}

function removeEphemeralDrives(vm: VmRecord): void {
  for (const [name, drive] of vm.drives) if (drive.persistence === 'ephemeral') vm.drives.delete(name);
}

function resetGuest(vm: VmRecord): void {
  vm.probes.clear();
  vm.ready.clear();
}

function describeMismatch(ref: Pick<SnapshotRef, 'artifacts' | 'manifest_hash'>, artifacts: string, manifestHash: string): string | undefined {
  const problems = [
    ref.artifacts === artifacts ? undefined : `was taken from bundle ${ref.artifacts}, not ${artifacts}`,
    ref.manifest_hash === manifestHash ? undefined : `was taken with manifest ${ref.manifest_hash}, not ${manifestHash}`,
  ].filter((p) => p !== undefined);
  return problems.length > 0 ? problems.join(' and ') : undefined;
}
