import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Clock } from '../common/clock.ts';
import { randomIds, sequentialIds, type IdSource } from '../common/ids.ts';
import type { ServiceSpec } from '../schemas/role-manifest.ts';
import { FakeHypervisor, type FakeVmView } from './fake-driver-state.ts';
import {
  DriverError,
  type DriveContent,
  type DriverOp,
  type InstanceSpec,
  type ObservedVm,
  type OpContext,
  type ReloadRequest,
  type SnapshotRef,
  type VmExit,
  type VmmDriver,
} from './vmm-driver.ts';

/**
 * A deterministic in-memory VMM driver for tests and dev tools. It keeps the hypervisor's state
 * (fake-driver-state.ts), takes time only from the injected clock, and lets a test inject faults:
 *
 * - Each call is logged in `calls`, then takes `latencyMs[op]` ms of clock time (or resolves on the
 *   next microtask when there is none) and applies its effect at completion, against the state at
 *   that moment.
 * - An already aborted signal rejects with `aborted`; aborting a pending call rejects it with
 *   `aborted` and applies nothing. A call whose completion would fall after `ctx.deadline` rejects
 *   with retryable `deadline` when the clock reaches the deadline (at once if it already passed),
 *   and applies nothing.
 * - `failNext` rules are taken when a call starts and reject it at its completion time;
 *   `hang` rules keep matching calls pending until they are aborted or reach their deadline.
 * - `crash` stops a running or paused VM the way a dead process would: the record stays `stopped`
 *   with its persistent drives (secrets drives go), and onExit listeners hear about it.
 */

export interface FakeDriverOptions {
  clock: Clock;
  /** Snapshot ids; sequential (`snap-1`, `snap-2`, ...) unless given. */
  ids?: IdSource;
  /** Simulated duration of each operation, in clock milliseconds. */
  latencyMs?: Partial<Record<DriverOp, number>>;
  /**
   * Keep the hypervisor's state in this JSON file, written after every change and read at start,
   * so "VMs" outlive the process that drives them (crash and restart tests). Snapshot ids are then
   * random unless `ids` is given.
   */
  stateFile?: string;
}

export interface FaultOptions {
  /** Only calls for this instance; any instance when left out. */
  instanceId?: string;
  /** DriverError code; `injected` unless given. */
  code?: string;
  /** Whether the error says the call may be retried; true unless given. */
  retryable?: boolean;
  /** How many matching calls fail; 1 unless given. */
  times?: number;
}

export interface DriverCall {
  op: DriverOp;
  /** null for describe(), which is about the whole host. */
  instanceId: string | null;
  /** Clock time when the call was made. */
  at: number;
}

interface FaultRule {
  op: DriverOp;
  instanceId: string | undefined;
  code: string;
  retryable: boolean;
  remaining: number;
}

interface HangRule {
  op: DriverOp;
  instanceId: string | undefined;
}

const matches = (rule: { op: DriverOp; instanceId: string | undefined }, op: DriverOp, instanceId: string | null) =>
  rule.op === op && (rule.instanceId === undefined || rule.instanceId === instanceId);

export class FakeDriver implements VmmDriver {
  readonly kind = 'fake';
  private readonly log: DriverCall[] = [];
  private readonly clock: Clock;
  private readonly latencyMs: Partial<Record<DriverOp, number>>;
  private readonly hypervisor: FakeHypervisor;
  private readonly faults: FaultRule[] = [];
  private readonly hangs: HangRule[] = [];
  private readonly exitListeners = new Set<(exit: VmExit) => void>();

  private readonly stateFile: string | undefined;

  constructor(options: FakeDriverOptions) {
    this.clock = options.clock;
    this.latencyMs = { ...options.latencyMs };
    this.stateFile = options.stateFile;
    this.hypervisor = new FakeHypervisor(options.clock, options.ids ?? (options.stateFile ? randomIds : sequentialIds()));
    if (this.stateFile && existsSync(this.stateFile)) this.hypervisor.load(JSON.parse(readFileSync(this.stateFile, 'utf8')));
  }

  /** Writes the state file atomically, so a process killed mid-write leaves the previous state. */
  private persist(): void {
    if (!this.stateFile) return;
    writeFileSync(`${this.stateFile}.tmp`, JSON.stringify(this.hypervisor));
    renameSync(`${this.stateFile}.tmp`, this.stateFile);
  }

  // --- the port ---

  prepareDrives(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    return this.run('prepareDrives', spec.instance_id, ctx, () => this.hypervisor.prepareDrives(spec));
  }

  boot(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    return this.run('boot', spec.instance_id, ctx, () => this.hypervisor.boot(spec));
  }

  checkReadiness(spec: InstanceSpec, service: ServiceSpec, ctx: OpContext): Promise<void> {
    return this.run('checkReadiness', spec.instance_id, ctx, () => this.hypervisor.probe(spec, service.name));
  }

  pause(instanceId: string, ctx: OpContext): Promise<void> {
    return this.run('pause', instanceId, ctx, () => this.hypervisor.pause(instanceId));
  }

  resume(instanceId: string, ctx: OpContext): Promise<void> {
    return this.run('resume', instanceId, ctx, () => this.hypervisor.resume(instanceId));
  }

  drain(instanceId: string, ctx: OpContext): Promise<void> {
    return this.run('drain', instanceId, ctx, () => this.hypervisor.drain(instanceId));
  }

  snapshot(spec: InstanceSpec, ctx: OpContext): Promise<SnapshotRef> {
    return this.run('snapshot', spec.instance_id, ctx, () => this.hypervisor.snapshot(spec));
  }

  restore(spec: InstanceSpec, snapshot: SnapshotRef, ctx: OpContext): Promise<void> {
    return this.run('restore', spec.instance_id, ctx, () => this.hypervisor.restore(spec, snapshot));
  }

  stop(instanceId: string, ctx: OpContext): Promise<void> {
    return this.run('stop', instanceId, ctx, () => this.hypervisor.stop(instanceId));
  }

  destroy(instanceId: string, ctx: OpContext): Promise<void> {
    return this.run('destroy', instanceId, ctx, () => this.hypervisor.destroy(instanceId));
  }

  reload(spec: InstanceSpec, what: ReloadRequest, ctx: OpContext): Promise<void> {
    return this.run('reload', spec.instance_id, ctx, () => this.hypervisor.reload(spec, what));
  }

  describe(): Promise<ObservedVm[]> {
    return this.run('describe', null, undefined, () => this.hypervisor.describe());
  }

  onExit(listener: (exit: VmExit) => void): () => void {
    // Wrap it so the same function subscribed twice gets two independent subscriptions.
    const subscription = (exit: VmExit) => listener(exit);
    this.exitListeners.add(subscription);
    return () => this.exitListeners.delete(subscription);
  }

  // --- fault injection ---

  /** The next matching call(s) reject with a DriverError (`injected` unless another code is given) and change nothing. */
  failNext(op: DriverOp, options: FaultOptions = {}): void {
    const times = options.times ?? 1;
    if (times <= 0) return;
    this.faults.push({ op, instanceId: options.instanceId, code: options.code ?? 'injected', retryable: options.retryable ?? true, remaining: times });
  }

  /** Matching calls stay pending until aborted or past their deadline. Returns a function that lifts the rule for later calls. */
  hang(op: DriverOp, instanceId?: string): () => void {
    const rule: HangRule = { op, instanceId };
    this.hangs.push(rule);
    return () => {
      const index = this.hangs.indexOf(rule);
      if (index >= 0) this.hangs.splice(index, 1);
    };
  }

  /** Drop every failNext and hang rule. */
  clearFaults(): void {
    this.faults.length = 0;
    this.hangs.length = 0;
  }

  /** A running or paused VM dies: it becomes `stopped` (persistent drives kept, secrets gone) and onExit listeners are told. */
  crash(instanceId: string, reason = 'SIGKILL'): void {
    if (!this.hypervisor.crash(instanceId)) throw new Error(`cannot crash ${instanceId}: no VM of it is running or paused`);
    this.persist();
    for (const listener of [...this.exitListeners]) listener({ instance_id: instanceId, reason });
  }

  /** The service answers `n` readiness probes with `not-ready` after each boot or restore, then is ready. */
  setReadyAfterProbes(instanceId: string, service: string, n: number): void {
    this.hypervisor.setReadyAfterProbes(instanceId, service, n);
  }

  /** The service never becomes ready. */
  setNeverReady(instanceId: string, service: string): void {
    this.hypervisor.setNeverReady(instanceId, service);
  }

  /** The guest writes a file to a writable drive of its running VM (to test what survives what). */
  guestWrite(instanceId: string, drive: string, path: string, content: string): void {
    this.hypervisor.guestWrite(instanceId, drive, path, content);
  }

  // --- observation ---

  /** Every call in the order made. */
  get calls(): readonly DriverCall[] {
    return this.log;
  }

  vm(instanceId: string): FakeVmView {
    return this.hypervisor.view(instanceId);
  }

  /** A copy of one drive as it is now, or undefined if it does not exist. */
  drive(instanceId: string, name: string): DriveContent | undefined {
    return this.hypervisor.drive(instanceId, name);
  }

  /** Instances with a VM up (running or paused), sorted. */
  bootedInstances(): string[] {
    return this.hypervisor.upInstances();
  }

  // --- timing ---

  private run<T>(op: DriverOp, instanceId: string | null, ctx: OpContext | undefined, effect: () => T): Promise<T> {
    const now = this.clock.now();
    this.log.push({ op, instanceId, at: now });
    const who = instanceId ?? 'host';
    const signal = ctx?.signal;
    const deadline = ctx?.deadline ?? Number.POSITIVE_INFINITY;

    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(new DriverError(op, who, 'aborted', 'aborted before it started', false));
      const hung = this.hangs.some((rule) => matches(rule, op, instanceId));
      const latency = hung ? Number.POSITIVE_INFINITY : Math.max(0, this.latencyMs[op] ?? 0);
      const pastDeadline = () => new DriverError(op, who, 'deadline', `did not finish by its deadline (${deadline - now} ms after it started)`, true);
      if (now + latency > deadline && deadline <= now) return reject(pastDeadline());
      const fault = hung ? undefined : this.takeFault(op, instanceId, who);

      let settled = false;
      let timer: unknown;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) this.clock.clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        outcome();
      };
      const onAbort = () => settle(() => reject(new DriverError(op, who, 'aborted', 'aborted while in progress', false)));
      const complete = () =>
        settle(() => {
          if (fault) return reject(fault);
          try {
            const result = effect();
            this.persist();
            resolve(result);
          } catch (error) {
            reject(error);
          }
        });

      signal?.addEventListener('abort', onAbort, { once: true });
      if (now + latency > deadline) timer = this.clock.setTimeout(() => settle(() => reject(pastDeadline())), deadline - now);
      else if (latency === Number.POSITIVE_INFINITY) return; // hung with no deadline: pending until aborted
      else if (latency > 0) timer = this.clock.setTimeout(complete, latency);
      else queueMicrotask(complete);
    });
  }

  private takeFault(op: DriverOp, instanceId: string | null, who: string): DriverError | undefined {
    const index = this.faults.findIndex((rule) => matches(rule, op, instanceId));
    const rule = this.faults[index];
    if (!rule) return undefined;
    rule.remaining -= 1;
    if (rule.remaining <= 0) this.faults.splice(index, 1);
    return new DriverError(op, who, rule.code, 'injected fault', rule.retryable);
  }
}

export function createFakeDriver(options: FakeDriverOptions): FakeDriver {
  return new FakeDriver(options);
}
