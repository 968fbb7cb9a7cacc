import { VmExitWatch } from '../vm-exit-watch.ts';
import { reloadError, requireReloadHandlers, sendReloadVerbs } from '../guest-reload.ts';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, lchown, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { Clock } from '../../common/clock.ts';
import { type IdSource, randomIds } from '../../common/ids.ts';
import { InstanceId, LocalName } from '../../schemas/ids.ts';
import type { ServiceSpec } from '../../schemas/role-manifest.ts';
import { findOpenClaw, requireOpenClaw, type OpenClawInstall } from '../../openclaw/install-location.ts';
import { connectGuestAgent, type VsockHostClient } from '../../vsock/host-client.ts';
import { DriverError, type DriverOp, type InstanceSpec, type ObservedVm, type OpContext, type ReloadRequest, type SnapshotRef, type VmExit, type VmmDriver } from '../vmm-driver.ts';
import { type RunnerConfig, type VmLayout, loopbackFor, vmLayout } from './layout.ts';
import { type PidRecord, isStopped, liveProcess, readProcStat, signalGroup } from './proc.ts';
import { type TenantIdentity, type TenantIsolation, type TenantIsolationOption, resolveIsolation, tenantIdentity } from './tenant-identity.ts';
import { ensureVmNetwork, inNetns, removeVmNetwork, vmNetwork } from './vm-netns.ts';

/**
 * The dev-mode simulation driver (issue 5, section 1). Each microVM is a real, detached process
 * (src/driver/sim/vm-runner.ts) in its own process group, so a restarted control plane finds it
 * again through `<vmDir>/runner.pid` (pid and /proc start time). Drives are directories under
 * `<stateDir>/vms/<instance>/drives/<name>`. The host talks to the guest agent only through the
 * VM's vsock socket with the Firecracker `CONNECT` handshake, as it will with Firecracker.
 *
 * Every call checks its signal and deadline first and makes one attempt; waits poll with the
 * injected clock, so give it a real clock (systemClock) when VMs are real processes.
 *
 * Tenant isolation (tenant-identity.ts): as root, each tenant's VM processes run under the uid and
 * gid `isolation.uidBase + tenant_net_id`. Its VM directory and `drives/` are root's, mode 0711
 * (no listing); `data` and `secrets` are the tenant's, mode 0700 (secret files 0600); `config` is
 * root's with the tenant's group, 0750 and files 0440, so the guest reads it and cannot change
 * it. Without root, every VM runs as the driver's user and only paths separate tenants.
 */

export interface SimDriverOptions {
  stateDir: string;
  clock: Clock;
  ids?: IdSource;
  /** How long stop waits after SIGTERM before SIGKILL (clock ms). */
  stopGraceMs?: number;
  /** How often adopted VMs (started by an earlier driver) are checked for unexpected exits. */
  adoptedPollMs?: number;
  /** The Node binary that runs the VM runner. */
  nodePath?: string;
  /**
   * Per-tenant uids (default when running as root, base 90000) or `false`: every VM runs as this
   * process's user. Asking for uids without root throws.
   */
  isolation?: TenantIsolationOption;
  /**
   * Run the real OpenClaw for services whose manifest declares an OpenClaw config
   * (`services[].config.format`): 'require' fails here unless the pinned install is present and
   * this process is root (each such VM gets its own network and mount namespace); 'auto' uses it
   * when both hold; 'off' (the default) simulates every service.
   */
  openclaw?: 'auto' | 'off' | 'require';
  /** Where the pinned OpenClaw install is (default: findOpenClaw's). */
  openclawDir?: string;
}

/** Where a VM sees the OpenClaw install: its image path in a real guest (nix/profiles/openclaw-*.nix). */
const GUEST_OPENCLAW_DIR = '/opt/mvm-openclaw';

/** The parts of the config drive's mvm.json the driver reads itself. */
interface DriveConfig {
  services?: { name: string; config?: { format: string }; stop_timeout_s?: number }[];
  minted_secrets?: { name: string; verb: 'openclaw-setup-code'; from_instance: string }[];
}

const RUNNER = fileURLToPath(new URL('./vm-runner.ts', import.meta.url));
/** The package root: `--import tsx` is resolved from there. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const POLL_MS = 20;


export class SimDriver implements VmmDriver {
  readonly kind = 'sim';
  readonly stateDir: string;
  readonly #vmsDir: string;
  readonly #clock: Clock;
  readonly #ids: IdSource;
  readonly #stopGraceMs: number;
  readonly #nodePath: string;
  /** Per-tenant uids, or null: paths only (see tenant-identity.ts). */
  readonly isolation: TenantIsolation | null;
  /** The OpenClaw install real services run with, or null: all services simulated. */
  readonly openclaw: OpenClawInstall | null;
  readonly #exits: VmExitWatch;

  constructor(options: SimDriverOptions) {
    this.stateDir = path.resolve(options.stateDir);
    this.#vmsDir = path.join(this.stateDir, 'vms');
    this.#clock = options.clock;
    this.#ids = options.ids ?? randomIds;
    this.#stopGraceMs = options.stopGraceMs ?? 3000;
    this.#exits = new VmExitWatch(options.clock, options.adoptedPollMs ?? 1000);
    this.#nodePath = options.nodePath ?? process.execPath;
    this.isolation = resolveIsolation(options.isolation);
    this.openclaw = resolveOpenClaw(options.openclaw ?? 'off', options.openclawDir);
  }

  // --- the port ---

  prepareDrives(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    return this.#op('prepareDrives', spec.instance_id, ctx, async (layout, check) => {
      const names = spec.drives.map((d) => this.#driveName('prepareDrives', spec.instance_id, d.name));
      const identity = this.#identityOf('prepareDrives', spec);
      await mkdir(layout.drives, { recursive: true, mode: 0o755 });
      if (identity) {
        // Other tenants may pass through to their own VMs' directories but list nothing here.
        await chmod(layout.dir, 0o711);
        await chmod(layout.drives, 0o711);
      }
      for (const [i, drive] of spec.drives.entries()) {
        check();
        const dir = layout.drive(names[i]!);
        switch (drive.persistence) {
          case 'persistent':
          case 'disposable':
            // Created once with its initial files; what the guest wrote since is kept.
            if (!(await exists(dir))) await writeDrive(dir, drive.files, { dirMode: identity ? 0o700 : 0o755, fileMode: 0o644 });
            if (identity) await ownTree(dir, identity.uid, identity.gid, 0o700);
            break;
          case 'ephemeral':
            // Secrets: this boot's contents only, readable by the VM's user only.
            await rm(dir, { recursive: true, force: true });
            await writeDrive(dir, { ...drive.files, ...(await this.#mintSecrets(spec, layout, check)) }, { dirMode: 0o700, fileMode: 0o600 });
            if (identity) await ownTree(dir, identity.uid, identity.gid, 0o700);
            break;
          case 'versioned':
            // Config: replaced as a whole, files read-only; with a tenant identity, root's files
            // the tenant's group may read, so the guest cannot change them either.
            await rm(dir, { recursive: true, force: true });
            await writeDrive(dir, drive.files, identity ? { dirMode: 0o750, fileMode: 0o440 } : { dirMode: 0o755, fileMode: 0o444 });
            if (identity) await ownTree(dir, 0, identity.gid, 0o750);
            break;
        }
      }
    });
  }

  boot(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    return this.#op('boot', spec.instance_id, ctx, async (layout, check) => {
      await this.#requireDrives('boot', spec, layout);
      await this.#start('boot', spec, layout, check);
    });
  }

  checkReadiness(spec: InstanceSpec, service: ServiceSpec, ctx: OpContext): Promise<void> {
    return this.#op('checkReadiness', spec.instance_id, ctx, async (layout, check) => {
      const notReady = (why: string) => new DriverError('checkReadiness', spec.instance_id, 'not-ready', `${service.name} is not ready: ${why}`, true);
      if (!this.#live(layout)) throw notReady('the VM is not running');
      const client = await this.#agent('checkReadiness', spec.instance_id, layout, spec.vsock.agent_port, check).catch((error: DriverError) => {
        throw notReady(error.message);
      });
      try {
        const answer = await client.request('readiness', { service: service.name }, { deadlineMs: this.#remaining(ctx, 5000) });
        // A final refusal (e.g. OpenClaw's AUTH_TOKEN_MISMATCH) is not retried: its code goes to the instance.
        const failed = answer.services.find((s) => s.state === 'failed');
        if (failed) throw new DriverError('checkReadiness', spec.instance_id, /^([a-z]+:[A-Z0-9_]+)/.exec(failed.detail ?? '')?.[1] ?? 'service-failed', `${service.name} failed: ${failed.detail ?? 'no detail'}`, false);
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
    return this.#op('pause', instanceId, ctx, async (layout, check) => {
      const record = this.#requireLive('pause', instanceId, layout);
      signalGroup(record.pid, 'SIGSTOP');
      // Real services run in process groups of their own: paused with the VM, as a VM's vCPUs are.
      for (const pid of await serviceGroups(layout, record.pid)) signalGroup(pid, 'SIGSTOP');
      await this.#waitFor(check, () => {
        const stat = liveProcess(record);
        return !stat || isStopped(stat);
      });
    });
  }

  resume(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#op('resume', instanceId, ctx, async (layout, check) => {
      const record = this.#requireLive('resume', instanceId, layout);
      for (const pid of await serviceGroups(layout, record.pid)) signalGroup(pid, 'SIGCONT');
      signalGroup(record.pid, 'SIGCONT');
      await this.#waitFor(check, () => {
        const stat = liveProcess(record);
        return !stat || !isStopped(stat);
      });
    });
  }

  drain(instanceId: string, ctx: OpContext): Promise<void> {
    return this.#op('drain', instanceId, ctx, async (layout, check) => {
      this.#requireLive('drain', instanceId, layout);
      const runner = await this.#runnerConfig(layout);
      const client = await this.#agent('drain', instanceId, layout, runner.agent_port, check);
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
      const record = this.#liveRecord(layout);
      if (!record) {
        const existing = await readSnapshot(layout);
        if (existing && existing.artifacts === spec.revision.artifacts && existing.manifest_hash === spec.manifest_hash) return existing;
        throw new DriverError('snapshot', spec.instance_id, 'vm-missing', 'no VM of this instance is running or paused', false);
      }
      const ref: SnapshotRef = {
        snapshot_id: this.#ids.next('snap'),
        artifacts: spec.revision.artifacts,
        manifest_hash: spec.manifest_hash,
        created_at: this.#clock.now(),
      };
      await writeAtomic(layout.snapshotFile, `${JSON.stringify(ref, null, 2)}\n`);
      await this.#shutDown(spec.instance_id, layout, check);
      return ref;
    });
  }

  restore(spec: InstanceSpec, snapshot: SnapshotRef, ctx: OpContext): Promise<void> {
    return this.#op('restore', spec.instance_id, ctx, async (layout, check) => {
      const id = spec.instance_id;
      const mismatch = describeMismatch(snapshot, spec.revision.artifacts, spec.manifest_hash);
      if (mismatch) throw new DriverError('restore', id, 'snapshot-mismatch', `snapshot ${snapshot.snapshot_id} ${mismatch}`, false);
      if (this.#live(layout)) return;
      const recorded = await readSnapshot(layout);
      if (!recorded || recorded.snapshot_id !== snapshot.snapshot_id) throw new DriverError('restore', id, 'no-snapshot', `snapshot ${snapshot.snapshot_id} is not on this host`, false);
      const onDisk = describeMismatch(recorded, snapshot.artifacts, snapshot.manifest_hash);
      if (onDisk) throw new DriverError('restore', id, 'snapshot-mismatch', `the snapshot on disk ${onDisk}`, false);
      await this.#requireDrives('restore', spec, layout);
      await this.#start('restore', spec, layout, check);
      // The VM runs on from here: its snapshot is used up, as the fake driver's is.
      await rm(layout.snapshotFile, { force: true });
      const client = await this.#agent('restore', id, layout, spec.vsock.agent_port, check);
      try {
        if (!client.handlers.has('post-restore')) return;
        await client.request(
          'post-restore',
          { secrets_epoch: spec.revision.secrets_epoch, entropy_seed: randomBytes(32).toString('base64') },
          { deadlineMs: this.#remaining(ctx, 10_000) },
        );
      } catch (error) {
        throw new DriverError('restore', id, 'post-restore', (error as Error).message, true);
      } finally {
        client.close();
      }
    });
  }

  /**
   * A live reload: the config and/or secrets drive directory is rewritten *in place* (a VM that
   * runs the real OpenClaw has the directories bind-mounted in its own mount namespace, which a
   * replaced directory would leave behind), each file by rename so a reader never sees half of
   * one, then the guest agent is asked to apply the version / epoch and must say it did.
   */
  reload(spec: InstanceSpec, what: ReloadRequest, ctx: OpContext): Promise<void> {
    return this.#op('reload', spec.instance_id, ctx, async (layout, check) => {
      const id = spec.instance_id;
      const record = this.#requireLive('reload', id, layout);
      const stat = liveProcess(record);
      if (stat && isStopped(stat)) throw new DriverError('reload', id, 'vm-paused', 'the VM is paused; its guest agent cannot reload', false);
      const identity = this.#identityOf('reload', spec);
      const runner = await this.#runnerConfig(layout);
      const client = await this.#agent('reload', id, layout, runner.agent_port, check);
      try {
        requireReloadHandlers(client, id, what);
        for (const drive of spec.drives) {
          check();
          const dir = layout.drive(this.#driveName('reload', id, drive.name));
          if (what.config && drive.persistence === 'versioned') {
            await rewriteDriveInPlace(dir, drive.files, identity ? { dirMode: 0o750, fileMode: 0o440, uid: 0, gid: identity.gid } : { dirMode: 0o755, fileMode: 0o444 });
          }
          if (what.secrets && drive.persistence === 'ephemeral') {
            const files = { ...drive.files, ...(await this.#mintSecrets(spec, layout, check)) };
            await rewriteDriveInPlace(dir, files, identity ? { dirMode: 0o700, fileMode: 0o600, uid: identity.uid, gid: identity.gid } : { dirMode: 0o700, fileMode: 0o600 });
          }
        }
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
      await rm(layout.dir, { recursive: true, force: true });
      this.#exits.forget(instanceId);
    });
  }

  async describe(): Promise<ObservedVm[]> {
    const names = await readdir(this.#vmsDir).catch(() => [] as string[]);
    const out: ObservedVm[] = [];
    for (const name of names.sort()) {
      if (!InstanceId.safeParse(name).success) continue;
      const layout = vmLayout(path.join(this.#vmsDir, name));
      if (!(await stat(layout.dir).then((s) => s.isDirectory(), () => false))) continue;
      const live = liveProcess(readPidRecord(layout));
      const state = !live ? 'stopped' : isStopped(live) ? 'paused' : 'running';
      if (live) this.#exits.adopt(name, readPidRecord(layout));
      out.push({ instance_id: name, state, snapshot: await readSnapshot(layout) });
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

  /** The VM's directory, for tests and `mvm-actors dev`. Validates the id. */
  vmDir(instanceId: string): string {
    return this.#layout('describe', instanceId).dir;
  }

  /** The runner's pid of a running or paused VM, or null. */
  pidOf(instanceId: string): number | null {
    return this.#liveRecord(this.#layout('describe', instanceId))?.pid ?? null;
  }

  /** Where the VM's simulated services listen, as the runner wrote it. */
  async simulatedServices(instanceId: string): Promise<{ loopback: string; simulated: { service: string; program: string; address: string; port: number; port_name: string }[] } | null> {
    const layout = this.#layout('describe', instanceId);
    return readFile(layout.servicesFile, 'utf8').then((text) => JSON.parse(text), () => null);
  }

  // --- internals ---

  #layout(op: DriverOp, instanceId: string): VmLayout {
    // Ids become paths: only a valid id, and only directly under vms/, is ever touched.
    if (!InstanceId.safeParse(instanceId).success) throw new DriverError(op, String(instanceId), 'bad-instance-id', `not a valid instance id: ${JSON.stringify(instanceId)}`, false);
    const dir = path.join(this.#vmsDir, instanceId);
    if (path.dirname(dir) !== this.#vmsDir) throw new DriverError(op, instanceId, 'bad-instance-id', 'instance id escapes the state directory', false);
    return vmLayout(dir);
  }

  /** The tenant's uid and gid when isolating, else null. */
  #identityOf(op: DriverOp, spec: InstanceSpec): TenantIdentity | null {
    if (!this.isolation) return null;
    try {
      return tenantIdentity(this.isolation, spec.tenant_id, spec.network.tap);
    } catch (error) {
      throw new DriverError(op, spec.instance_id, 'tenant-identity', (error as Error).message, false);
    }
  }

  #driveName(op: DriverOp, instanceId: string, name: string): string {
    if (!LocalName.safeParse(name).success) throw new DriverError(op, instanceId, 'bad-drive', `not a valid drive name: ${JSON.stringify(name)}`, false);
    return name;
  }

  async #op<T>(op: DriverOp, instanceId: string, ctx: OpContext, body: (layout: VmLayout, check: () => void) => Promise<T>): Promise<T> {
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
      throw new DriverError(op, instanceId, 'io', (error as Error).message, true);
    }
  }

  #remaining(ctx: OpContext, cap: number): number {
    return Math.max(1, Math.min(cap, ctx.deadline - this.#clock.now()));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#clock.setTimeout(resolve, ms));
  }

  /** Polls `done` with the clock until it holds; `check` throws on abort or deadline. */
  async #waitFor(check: () => void, done: () => boolean | Promise<boolean>): Promise<void> {
    for (;;) {
      if (await done()) return;
      check();
      await this.#sleep(POLL_MS);
    }
  }

  #liveRecord(layout: VmLayout): PidRecord | null {
    const record = readPidRecord(layout);
    return liveProcess(record) ? record : null;
  }

  #live(layout: VmLayout): boolean {
    return this.#liveRecord(layout) !== null;
  }

  #requireLive(op: DriverOp, instanceId: string, layout: VmLayout): PidRecord {
    const record = this.#liveRecord(layout);
    if (!record) throw new DriverError(op, instanceId, 'vm-missing', 'no VM of this instance is running or paused', false);
    return record;
  }

  async #requireDrives(op: DriverOp, spec: InstanceSpec, layout: VmLayout): Promise<void> {
    for (const drive of spec.drives) {
      if (!(await exists(layout.drive(this.#driveName(op, spec.instance_id, drive.name))))) {
        throw new DriverError(op, spec.instance_id, 'drives-missing', `drive ${drive.name} was not prepared`, false);
      }
    }
  }

  async #runnerConfig(layout: VmLayout): Promise<RunnerConfig> {
    return JSON.parse(await readFile(layout.runnerFile, 'utf8')) as RunnerConfig;
  }

  /** Starts the runner unless a live one is there (adopted, never started twice), then waits until it is ready. */
  async #start(op: DriverOp, spec: InstanceSpec, layout: VmLayout, check: () => void): Promise<void> {
    const id = spec.instance_id;
    let record = this.#liveRecord(layout);
    if (record) {
      this.#exits.adopt(id, readPidRecord(layout));
    } else {
      const mountOf = (mount: string) => spec.drives.find((d) => d.mount === mount)?.name;
      const runner: RunnerConfig = {
        instance_id: id,
        tenant_id: spec.tenant_id,
        agent_port: spec.vsock.agent_port,
        loopback: loopbackFor(spec.network.ipv4),
        config_dir: layout.drive(mountOf('/etc/mvm-config') ?? 'config'),
        secrets_dir: layout.drive(mountOf('/run/secrets') ?? 'secrets'),
        secrets_epoch: spec.revision.secrets_epoch,
        identity: this.#identityOf(op, spec),
      };
      const driveConfig = readDriveConfig(spec);
      const real = this.openclaw !== null && (driveConfig.services ?? []).some((s) => s.config?.format?.startsWith('openclaw-'));
      let prefix: string[] = [];
      if (real) {
        const net = vmNetwork(this.stateDir, spec);
        await ensureVmNetwork(net).catch((error: Error) => {
          throw new DriverError(op, id, 'network', `cannot set up the VM's network namespace: ${error.message}`, true);
        });
        // The VM's own /tmp: a fresh one per boot, as a guest's tmpfs.
        await rm(layout.tmpDir, { recursive: true, force: true });
        await mkdir(layout.tmpDir, { mode: 0o700 });
        if (runner.identity) await lchown(layout.tmpDir, runner.identity.uid, runner.identity.gid);
        runner.loopback = spec.network.ipv4;
        runner.openclaw = this.#guestMounts(spec, layout);
        runner.stop_grace_ms = Math.max(this.#stopGraceMs, ...(driveConfig.services ?? []).map((s) => (s.stop_timeout_s ?? 0) * 1000 + 2000));
        prefix = inNetns(net);
      }
      await writeAtomic(layout.runnerFile, `${JSON.stringify(runner, null, 2)}\n`);
      await rm(layout.readyFile, { force: true });
      // The host's logs of the VM: not for other tenants' eyes.
      const out = openSync(layout.stdoutLog, 'a', 0o600);
      const err = openSync(layout.stderrLog, 'a', 0o600);
      const command = prefix.length > 0 ? ['ip', [...prefix, this.#nodePath, '--import', 'tsx', RUNNER, layout.dir]] as const : [this.#nodePath, ['--import', 'tsx', RUNNER, layout.dir]] as const;
      const spawn = () =>
        execa(command[0], [...command[1]], {
          cwd: PACKAGE_ROOT,
          detached: true,
          cleanup: false,
          // Raw descriptors, so the VM writes its logs itself and outlives this process (execa's
          // types only accept literal descriptor numbers).
          stdio: ['ignore', out as 1, err as 2],
          reject: false,
          buffer: false,
        });
      let subprocess: ReturnType<typeof spawn>;
      try {
        subprocess = spawn();
      } finally {
        closeSync(out);
        closeSync(err);
      }
      const pid = subprocess.pid;
      const stat = pid === undefined ? null : (readProcStat(pid)?.startTime ?? null);
      if (pid === undefined || stat === null) throw new DriverError(op, id, 'spawn', 'the VM runner did not start', true);
      record = { pid, start_time: stat };
      await writeAtomic(layout.pidFile, `${JSON.stringify(record)}\n`);
      subprocess.unref();
      this.#exits.started(id, record, subprocess.then((result) => result.signal ?? `exit ${result.exitCode ?? 'unknown'}`));
    }
    const started = record;
    await this.#waitFor(check, async () => {
      if (!liveProcess(started)) throw new DriverError(op, id, 'vm-exited', `the VM runner exited while starting${await runnerFailure(layout)}; see ${layout.stderrLog}`, true);
      return readFile(layout.readyFile, 'utf8').then(
        (text) => Number(text.trim()) === started.pid,
        () => false,
      );
    });
  }

  /** Stops the VM's processes (SIGTERM, SIGKILL after the grace period) and removes its secrets drive and runtime files. */
  async #shutDown(instanceId: string, layout: VmLayout, check: () => void): Promise<void> {
    const record = this.#liveRecord(layout);
    const runnerBefore = await this.#runnerConfig(layout).catch(() => null);
    if (record) {
      this.#exits.expectExit(instanceId, record);
      const services = await serviceGroups(layout, record.pid);
      signalGroup(record.pid, 'SIGTERM');
      // A paused VM only sees SIGTERM once it runs again.
      signalGroup(record.pid, 'SIGCONT');
      for (const pid of services) signalGroup(pid, 'SIGCONT');
      // The runner stops each real service within its stop_timeout_s; the VM as a whole gets that long too.
      const killAt = this.#clock.now() + Math.max(this.#stopGraceMs, runnerBefore?.stop_grace_ms ?? 0);
      let killed = false;
      await this.#waitFor(check, () => {
        if (!liveProcess(record)) return true;
        if (!killed && this.#clock.now() >= killAt) {
          killed = true;
          signalGroup(record.pid, 'SIGKILL');
        }
        return false;
      });
      // Whatever a killed runner left of its services goes with it, and stop returns once it is gone.
      for (const pid of services) signalGroup(pid, 'SIGKILL');
      await this.#waitFor(check, () => !services.some(groupAlive));
    }
    if (runnerBefore?.openclaw) {
      await removeVmNetwork(vmNetwork(this.stateDir, { instance_id: instanceId, tenant_id: runnerBefore.tenant_id, network: { ipv4: runnerBefore.loopback } }));
      await rm(layout.tmpDir, { recursive: true, force: true });
    }
    await rm(layout.pidFile, { force: true });
    await rm(layout.runDir, { recursive: true, force: true });
    await rm(layout.vsockSocket, { force: true });
    const runner = await this.#runnerConfig(layout).catch(() => null);
    await rm(runner?.secrets_dir ?? layout.drive('secrets'), { recursive: true, force: true });
  }

  /** Drives at their guest mount points, /tmp, and the OpenClaw install at its image path (read-only). */
  #guestMounts(spec: InstanceSpec, layout: VmLayout): NonNullable<RunnerConfig['openclaw']> {
    const install = this.openclaw!;
    const mountOf = (persistence: string) => spec.drives.find((d) => d.persistence === persistence)?.mount ?? '';
    const mounts = spec.drives.map((d) => ({ host: layout.drive(d.name), guest: d.mount, read_only: d.read_only || d.persistence === 'versioned' }));
    mounts.push({ host: layout.tmpDir, guest: '/tmp', read_only: false }, { host: install.dir, guest: GUEST_OPENCLAW_DIR, read_only: true });
    return {
      mounts,
      node: path.posix.join(GUEST_OPENCLAW_DIR, path.relative(install.dir, install.node)),
      entry: path.posix.join(GUEST_OPENCLAW_DIR, path.relative(install.dir, install.entry)),
      data: mountOf('persistent'),
      secrets: mountOf('ephemeral'),
      config: mountOf('versioned'),
    };
  }

  /**
   * Secrets another instance of the same tenant mints for this one at every boot and wake (a
   * worker's node setup code, from its gateway's guest agent), as the config drive names them.
   * One attempt each; one that cannot be minted now is left out (a node host that already holds
   * a device token does not need it) and noted in the VM's log.
   */
  async #mintSecrets(spec: InstanceSpec, layout: VmLayout, check: () => void): Promise<Record<string, string>> {
    const minted: Record<string, string> = {};
    for (const secret of readDriveConfig(spec).minted_secrets ?? []) {
      check();
      let note: string;
      try {
        const from = this.#layout('prepareDrives', secret.from_instance);
        const runner = await this.#runnerConfig(from);
        // Never another tenant's gateway: its runner and its agent's hello must both name this tenant.
        if (runner.tenant_id !== spec.tenant_id) throw new Error(`${secret.from_instance} belongs to tenant ${runner.tenant_id}, not ${spec.tenant_id}`);
        if (!this.#live(from)) throw new Error(`${secret.from_instance} is not running`);
        const client = await connectGuestAgent({ udsPath: from.vsockSocket, port: runner.agent_port, instanceId: secret.from_instance, tenantId: spec.tenant_id, clock: this.#clock, connectDeadlineMs: 2000, helloDeadlineMs: 2000 });
        try {
          const answer = await client.request(secret.verb, {}, { deadlineMs: 10_000 });
          minted[secret.name] = `${answer.setup_code}\n`;
          continue;
        } finally {
          client.close();
        }
      } catch (error) {
        note = (error as Error).message;
      }
      await writeFile(layout.stderrLog, `prepareDrives: ${secret.name} not minted from ${secret.from_instance}: ${note}\n`, { flag: 'a', mode: 0o600 });
    }
    return minted;
  }

  async #agent(op: DriverOp, instanceId: string, layout: VmLayout, port: number, check: () => void): Promise<VsockHostClient> {
    check();
    try {
      return await connectGuestAgent({ udsPath: layout.vsockSocket, port, instanceId, clock: this.#clock, connectDeadlineMs: 2000, helloDeadlineMs: 2000 });
    } catch (error) {
      throw new DriverError(op, instanceId, 'agent-unreachable', `cannot reach the guest agent: ${(error as Error).message}`, true);
    }
  }
}

function resolveOpenClaw(mode: 'auto' | 'off' | 'require', dir: string | undefined): OpenClawInstall | null {
  if (mode === 'off') return null;
  const root = process.getuid?.() === 0;
  if (mode === 'require') {
    const install = requireOpenClaw({ dir });
    if (!root) throw new Error('the simulation driver runs the real OpenClaw only as root: each such VM needs its own network and mount namespace (two gateways would otherwise collide on 127.0.0.1:18789); run as root or use --openclaw off');
    return install;
  }
  return root ? findOpenClaw({ dir }) : null;
}

/** The config drive's mvm.json as the host computed it (for the services and minted secrets it names). */
function readDriveConfig(spec: InstanceSpec): DriveConfig {
  const text = spec.drives.find((d) => d.persistence === 'versioned')?.files['mvm.json'];
  if (text === undefined) return {};
  try {
    return JSON.parse(text) as DriveConfig;
  } catch {
    return {};
  }
}

/** Whether any live process is in process group `pgid` (from /proc). */
function groupAlive(pgid: number): boolean {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (stat !== null && stat.pgrp === pgid && stat.state !== 'Z') return true;
  }
  return false;
}

/** Process groups of real services (their pid files), other than the runner's own. */
async function serviceGroups(layout: VmLayout, runnerPid: number): Promise<number[]> {
  const files = await readdir(layout.pidDir).catch(() => [] as string[]);
  const pids: number[] = [];
  for (const file of files) {
    const pid = Number((await readFile(path.join(layout.pidDir, file), 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== runnerPid && readProcStat(pid)?.pgrp === pid) pids.push(pid);
  }
  return pids;
}

export function createSimDriver(options: SimDriverOptions): SimDriver {
  return new SimDriver(options);
}

// --- helpers ---

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

async function writeAtomic(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

async function writeDrive(dir: string, files: Record<string, string>, modes: { dirMode: number; fileMode: number }): Promise<void> {
  await mkdir(dir, { recursive: true, mode: modes.dirMode });
  await chmod(dir, modes.dirMode);
  for (const [relative, content] of Object.entries(files)) {
    const target = path.resolve(dir, relative);
    if (!target.startsWith(`${dir}${path.sep}`)) throw new Error(`drive file path escapes its drive: ${relative}`);
    await mkdir(path.dirname(target), { recursive: true, mode: modes.dirMode });
    await writeFile(target, content, { mode: 0o600 });
    await chmod(target, modes.fileMode);
  }
}

/**
 * Rewrites a drive directory's files without replacing the directory: each file through a
 * temporary name and rename(2), files the new contents no longer have removed. Owner and modes as
 * prepareDrives gives them (`uid`/`gid` when isolating tenants).
 */
async function rewriteDriveInPlace(dir: string, files: Record<string, string>, modes: { dirMode: number; fileMode: number; uid?: number; gid?: number }): Promise<void> {
  await mkdir(dir, { recursive: true, mode: modes.dirMode });
  const own = async (at: string) => {
    if (modes.uid !== undefined && modes.gid !== undefined) await lchown(at, modes.uid, modes.gid);
  };
  const wanted = new Set<string>();
  for (const [relative, content] of Object.entries(files)) {
    const target = path.resolve(dir, relative);
    if (!target.startsWith(`${dir}${path.sep}`)) throw new Error(`drive file path escapes its drive: ${relative}`);
    wanted.add(target);
    await mkdir(path.dirname(target), { recursive: true, mode: modes.dirMode });
    const temporary = path.join(path.dirname(target), `.${path.basename(target)}.reload`);
    await writeFile(temporary, content, { mode: 0o600 });
    await chmod(temporary, modes.fileMode);
    await own(temporary);
    await rename(temporary, target);
  }
  const prune = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true })) {
      const child = path.join(at, entry.name);
      if (entry.isDirectory()) await prune(child);
      else if (!wanted.has(child)) await rm(child, { force: true });
    }
  };
  await prune(dir);
}

/**
 * Gives a drive to its owner: the top directory with `dirMode`, everything below (what the host
 * wrote, or a drive from a run without isolation) chowned too. Symbolic links the guest made are
 * chowned themselves and never followed.
 */
async function ownTree(dir: string, uid: number, gid: number, dirMode: number): Promise<void> {
  const top = await stat(dir);
  await chmod(dir, dirMode);
  if (top.uid === uid && top.gid === gid) return;
  const walk = async (at: string): Promise<void> => {
    await lchown(at, uid, gid);
    for (const entry of await readdir(at, { withFileTypes: true })) {
      const child = path.join(at, entry.name);
      if (entry.isDirectory()) await walk(child);
      else await lchown(child, uid, gid);
    }
  };
  await walk(dir);
}

/** The runner's own last words (`vm-runner: <error>`) from its stderr log, for the boot error. */
async function runnerFailure(layout: VmLayout): Promise<string> {
  const text = await readFile(layout.stderrLog, 'utf8').catch(() => '');
  const line = text.split('\n').findLast((l) => l.startsWith('vm-runner: '));
  return line ? `: ${line.slice('vm-runner: '.length)}` : '';
}

function readPidRecord(layout: VmLayout): PidRecord | null {
  try {
    const record = JSON.parse(readFileSync(layout.pidFile, 'utf8')) as PidRecord;
    return Number.isInteger(record.pid) && typeof record.start_time === 'string' ? record : null;
  } catch {
    return null;
  }
}

async function readSnapshot(layout: VmLayout): Promise<SnapshotRef | null> {
  try {
    const ref = JSON.parse(await readFile(layout.snapshotFile, 'utf8')) as SnapshotRef;
    return { snapshot_id: ref.snapshot_id, artifacts: ref.artifacts, manifest_hash: ref.manifest_hash, created_at: ref.created_at };
  } catch {
    return null;
  }
}

function describeMismatch(ref: { artifacts: string; manifest_hash: string }, artifacts: string, manifestHash: string): string | null {
  if (ref.artifacts !== artifacts) return `was taken with bundle ${ref.artifacts}, not ${artifacts}`;
  if (ref.manifest_hash !== manifestHash) return `was taken with manifest ${ref.manifest_hash}, not ${manifestHash}`;
  return null;
}
