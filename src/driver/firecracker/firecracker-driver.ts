import { VmExitWatch } from '../vm-exit-watch.ts';
import { reloadError, requireReloadHandlers, sendReloadVerbs } from '../guest-reload.ts';
import { createHash, randomBytes } from 'node:crypto';
import { chown, copyFile, lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../../common/clock.ts';
import { type IdSource, randomIds } from '../../common/ids.ts';
import { FirecrackerApiClient, FirecrackerApiError, type InstanceInfo } from '../../firecracker/api-client.ts';
import { type JailPlan, jailIdsFor, planJail, prepareChroot } from '../../firecracker/jailer.ts';
import { type BundleBootFiles, type GuestNetwork, type InstancePaths, IFACE_ID, buildVmConfig } from '../../firecracker/vm-config.ts';
import { InstanceId, LocalName } from '../../schemas/ids.ts';
import type { ServiceSpec } from '../../schemas/role-manifest.ts';
import { VsockError } from '../../vsock/errors.ts';
import { connectGuestAgent, type VsockHostClient } from '../../vsock/host-client.ts';
import { type PidRecord, liveProcess, signalGroup } from '../sim/proc.ts';
import { DriverError, type DriveContent, type DriverOp, type InstanceSpec, type ObservedVm, type OpContext, type ReloadRequest, type SnapshotRef, type VmExit, type VmmDriver } from '../vmm-driver.ts';
import { bootSequence, sleepSequence, wakeSequence } from './api-sequences.ts';
import { type FirecrackerLayout, firecrackerLayout } from './layout.ts';
import { readSnapshotRecord, refOf, snapshotMismatch, writeSnapshotRecord } from './snapshot-record.ts';
import { readPidRecord, startVmm, writePidRecord } from './vmm-process.ts';

/**
 * The Firecracker VMM driver: one `firecracker --api-sock` process per microVM, configured over
 * its API socket (src/firecracker/api-client.ts), with ext4 drive images and a vsock device whose
 * host side speaks the guest agent protocol (src/vsock/).
 *
 * - boot: images (config kept per content, data created once, secrets built fresh), the tap on
 *   the tenant bridge, a detached Firecracker process with a pid file, then machine-config,
 *   boot-source (the kernel's static IP with the tenant's gateway and prefix length from the
 *   spec), drives, network interface, vsock and InstanceStart; the secrets image is deleted once
 *   the guest runs.
 * - under the jailer (option `jailer`): the jailer is started instead, with the instance's own
 *   uid/gid (from its vsock CID), cgroup v2 limits from the pool's resources, and every file the
 *   VMM opens hard-linked into its chroot; every path the API sees is chroot-relative.
 * - pause/resume: PATCH /vm Paused/Resumed (warm).
 * - reload (a new config version or secrets epoch, live): the config image rebuilt and/or a
 *   secrets image built, each swapped in with `PATCH /drives/{drive_id}` (allowed after boot:
 *   Firecracker reopens `path_on_host` and tells the guest the block device changed), the secrets
 *   image deleted again, then the guest agent's config-reload / secrets-reload over vsock.
 * - snapshot (sleep): pause, PUT /snapshot/create (Full), record what it is tied to, stop the
 *   process; the data image stays.
 * - restore (wake): refused when the snapshot's bundle or manifest differs from the spec's; else a
 *   fresh process, PUT /snapshot/load with the tap and vsock overrides and resume_vm, then the
 *   guest agent's post-restore step (new secrets epoch, fresh entropy seed) over vsock.
 *
 * Each call makes one attempt before `ctx.deadline` and is idempotent: a VM already in the wanted
 * state is left alone, and a process that never got past configuration is replaced. Unexpected
 * exits of a Firecracker process (a guest reboot ends it) are reported through onExit; describe()
 * reads pid files and asks each live process its state, so a restarted control plane adopts them.
 */

/** The bundle as the artifact store (src/bundle/artifact-store.ts) resolves it. */
export interface ResolvedBundle extends BundleBootFiles {
  /** "sha256:<64 hex>" over the bundle's files. */
  hash: string;
  manifestHash: string;
}

export interface BundleResolver {
  resolve(ref: string): Promise<ResolvedBundle>;
}

/** ext4 images without root or loop mounts (src/firecracker/drive-images.ts). */
export interface DriveImageTools {
  buildFilesImage(opts: { path: string; label: string; files: Record<string, string>; sizeMib?: number; fileMode?: number }): Promise<void>;
  ensureDataImage(opts: { path: string; label: string; sizeMib: number }): Promise<boolean>;
}

/** Host networking (the networking engineer's): the instance's tap on its tenant bridge. */
export interface TapManager {
  ensureTap(spec: InstanceSpec): Promise<void>;
  removeTap(spec: InstanceSpec): Promise<void>;
}

export interface FirecrackerDriverOptions {
  stateDir: string;
  clock: Clock;
  /** The `firecracker` binary (or anything that takes `--api-sock <path>` like it). */
  firecrackerBin: string;
  /** Extra arguments after `--api-sock <path>`. */
  firecrackerArgs?: string[];
  artifacts: BundleResolver;
  images: DriveImageTools;
  taps?: TapManager;
  /**
   * The tenant network as the guest configures it, for specs that do not carry
   * `network.gateway` and `network.prefix_len` (DrivePlanner.spec with the tenant does). Without
   * either, boot is refused: a guessed netmask would silently cut a guest off from its tenant.
   */
  guestNetwork?: (spec: InstanceSpec) => GuestNetwork | undefined;
  /** Run each VMM under Firecracker's jailer instead of directly. */
  jailer?: JailerOptions;
  ids?: IdSource;
  /** How long stop waits after SIGTERM before SIGKILL (clock ms). */
  stopGraceMs?: number;
  /** How often adopted VMs (started by an earlier control plane) are checked for exits. */
  adoptedPollMs?: number;
  /** How long a fresh process may take to answer on its API socket. */
  apiReadyMs?: number;
}

export interface JailerOptions {
  /** The `jailer` binary. */
  jailerBin: string;
  /** `--chroot-base-dir`: each VM's chroot is `<chrootBase>/<firecracker file name>/<instance>/root`. */
  chrootBase: string;
  /** First uid/gid of the per-instance range (jailIdsFor's base; the instance's vsock CID is the index). */
  idBase?: number;
}

const POLL_MS = 10;


/** What the running VM was started with; drain and describe need it without a spec. */
interface RuntimeRecord {
  instance_id: string;
  tenant_id: string;
  agent_port: number;
  /** The spec without any drive contents (never a secret value on disk): for the tap and the secrets images. */
  spec: InstanceSpec;
}

/** The guest's gateway and prefix length: from the spec (the tenant's addressing), else the option, else a refusal. */
export function guestNetworkFor(op: DriverOp, spec: InstanceSpec, fallback?: (spec: InstanceSpec) => GuestNetwork | undefined): GuestNetwork {
  const { gateway, prefix_len } = spec.network;
  if (gateway !== undefined && prefix_len !== undefined) return { gateway, prefixLength: prefix_len };
  const given = fallback?.(spec);
  if (given) return given;
  throw new DriverError(
    op,
    spec.instance_id,
    'guest-network-unknown',
    `the spec has no network.gateway and network.prefix_len for tenant "${spec.tenant_id}"; build it with the tenant (DrivePlanner.spec(..., tenant)) or give the driver a guestNetwork option`,
    false,
  );
}

export class FirecrackerDriver implements VmmDriver {
  readonly kind = 'firecracker';
  readonly stateDir: string;
  readonly #vmsDir: string;
  readonly #options: FirecrackerDriverOptions;
  readonly #clock: Clock;
  readonly #ids: IdSource;
  readonly #stopGraceMs: number;
  readonly #apiReadyMs: number;
  readonly #exits: VmExitWatch;

  constructor(options: FirecrackerDriverOptions) {
    this.stateDir = path.resolve(options.stateDir);
    this.#vmsDir = path.join(this.stateDir, 'vms');
    this.#options = options;
    this.#clock = options.clock;
    this.#ids = options.ids ?? randomIds;
    this.#stopGraceMs = options.stopGraceMs ?? 3000;
    this.#exits = new VmExitWatch(options.clock, options.adoptedPollMs ?? 1000);
    this.#apiReadyMs = options.apiReadyMs ?? 10_000;
  }

  // --- the port ---

  prepareDrives(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    return this.#op('prepareDrives', spec.instance_id, ctx, async (layout, check) => {
      await mkdir(layout.drivesDir, { recursive: true, mode: 0o700 });
      for (const drive of spec.drives) {
        check();
        const image = layout.drive(this.#driveName('prepareDrives', spec.instance_id, drive.name));
        switch (drive.persistence) {
          case 'persistent':
          case 'disposable':
            // Created once at the pool's size; what the guest wrote since is kept.
            if (await exists(image)) break;
            if (Object.keys(drive.files).length > 0) await this.#options.images.buildFilesImage({ path: image, label: drive.label, files: drive.files, sizeMib: drive.size_mib });
            else await this.#options.images.ensureDataImage({ path: image, label: drive.label, sizeMib: drive.size_mib });
            break;
          case 'versioned': {
            // Rebuilt only when its contents change: a running VM keeps reading the image it mounted.
            const stamp = contentHash(drive);
            const current = await readFile(layout.driveStamp(drive.name), 'utf8').catch(() => null);
            if (current === stamp && (await exists(image))) break;
            await this.#options.images.buildFilesImage({ path: image, label: drive.label, files: drive.files, fileMode: 0o444 });
            await writeFile(layout.driveStamp(drive.name), stamp);
            break;
          }
          case 'ephemeral':
            // Secrets are written only right before a boot or wake, and deleted once the VM runs.
            break;
        }
      }
    });
  }

  boot(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    return this.#op('boot', spec.instance_id, ctx, async (layout, check) => {
      const id = spec.instance_id;
      const live = this.#liveRecord(layout);
      if (live) {
        const info = await this.#info(layout, ctx).catch(() => null);
        if (info && info.state !== 'Not started') {
          this.#exits.adopt(id, readPidRecord(layout.pidFile));
          return;
        }
        // A process that never got past configuration (an earlier attempt died half-way): start over.
        await this.#shutDown(id, layout, check);
      }
      await this.#requireDrives('boot', spec, layout);
      const bundle = await this.#bundle('boot', spec);
      // This boot starts from the bundle: a snapshot left from an earlier sleep is stale now.
      await rm(layout.snapshotDir, { recursive: true, force: true });
      if (layout.jail) await rm(layout.jail.snapshotDir, { recursive: true, force: true });
      const config = buildVmConfig(spec, bundle, this.#paths(spec, bundle, layout), guestNetworkFor('boot', spec, this.#options.guestNetwork));
      await this.#writeSecrets(spec, layout);
      try {
        await writeFile(layout.configFile, `${JSON.stringify(config, null, 2)}\n`);
        await this.#options.taps?.ensureTap(spec);
        const jail = await this.#prepareJail('boot', spec, layout, this.#jailFiles(spec, bundle, layout, false));
        const client = await this.#spawn('boot', spec, layout, ctx, check, jail);
        try {
          await bootSequence(client, config, this.#requestOptions(ctx));
        } catch (error) {
          // Leave nothing half-configured behind: the next attempt starts a fresh process.
          await this.#shutDown(id, layout, () => undefined);
          throw this.#apiError('boot', id, error);
        }
      } finally {
        await this.#deleteSecrets(spec, layout);
      }
    });
  }

  checkReadiness(spec: InstanceSpec, service: ServiceSpec, ctx: OpContext): Promise<void> {
    return this.#op('checkReadiness', spec.instance_id, ctx, async (layout) => {
      const notReady = (why: string) => new DriverError('checkReadiness', spec.instance_id, 'not-ready', `${service.name} is not ready: ${why}`, true);
      if (!this.#liveRecord(layout)) throw notReady('the VM is not running');
      const client = await this.#agent('checkReadiness', spec.instance_id, layout, spec.vsock.agent_port, spec.tenant_id, ctx).catch((error: DriverError) => {
        throw notReady(error.message);
      });
      try {
        const answer = await client.request('readiness', { service: service.name }, { deadlineMs: this.#remaining(ctx, 5000) });
        if (!answer.ready) throw notReady(answer.services.map((s) => `${s.name}: ${s.state}${s.detail ? ` (${s.detail})` : ''}`).join('; '));
      } catch (error) {
        if (error instanceof DriverError) throw error;
        throw notReady((error as Error).message);
      } finally {
        client.close();
      }
    });
  }

  pause(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#op('pause', instanceId, ctx, async (layout) => {
      this.#requireLive('pause', instanceId, layout);
      await this.#client(layout).patchVm('Paused', this.#requestOptions(ctx)).catch((error: unknown) => {
        throw this.#apiError('pause', instanceId, error);
      });
    });
  }

  resume(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#op('resume', instanceId, ctx, async (layout) => {
      this.#requireLive('resume', instanceId, layout);
      await this.#client(layout).patchVm('Resumed', this.#requestOptions(ctx)).catch((error: unknown) => {
        throw this.#apiError('resume', instanceId, error);
      });
    });
  }

  drain(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#op('drain', instanceId, ctx, async (layout) => {
      this.#requireLive('drain', instanceId, layout);
      const runtime = await this.#runtime(layout);
      if (!runtime) throw new DriverError('drain', instanceId, 'vm-missing', `no runtime record in ${layout.runtimeFile}`, false);
      const client = await this.#agent('drain', instanceId, layout, runtime.agent_port, runtime.tenant_id, ctx);
      try {
        // A role that does not enable drain has no in-flight work the host could wait for.
        if (!client.handlers.has('drain')) return;
        const waitMs = this.#remaining(ctx, 60_000);
        const answer = await client.request('drain', { deadline_ms: Math.max(0, waitMs - 500) }, { deadlineMs: waitMs });
        if (!answer.drained) throw new DriverError('drain', instanceId, 'not-drained', `${answer.in_flight} work items still in flight after ${answer.waited_ms} ms`, true);
      } catch (error) {
        if (error instanceof DriverError) throw error;
        throw new DriverError('drain', instanceId, 'agent', (error as Error).message, true);
      } finally {
        client.close();
      }
    });
  }

  snapshot(spec: InstanceSpec, ctx: OpContext): Promise<SnapshotRef> {
    return this.#op('snapshot', spec.instance_id, ctx, async (layout, check) => {
      const id = spec.instance_id;
      const existing = await readSnapshotRecord(layout.snapshotRecord);
      if (!this.#liveRecord(layout)) {
        // Asked again after the snapshot was taken and the process stopped: the same answer.
        if (existing && !snapshotMismatch(existing, spec.revision.artifacts, spec.manifest_hash)) return refOf(existing);
        throw new DriverError('snapshot', id, 'vm-missing', 'no VM of this instance is running or paused', false);
      }
      const bundle = await this.#bundle('snapshot', spec);
      await rm(layout.snapshotDir, { recursive: true, force: true });
      await mkdir(layout.snapshotDir, { recursive: true, mode: 0o700 });
      const jail = layout.jail;
      if (jail) {
        // The jailed VMM writes into its chroot's /snapshot, which only its uid may write.
        await rm(jail.snapshotDir, { recursive: true, force: true });
        await mkdir(jail.snapshotDir, { recursive: true, mode: 0o700 });
        if (process.getuid?.() === 0) {
          const ids = this.#jailIds('snapshot', spec);
          await chown(jail.snapshotDir, ids.uid, ids.gid);
        }
      }
      const files = jail ? { snapshotPath: jail.inside.snapshotState, memPath: jail.inside.snapshotMemory } : { snapshotPath: layout.snapshotState, memPath: layout.snapshotMemory };
      try {
        await sleepSequence(this.#client(layout), { ...files, type: 'Full' }, this.#requestOptions(ctx));
      } catch (error) {
        throw this.#apiError('snapshot', id, error);
      }
      if (jail) {
        // Out of the jail before the record commits the sleep: the jailed process may not alter it later.
        await moveFile(path.join(jail.chrootDir, jail.inside.snapshotState), layout.snapshotState);
        await moveFile(path.join(jail.chrootDir, jail.inside.snapshotMemory), layout.snapshotMemory);
      }
      const record = {
        snapshot_id: this.#ids.next('snap'),
        artifacts: spec.revision.artifacts,
        bundle_hash: bundle.hash,
        manifest_hash: spec.manifest_hash,
        created_at: this.#clock.now(),
        snapshot_type: 'Full' as const,
      };
      await writeSnapshotRecord(layout.snapshotRecord, record);
      await this.#shutDown(id, layout, check);
      return refOf(record);
    });
  }

  restore(spec: InstanceSpec, snapshot: SnapshotRef, ctx: OpContext): Promise<void> {
    return this.#op('restore', spec.instance_id, ctx, async (layout, check) => {
      const id = spec.instance_id;
      const mismatch = snapshotMismatch(snapshot, spec.revision.artifacts, spec.manifest_hash);
      if (mismatch) throw new DriverError('restore', id, 'snapshot-mismatch', `snapshot ${snapshot.snapshot_id} ${mismatch}; boot from the bundle instead`, false);
      if (this.#liveRecord(layout)) {
        const info = await this.#info(layout, ctx).catch(() => null);
        if (info?.state === 'Running') return;
        if (info?.state === 'Paused') {
          await this.#client(layout).patchVm('Resumed', this.#requestOptions(ctx)).catch((error: unknown) => {
            throw this.#apiError('restore', id, error);
          });
          return;
        }
        await this.#shutDown(id, layout, check);
      }
      const record = await readSnapshotRecord(layout.snapshotRecord);
      if (!record || record.snapshot_id !== snapshot.snapshot_id) throw new DriverError('restore', id, 'no-snapshot', `snapshot ${snapshot.snapshot_id} is not on this host`, false);
      const onDisk = snapshotMismatch(record, snapshot.artifacts, snapshot.manifest_hash);
      if (onDisk) throw new DriverError('restore', id, 'snapshot-mismatch', `the snapshot on disk ${onDisk}`, false);
      const bundle = await this.#bundle('restore', spec);
      if (bundle.hash !== record.bundle_hash) {
        throw new DriverError('restore', id, 'snapshot-mismatch', `snapshot ${snapshot.snapshot_id} was taken with bundle content ${record.bundle_hash}, but ${spec.revision.artifacts} is now ${bundle.hash}; boot from the bundle instead`, false);
      }
      await this.#requireDrives('restore', spec, layout);
      await this.#writeSecrets(spec, layout);
      try {
        await this.#options.taps?.ensureTap(spec);
        const jail = await this.#prepareJail('restore', spec, layout, this.#jailFiles(spec, bundle, layout, true));
        const client = await this.#spawn('restore', spec, layout, ctx, check, jail);
        const inside = layout.jail?.inside;
        try {
          await wakeSequence(
            client,
            {
              snapshotPath: inside?.snapshotState ?? layout.snapshotState,
              memPath: inside?.snapshotMemory ?? layout.snapshotMemory,
              network: [{ iface_id: IFACE_ID, host_dev_name: spec.network.tap }],
              vsockUds: inside?.vsock ?? layout.vsockSocket,
              trackDirtyPages: false,
            },
            this.#requestOptions(ctx),
          );
        } catch (error) {
          // Firecracker ends the process after a failed load; make sure of it, and keep the snapshot.
          await this.#shutDown(id, layout, () => undefined);
          throw this.#apiError('restore', id, error);
        }
        // The VM runs on from here: the snapshot is used up (Firecracker still maps its memory
        // file, which stays until the next snapshot, stop or destroy).
        await rm(layout.snapshotRecord, { force: true });
        await this.#postRestore(spec, layout, ctx);
      } finally {
        await this.#deleteSecrets(spec, layout);
      }
    });
  }

  reload(spec: InstanceSpec, what: ReloadRequest, ctx: OpContext): Promise<void> {
    return this.#op('reload', spec.instance_id, ctx, async (layout, check) => {
      const id = spec.instance_id;
      this.#requireLive('reload', id, layout);
      const info = await this.#info(layout, ctx);
      if (info.state === 'Paused') throw new DriverError('reload', id, 'vm-paused', 'the VM is paused; its guest agent cannot reload', false);
      if (info.state !== 'Running') throw new DriverError('reload', id, 'vm-missing', `the VM is ${info.state}, not running`, false);
      const bundle = await this.#bundle('reload', spec);
      const paths = this.#paths(spec, bundle, layout);
      const runtime = await this.#runtime(layout);
      const client = await this.#agent('reload', id, layout, runtime?.agent_port ?? spec.vsock.agent_port, spec.tenant_id, ctx);
      try {
        requireReloadHandlers(client, id, what);
        await this.#swapDrives(spec, what, paths, layout, ctx, check);
        await sendReloadVerbs(client, spec, what, (capMs) => this.#remaining(ctx, capMs));
      } catch (error) {
        throw reloadError(id, error);
      } finally {
        client.close();
      }
    });
  }

  stop(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#op('stop', instanceId, ctx, async (layout, check) => {
      if (!(await exists(layout.dir))) return;
      await this.#shutDown(instanceId, layout, check);
    });
  }

  destroy(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#op('destroy', instanceId, ctx, async (layout, check) => {
      if (!(await exists(layout.dir))) return;
      await this.#shutDown(instanceId, layout, check);
      const spec = await this.#lastSpecForTap(layout);
      if (spec) await this.#options.taps?.removeTap(spec);
      if (layout.jail) await rm(layout.jail.jailDir, { recursive: true, force: true });
      await rm(layout.dir, { recursive: true, force: true });
      this.#exits.forget(instanceId);
    });
  }

  async describe(): Promise<ObservedVm[]> {
    const names = await readdir(this.#vmsDir).catch(() => [] as string[]);
    const out: ObservedVm[] = [];
    for (const name of names.sort()) {
      if (!InstanceId.safeParse(name).success) continue;
      const layout = firecrackerLayout(path.join(this.#vmsDir, name), this.#chrootDir(name));
      if (!(await stat(layout.dir).then((s) => s.isDirectory(), () => false))) continue;
      const snapshot = await readSnapshotRecord(layout.snapshotRecord);
      let state: ObservedVm['state'] = 'stopped';
      if (this.#liveRecord(layout)) {
        const info = await this.#info(layout, { signal: new AbortController().signal, deadline: this.#clock.now() + 2000 }).catch(() => null);
        // A live process that does not answer is still there: report it running so it is not started twice.
        state = info?.state === 'Paused' ? 'paused' : info?.state === 'Not started' ? 'stopped' : 'running';
        this.#exits.adopt(name, readPidRecord(layout.pidFile));
      }
      out.push({ instance_id: name, state, snapshot: snapshot ? refOf(snapshot) : null });
    }
    return out;
  }

  onExit(listener: (exit: VmExit) => void): () => void {
    return this.#exits.onExit(listener);
  }

  // --- beyond the port ---

  /** Stops watching VMs (they keep running: they are detached). */
  close(): void {
    this.#exits.close();
  }

  /** The VM's directory (validates the id). */
  vmDir(instanceId: string): string {
    return this.#layout('describe', instanceId).dir;
  }

  /** The Firecracker process of a running or paused VM, or null. */
  pidOf(instanceId: string): number | null {
    return this.#liveRecord(this.#layout('describe', instanceId))?.pid ?? null;
  }

  // --- internals ---

  #layout(op: DriverOp, instanceId: string): FirecrackerLayout {
    // Ids become paths: only a valid id, and only directly under vms/, is ever touched.
    if (!InstanceId.safeParse(instanceId).success) throw new DriverError(op, String(instanceId), 'bad-instance-id', `not a valid instance id: ${JSON.stringify(instanceId)}`, false);
    const dir = path.join(this.#vmsDir, instanceId);
    if (path.dirname(dir) !== this.#vmsDir) throw new DriverError(op, instanceId, 'bad-instance-id', 'instance id escapes the state directory', false);
    return firecrackerLayout(dir, this.#chrootDir(instanceId));
  }

  /** The jailer's chroot for the instance (it derives it from --chroot-base-dir, the exec file's name and --id), or null unjailed. */
  #chrootDir(instanceId: string): string | null {
    const jailer = this.#options.jailer;
    return jailer ? path.join(path.resolve(jailer.chrootBase), path.basename(this.#options.firecrackerBin), instanceId, 'root') : null;
  }

  #jailIds(op: DriverOp, spec: InstanceSpec): { uid: number; gid: number } {
    try {
      // The vsock CID is unique per host and persisted with the instance: so is its uid.
      return jailIdsFor(spec.network.vsock_cid, this.#options.jailer?.idBase);
    } catch (error) {
      throw new DriverError(op, spec.instance_id, 'jail', (error as Error).message, false);
    }
  }

  /** Host file -> path inside the chroot, for every file a jailed VMM opens at this boot or wake. */
  #jailFiles(spec: InstanceSpec, bundle: ResolvedBundle, layout: FirecrackerLayout, withSnapshot: boolean): Record<string, string> {
    const inside = layout.jail?.inside;
    if (!inside) return {};
    const files: Record<string, string> = { [bundle.kernel]: inside.kernel, [bundle.rootfs]: inside.rootfs };
    if (bundle.initrd) files[bundle.initrd] = inside.initrd;
    for (const drive of spec.drives) files[layout.drive(drive.name)] = inside.drive(drive.name);
    if (withSnapshot) {
      files[layout.snapshotState] = inside.snapshotState;
      files[layout.snapshotMemory] = inside.snapshotMemory;
    }
    return files;
  }

  /** Plans the jail and links its files into the chroot; null when this driver runs Firecracker unjailed. */
  async #prepareJail(op: DriverOp, spec: InstanceSpec, layout: FirecrackerLayout, files: Record<string, string>): Promise<JailPlan | null> {
    const jailer = this.#options.jailer;
    if (!jailer || !layout.jail) return null;
    let plan: JailPlan;
    try {
      plan = planJail({
        jailerBin: jailer.jailerBin,
        firecrackerBin: this.#options.firecrackerBin,
        instanceId: spec.instance_id,
        chrootBase: path.resolve(jailer.chrootBase),
        ...this.#jailIds(op, spec),
        // The project's Resources name it mem_mib; the jail plan sizes memory.max from memory_mib.
        resources: { vcpus: spec.resources.vcpus, memory_mib: spec.resources.mem_mib },
        files,
      });
    } catch (error) {
      if (error instanceof DriverError) throw error;
      throw new DriverError(op, spec.instance_id, 'jail', (error as Error).message, false);
    }
    await prepareChroot(plan);
    return plan;
  }

  #driveName(op: DriverOp, instanceId: string, name: string): string {
    if (!LocalName.safeParse(name).success) throw new DriverError(op, instanceId, 'bad-drive', `not a valid drive name: ${JSON.stringify(name)}`, false);
    return name;
  }

  async #op<T>(op: DriverOp, instanceId: string, ctx: OpContext, body: (layout: FirecrackerLayout, check: () => void) => Promise<T>): Promise<T> {
    const check = () => {
      if (ctx.signal.aborted) throw new DriverError(op, instanceId, 'aborted', 'aborted', false);
      if (this.#clock.now() >= ctx.deadline) throw new DriverError(op, instanceId, 'deadline', 'did not finish by its deadline', true);
    };
    if (ctx.signal.aborted) throw new DriverError(op, instanceId, 'aborted', 'aborted before it started', false);
    if (ctx.deadline <= this.#clock.now()) throw new DriverError(op, instanceId, 'deadline', 'the deadline passed before it started', true);
    const layout = this.#layout(op, instanceId);
    try {
      return await body(layout, check);
    } catch (error) {
      if (error instanceof DriverError) throw error;
      if (error instanceof FirecrackerApiError) throw this.#apiError(op, instanceId, error);
      throw new DriverError(op, instanceId, 'io', (error as Error).message, true);
    }
  }

  /** A Firecracker API failure as the port's error: refusals are final, transport trouble may pass. */
  #apiError(op: DriverOp, instanceId: string, error: unknown): DriverError {
    if (error instanceof DriverError) return error;
    if (!(error instanceof FirecrackerApiError)) return new DriverError(op, instanceId, 'io', (error as Error).message, true);
    switch (error.kind) {
      case 'status':
        return new FirecrackerRefusal(op, instanceId, error);
      case 'deadline':
        return new DriverError(op, instanceId, 'deadline', error.message, true);
      case 'aborted':
        return new DriverError(op, instanceId, 'aborted', error.message, false);
      default:
        return new DriverError(op, instanceId, 'vmm-unreachable', error.message, true);
    }
  }

  #requestOptions(ctx: OpContext): { deadline: number; signal: AbortSignal } {
    return { deadline: ctx.deadline, signal: ctx.signal };
  }

  #remaining(ctx: OpContext, cap: number): number {
    return Math.max(1, Math.min(cap, ctx.deadline - this.#clock.now()));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#clock.setTimeout(resolve, ms));
  }

  #client(layout: FirecrackerLayout): FirecrackerApiClient {
    return new FirecrackerApiClient({ socketPath: layout.apiSocket, clock: this.#clock });
  }

  #info(layout: FirecrackerLayout, ctx: OpContext): Promise<InstanceInfo> {
    return this.#client(layout).describeInstance({ deadline: Math.min(ctx.deadline, this.#clock.now() + 2000), signal: ctx.signal });
  }

  #liveRecord(layout: FirecrackerLayout): PidRecord | null {
    const record = readPidRecord(layout.pidFile);
    return liveProcess(record) ? record : null;
  }

  #requireLive(op: DriverOp, instanceId: string, layout: FirecrackerLayout): PidRecord {
    const record = this.#liveRecord(layout);
    if (!record) throw new DriverError(op, instanceId, 'vm-missing', 'no VM of this instance is running or paused', false);
    return record;
  }

  async #bundle(op: DriverOp, spec: InstanceSpec): Promise<ResolvedBundle> {
    let bundle: ResolvedBundle;
    try {
      bundle = await this.#options.artifacts.resolve(spec.revision.artifacts);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      throw new DriverError(op, spec.instance_id, typeof code === 'string' ? code : 'bundle-unknown', `bundle ${spec.revision.artifacts}: ${(error as Error).message}`, false);
    }
    if (bundle.manifestHash !== spec.manifest_hash) {
      throw new DriverError(op, spec.instance_id, 'bundle-mismatch', `bundle ${spec.revision.artifacts} carries manifest ${bundle.manifestHash}, but the pool's role manifest is ${spec.manifest_hash}; import the bundle built from this manifest`, false);
    }
    return bundle;
  }

  /** The paths the VMM is given: host paths, or chroot-relative ones under the jailer. */
  #paths(spec: InstanceSpec, bundle: ResolvedBundle, layout: FirecrackerLayout): InstancePaths {
    const inside = layout.jail?.inside;
    if (!inside) return { drives: Object.fromEntries(spec.drives.map((d) => [d.name, layout.drive(d.name)])), vsockUds: layout.vsockSocket };
    return {
      drives: Object.fromEntries(spec.drives.map((d) => [d.name, inside.drive(d.name)])),
      vsockUds: inside.vsock,
      kernel: inside.kernel,
      initrd: bundle.initrd ? inside.initrd : null,
      rootfs: inside.rootfs,
    };
  }

  async #requireDrives(op: DriverOp, spec: InstanceSpec, layout: FirecrackerLayout): Promise<void> {
    for (const drive of spec.drives) {
      if (drive.persistence === 'ephemeral') continue;
      if (!(await exists(layout.drive(this.#driveName(op, spec.instance_id, drive.name))))) {
        throw new DriverError(op, spec.instance_id, 'drives-missing', `drive ${drive.name} was not prepared (no ${layout.drive(drive.name)}); call prepareDrives first`, false);
      }
    }
  }

  async #writeSecrets(spec: InstanceSpec, layout: FirecrackerLayout): Promise<void> {
    for (const drive of spec.drives.filter((d) => d.persistence === 'ephemeral')) {
      await this.#options.images.buildFilesImage({ path: layout.drive(this.#driveName('boot', spec.instance_id, drive.name)), label: drive.label, files: drive.files, fileMode: 0o400 });
    }
  }

  /** Firecracker keeps the image open; the file itself must not outlive the boot or wake. */
  async #deleteSecrets(spec: InstanceSpec, layout: FirecrackerLayout): Promise<void> {
    for (const drive of spec.drives.filter((d) => d.persistence === 'ephemeral')) {
      await rm(layout.drive(drive.name), { force: true });
      // Its hard link in the jail is the same file under another name.
      if (layout.jail) await rm(path.join(layout.jail.chrootDir, layout.jail.inside.drive(drive.name)), { force: true });
    }
  }

  /** Rebuilds the config image and/or builds a secrets image and swaps each in with PATCH /drives/{drive_id}; the secrets image file goes again at once. */
  async #swapDrives(spec: InstanceSpec, what: ReloadRequest, paths: InstancePaths, layout: FirecrackerLayout, ctx: OpContext, check: () => void): Promise<void> {
    const id = spec.instance_id;
    const swapped = spec.drives.filter((d) => (what.config && d.persistence === 'versioned') || (what.secrets && d.persistence === 'ephemeral'));
    try {
      for (const drive of swapped) {
        check();
        const image = layout.drive(this.#driveName('reload', id, drive.name));
        if (drive.persistence === 'versioned') {
          await this.#options.images.buildFilesImage({ path: image, label: drive.label, files: drive.files, fileMode: 0o444 });
          await writeFile(layout.driveStamp(drive.name), contentHash(drive));
        } else {
          await this.#options.images.buildFilesImage({ path: image, label: drive.label, files: drive.files, fileMode: 0o400 });
        }
        // The jailed VMM opens the new image through its link in the chroot.
        await this.#prepareJail('reload', spec, layout, layout.jail ? { [image]: layout.jail.inside.drive(drive.name) } : {});
        await this.#client(layout)
          .request('PATCH', `/drives/${encodeURIComponent(drive.name)}`, { drive_id: drive.name, path_on_host: paths.drives[drive.name] }, this.#requestOptions(ctx))
          .catch((error: unknown) => {
            throw this.#apiError('reload', id, error);
          });
      }
    } finally {
      // Firecracker holds the new secrets image open; the file itself goes at once, as after a boot.
      if (what.secrets) await this.#deleteSecrets(spec, layout);
    }
  }

  /** Starts a Firecracker process for the instance and waits until its API answers. */
  async #spawn(op: DriverOp, spec: InstanceSpec, layout: FirecrackerLayout, ctx: OpContext, check: () => void, jail: JailPlan | null): Promise<FirecrackerApiClient> {
    const id = spec.instance_id;
    await rm(layout.apiSocket, { force: true });
    await rm(layout.vsockSocket, { force: true });
    const runtime: RuntimeRecord = { instance_id: id, tenant_id: spec.tenant_id, agent_port: spec.vsock.agent_port, spec: { ...spec, drives: spec.drives.map((d) => ({ ...d, files: {} })) } };
    await writeAtomic(layout.runtimeFile, `${JSON.stringify(runtime)}\n`);
    let started;
    try {
      // The jailer execs Firecracker in place (same pid), so the pid record covers both.
      const [file, ...args] = jail ? [...jail.argv, ...(this.#options.firecrackerArgs ?? [])] : [this.#options.firecrackerBin, '--api-sock', layout.apiSocket, ...(this.#options.firecrackerArgs ?? [])];
      started = startVmm({ file: file!, args, stdoutLog: layout.stdoutLog, stderrLog: layout.stderrLog });
    } catch (error) {
      throw new DriverError(op, id, 'spawn', (error as Error).message, true);
    }
    await writePidRecord(layout.pidFile, started.record);
    this.#exits.started(id, started.record, started.exited.then(({ code, signal }) => signal ?? `exit ${code ?? 'unknown'}`));
    const client = this.#client(layout);
    const readyBy = Math.min(ctx.deadline, this.#clock.now() + this.#apiReadyMs);
    for (;;) {
      if (!liveProcess(started.record)) {
        const log = await readFile(layout.stderrLog, 'utf8').catch(() => '');
        throw new DriverError(op, id, 'vmm-exited', `Firecracker exited while starting: ${log.trim().split('\n').slice(-3).join(' | ') || `see ${layout.stderrLog}`}`, true);
      }
      const socket = await lstat(layout.apiSocket).catch(() => null);
      if (socket?.isSocket()) {
        const answered = await client.describeInstance({ deadline: Math.min(readyBy, this.#clock.now() + 1000), signal: ctx.signal }).then(
          () => true,
          () => false,
        );
        if (answered) return client;
      }
      check();
      if (this.#clock.now() >= readyBy) {
        await this.#shutDown(id, layout, () => undefined);
        throw new DriverError(op, id, 'vmm-unreachable', `Firecracker did not answer on ${layout.apiSocket} within ${this.#apiReadyMs} ms`, true);
      }
      await this.#sleep(POLL_MS);
    }
  }

  async #postRestore(spec: InstanceSpec, layout: FirecrackerLayout, ctx: OpContext): Promise<void> {
    // vsock connections do not survive a snapshot: connect anew, waiting for the restored guest.
    const client = await this.#agent('restore', spec.instance_id, layout, spec.vsock.agent_port, spec.tenant_id, ctx);
    try {
      if (!client.handlers.has('post-restore')) return;
      await client.request('post-restore', { secrets_epoch: spec.revision.secrets_epoch, entropy_seed: randomBytes(32).toString('base64') }, { deadlineMs: this.#remaining(ctx, 10_000) });
    } catch (error) {
      throw new DriverError('restore', spec.instance_id, 'post-restore', `the guest agent's post-restore step failed: ${(error as Error).message}`, true);
    } finally {
      client.close();
    }
  }

  async #agent(op: DriverOp, instanceId: string, layout: FirecrackerLayout, port: number, tenantId: string, ctx: OpContext): Promise<VsockHostClient> {
    try {
      return await connectGuestAgent({ udsPath: layout.vsockSocket, port, instanceId, tenantId, clock: this.#clock, retry: true, connectDeadlineMs: this.#remaining(ctx, 10_000), helloDeadlineMs: this.#remaining(ctx, 2000) });
    } catch (error) {
      const detail = error instanceof VsockError ? `${error.code}: ${error.message}` : (error as Error).message;
      throw new DriverError(op, instanceId, 'agent-unreachable', `cannot reach the guest agent on ${layout.vsockSocket} port ${port}: ${detail}`, true);
    }
  }

  async #runtime(layout: FirecrackerLayout): Promise<RuntimeRecord | null> {
    return readFile(layout.runtimeFile, 'utf8').then(
      (text) => JSON.parse(text) as RuntimeRecord,
      () => null,
    );
  }

  async #lastSpecForTap(layout: FirecrackerLayout): Promise<InstanceSpec | null> {
    return (await this.#runtime(layout))?.spec ?? null;
  }

  /** Ends the process (SIGTERM, SIGKILL after the grace period) and removes its runtime files; drive images and a snapshot stay. */
  async #shutDown(instanceId: string, layout: FirecrackerLayout, check: () => void): Promise<void> {
    const record = this.#liveRecord(layout);
    if (record) {
      this.#exits.expectExit(instanceId, record);
      signalGroup(record.pid, 'SIGTERM');
      // A process stopped with SIGSTOP only sees SIGTERM once it runs again.
      signalGroup(record.pid, 'SIGCONT');
      const killAt = this.#clock.now() + this.#stopGraceMs;
      let killed = false;
      for (;;) {
        if (!liveProcess(record)) break;
        if (!killed && this.#clock.now() >= killAt) {
          killed = true;
          signalGroup(record.pid, 'SIGKILL');
        }
        check();
        await this.#sleep(POLL_MS);
      }
    }
    await rm(layout.pidFile, { force: true });
    await rm(layout.apiSocket, { force: true });
    await rm(layout.vsockSocket, { force: true });
    for (const name of await readdir(layout.drivesDir).catch(() => [] as string[])) {
      // Secrets images never outlive a boot; remove any a crash left behind.
      if (name.endsWith('.ext4.tmp')) await rm(path.join(layout.drivesDir, name), { force: true });
    }
    const spec = await this.#lastSpecForTap(layout);
    if (spec) await this.#deleteSecrets(spec, layout);
    // Without a snapshot record, snapshot files are only the memory a restored VM was mapping.
    if (!(await readSnapshotRecord(layout.snapshotRecord))) await rm(layout.snapshotDir, { recursive: true, force: true });
    // A jail's snapshot files are links to (or copies of) the ones above: never the record.
    if (layout.jail) await rm(layout.jail.snapshotDir, { recursive: true, force: true });
  }
}

/** Firecracker refused a call (a non-2xx answer): the fault message names the rule. Not retryable. */
export class FirecrackerRefusal extends DriverError {
  constructor(
    op: DriverOp,
    instanceId: string,
    readonly api: FirecrackerApiError,
  ) {
    super(op, instanceId, 'vmm-refused', `Firecracker refused ${api.method} ${api.path} (${api.status}): ${api.faultMessage}`, false);
  }
}

export function createFirecrackerDriver(options: FirecrackerDriverOptions): FirecrackerDriver {
  return new FirecrackerDriver(options);
}

// --- helpers ---

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/** rename(2), or a copy when the jail is on another filesystem than the VM's directory. */
async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await copyFile(from, to);
    await rm(from, { force: true });
  }
}

async function writeAtomic(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text, { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

function contentHash(drive: DriveContent): string {
  const hash = createHash('sha256');
  hash.update(`${drive.label}\0`);
  for (const name of Object.keys(drive.files).sort()) hash.update(`${name}\0${drive.files[name]}\0`);
  return `sha256:${hash.digest('hex')}`;
}
