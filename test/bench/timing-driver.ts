import type { ServiceSpec } from '../../src/schemas/role-manifest.ts';
import type { DriverOp, InstanceSpec, ObservedVm, OpContext, ReloadRequest, SnapshotRef, VmExit, VmmDriver } from '../../src/driver/vmm-driver.ts';

/**
 * A thin VmmDriver wrapper that timestamps (process.hrtime.bigint) when each operation is called
 * and when its promise settles, keeping the last call per (op, instance). The settle timestamp is
 * taken in a `.then` chained directly on the inner promise, so it is recorded just before the
 * caller (the invoked XState promise actor) sees the result.
 */

export interface OpTiming {
  calledAt: bigint;
  /** undefined while pending. */
  settledAt: bigint | undefined;
  ok: boolean | undefined;
}

export class TimingDriver implements VmmDriver {
  readonly kind: string;
  readonly #inner: VmmDriver;
  readonly #last = new Map<string, OpTiming>();

  constructor(inner: VmmDriver) {
    this.#inner = inner;
    this.kind = inner.kind;
  }

  /** The last call of `op` for `instanceId` (null: describe). */
  last(op: DriverOp, instanceId: string | null): OpTiming | undefined {
    return this.#last.get(`${op}\u0000${instanceId ?? ''}`);
  }

  clear(): void {
    this.#last.clear();
  }

  #timed<T>(op: DriverOp, instanceId: string | null, call: () => Promise<T>): Promise<T> {
    const timing: OpTiming = { calledAt: process.hrtime.bigint(), settledAt: undefined, ok: undefined };
    this.#last.set(`${op}\u0000${instanceId ?? ''}`, timing);
    return call().then(
      (value) => {
        timing.settledAt = process.hrtime.bigint();
        timing.ok = true;
        return value;
      },
      (error: unknown) => {
        timing.settledAt = process.hrtime.bigint();
        timing.ok = false;
        throw error;
      },
    );
  }

  prepareDrives(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    return this.#timed('prepareDrives', spec.instance_id, () => this.#inner.prepareDrives(spec, ctx));
  }
  boot(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    return this.#timed('boot', spec.instance_id, () => this.#inner.boot(spec, ctx));
  }
  checkReadiness(spec: InstanceSpec, service: ServiceSpec, ctx: OpContext): Promise<void> {
    return this.#timed('checkReadiness', spec.instance_id, () => this.#inner.checkReadiness(spec, service, ctx));
  }
  pause(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#timed('pause', instanceId, () => this.#inner.pause(instanceId, ctx));
  }
  resume(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#timed('resume', instanceId, () => this.#inner.resume(instanceId, ctx));
  }
  drain(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#timed('drain', instanceId, () => this.#inner.drain(instanceId, ctx));
  }
  snapshot(spec: InstanceSpec, ctx: OpContext): Promise<SnapshotRef> {
    return this.#timed('snapshot', spec.instance_id, () => this.#inner.snapshot(spec, ctx));
  }
  restore(spec: InstanceSpec, snapshot: SnapshotRef, ctx: OpContext): Promise<void> {
    return this.#timed('restore', spec.instance_id, () => this.#inner.restore(spec, snapshot, ctx));
  }
  reload(spec: InstanceSpec, what: ReloadRequest, ctx: OpContext): Promise<void> {
    return this.#timed('reload', spec.instance_id, () => this.#inner.reload(spec, what, ctx));
  }
  stop(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#timed('stop', instanceId, () => this.#inner.stop(instanceId, ctx));
  }
  destroy(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#timed('destroy', instanceId, () => this.#inner.destroy(instanceId, ctx));
  }
  describe(): Promise<ObservedVm[]> {
    return this.#timed('describe', null, () => this.#inner.describe());
  }
  onExit(listener: (exit: VmExit) => void): () => void {
    return this.#inner.onExit(listener);
  }
}
