import type { NetworkIdentity } from '../schemas/instance.ts';
import type { Resources } from '../schemas/profile-manifest.ts';
import type { Revision } from '../schemas/revision.ts';
import type { ServiceSpec } from '../schemas/role-manifest.ts';
import type { z } from 'zod';

/**
 * The VMM driver port: the only way the actor runtime touches a hypervisor. A driver is mechanism
 * without policy: each call makes one idempotent attempt before `ctx.deadline` and reports back
 * by resolving or throwing a DriverError. Timeouts, retries, ordering and floors live in the
 * statecharts. The fake driver (tests), the dev-mode simulator and the Firecracker driver all
 * implement this interface unchanged.
 */

/** One drive as the host computed it; drivers only materialize it. */
export interface DriveContent {
  name: string;
  device: string;
  mount: string;
  label: string;
  read_only: boolean;
  persistence: 'persistent' | 'ephemeral' | 'versioned' | 'disposable';
  /** Size for drives the driver creates empty (data, scratch). */
  size_mib: number;
  /** Files to write into the drive, by path relative to its root (config and secrets drives). Never logged. */
  files: Record<string, string>;
}

/** Everything a driver needs to build, boot and restore one microVM. */
export interface InstanceSpec {
  instance_id: string;
  tenant_id: string;
  pool_id: string;
  role: string;
  profile: string;
  revision: Revision;
  resources: Resources;
  /**
   * The persisted identity plus, from the tenant's addressing (src/host/addressing.ts), the
   * gateway (the tenant subnet's network + 1) and the subnet's prefix length the guest configures.
   * Optional so specs built without a tenant (older callers, tests) stay valid; a driver that
   * configures the guest's network refuses a spec without them rather than guess.
   */
  network: z.infer<typeof NetworkIdentity> & { gateway?: string; prefix_len?: number };
  drives: DriveContent[];
  /** The role manifest hash this boot uses. */
  manifest_hash: string;
  /** vsock port of the guest agent and the handlers it enables. */
  vsock: { agent_port: number; handlers: string[] };
}

export interface OpContext {
  /** Aborted when the actor leaves the state that started the operation. */
  signal: AbortSignal;
  /** Absolute time (ms since the epoch, from the injected clock) by which to give up. */
  deadline: number;
}

/** What a snapshot is tied to: a wake against a different bundle or manifest is refused. */
export interface SnapshotRef {
  snapshot_id: string;
  artifacts: string;
  manifest_hash: string;
  created_at: number;
}

export type ObservedState = 'running' | 'paused' | 'stopped' | 'absent';

/** What the driver finds really there, e.g. after a control-plane restart. */
export interface ObservedVm {
  instance_id: string;
  state: ObservedState;
  snapshot: SnapshotRef | null;
}

export interface VmExit {
  instance_id: string;
  /** Process exit code or signal name, as far as the driver knows. */
  reason: string;
}

export type DriverOp = 'prepareDrives' | 'boot' | 'checkReadiness' | 'pause' | 'resume' | 'drain' | 'snapshot' | 'restore' | 'stop' | 'destroy' | 'describe' | 'reload';

/**
 * What a live reload of a running VM carries (VmmDriver.reload): the config drive rewritten for
 * `spec.revision.config_version` and the guest told over vsock (`config-reload`), and/or the
 * secrets drive rewritten from the secret store and the guest told the new
 * `spec.revision.secrets_epoch` (`secrets-reload`). The chart asks only for what the role's
 * manifest enables (`vsock.handlers`).
 */
export interface ReloadRequest {
  config: boolean;
  secrets: boolean;
}

export class DriverError extends Error {
  override readonly name = 'DriverError';
  constructor(
    readonly op: DriverOp,
    readonly instanceId: string,
    /** Stable machine-readable code, e.g. `not-ready`, `deadline`, `vm-missing`, `injected`. */
    readonly code: string,
    message: string,
    /** Whether the same call may succeed if tried again. */
    readonly retryable: boolean,
  ) {
    super(`${op} ${instanceId}: ${message}`);
  }
}

export interface VmmDriver {
  /** `fake`, `sim` or `firecracker`. */
  readonly kind: string;
  /** Create or refresh the instance's drives from `spec.drives` (idempotent; persistent drives are kept). */
  prepareDrives(spec: InstanceSpec, ctx: OpContext): Promise<void>;
  /** Start the VM (idempotent: an already running VM for this id is left alone). */
  boot(spec: InstanceSpec, ctx: OpContext): Promise<void>;
  /** One readiness probe of one service; throws a retryable DriverError `not-ready` when not ready yet. */
  checkReadiness(spec: InstanceSpec, service: ServiceSpec, ctx: OpContext): Promise<void>;
  /** Pause with memory resident (warm). */
  pause(instanceId: string, ctx: OpContext): Promise<void>;
  resume(instanceId: string, ctx: OpContext): Promise<void>;
  /** Ask the guest agent (over vsock) to finish in-flight work before a snapshot. */
  drain(instanceId: string, ctx: OpContext): Promise<void>;
  /** Snapshot a paused or running VM to disk and stop it; data drives are kept. */
  snapshot(spec: InstanceSpec, ctx: OpContext): Promise<SnapshotRef>;
  /** Start a VM again from its snapshot; refuses a snapshot from another bundle or manifest. */
  restore(spec: InstanceSpec, snapshot: SnapshotRef, ctx: OpContext): Promise<void>;
  /** Stop the VM (idempotent: stopping an absent VM succeeds). Persistent drives are kept. */
  stop(instanceId: string, ctx: OpContext): Promise<void>;
  /** Stop and remove everything the instance had, drives and snapshots included (idempotent). */
  destroy(instanceId: string, ctx: OpContext): Promise<void>;
  /**
   * Brings a new config version and/or secrets epoch to the *running* VM without a reboot:
   * rewrite the drive(s) the request names from `spec.drives`, then send `config-reload` /
   * `secrets-reload` with `spec.revision`'s version / epoch over vsock and wait for the guest's
   * answer. Idempotent (the same spec again rewrites the same contents and the guest answers
   * the same). Refuses a VM that is not running (`vm-missing`, `vm-paused`) and a guest that did
   * not apply the version (`not-applied`). A new bundle never goes this way: it needs a boot.
   */
  reload(spec: InstanceSpec, what: ReloadRequest, ctx: OpContext): Promise<void>;
  /** Every VM this driver knows of on this host. */
  describe(): Promise<ObservedVm[]>;
  /** Unexpected exits (crash, guest reboot). Returns an unsubscribe function. */
  onExit(listener: (exit: VmExit) => void): () => void;
}
