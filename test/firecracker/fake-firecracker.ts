import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, lstat, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { systemClock } from '../../src/common/clock.ts';
import { VmmSocket } from '../../src/driver/sim/vmm-socket.ts';
import { GuestAgent } from '../../src/guest/guest-agent.ts';
import { unixSocketTransport } from '../../src/guest/transport.ts';
import { FirecrackerSpec } from './firecracker-spec.ts';

/**
 * A fake Firecracker that speaks the real API over a real Unix socket, for contract tests and
 * benchmarks (Firecracker itself cannot be downloaded here). It validates every request body
 * against the official spec (v1.16.1) and enforces the rules Firecracker documents:
 *
 * - pre-boot-only resources (boot-source, machine-config, drives, network-interfaces, vsock, ...)
 *   are refused once the microVM started (or a snapshot was loaded);
 * - `InstanceStart` only once, and only with a boot source;
 * - `PUT /snapshot/load` only on a fresh process (nothing but logger and metrics configured);
 *   a failed load ends the process, as Firecracker's does;
 * - `PUT /snapshot/create` only while Paused; `PATCH /vm` only after start;
 * - `PATCH /drives/{drive_id}` only after start, for a drive attached before it, with a
 *   `path_on_host` that exists: the drive's backing file is replaced (Firecracker reopens it and
 *   notifies the guest), and the fake's guest sees the new contents of a config or secrets drive;
 * - the kernel, initrd and every drive's `path_on_host` must exist when they are PUT, and the
 *   snapshot's files (and the drives it names) when it is loaded.
 *
 * Refusals answer 400 with `{"fault_message": ...}`, like Firecracker. Every call is recorded
 * (`calls`, and one JSON line per call in `callLog` when given). `PUT /snapshot/create` writes the
 * vmstate file (the configuration, as JSON) and a memory file of `mem_size_mib` sparse MiB.
 *
 * With a vsock device it also plays the guest: once started (or restored and resumed) it reads the
 * config and secrets drives out of their ext4 images (`debugfs`, by label) and runs the real guest
 * agent (src/guest) behind Firecracker's host-side vsock handshake (src/driver/sim/vmm-socket.ts),
 * so drain, readiness and post-restore go over the real protocol. A snapshot resets vsock
 * connections, as Firecracker's does.
 */

const run = promisify(execFile);

export interface FakeCall {
  pid: number;
  method: string;
  path: string;
  body: unknown;
  status: number;
  fault_message?: string;
}

export type FakeState = 'Not started' | 'Running' | 'Paused';

export interface FakeFirecrackerOptions {
  apiSock: string;
  /** Appends each call as a JSON line (survives the process, for tests that start several). */
  callLog?: string;
  /** Runs the guest agent behind the vsock device (default true). */
  guest?: boolean;
  /** Called after a failed snapshot load (the process main exits, as Firecracker does). */
  onFatal?: (reason: string) => void;
  /**
   * The chroot the fake runs in, as the jailer leaves Firecracker: every path the API is given
   * (kernel, drives, vsock socket, snapshot files) is resolved under it, as a chrooted process
   * would see it. `apiSock` is a host path.
   */
  root?: string;
}

interface Drive {
  drive_id: string;
  path_on_host?: string;
  is_root_device: boolean;
  is_read_only?: boolean;
}

interface VmStateFile {
  fake_firecracker_vmstate: 1;
  machine_config: Record<string, unknown> | null;
  drives: Drive[];
  network_interfaces: { iface_id: string; host_dev_name: string }[];
  vsock: { guest_cid: number; uds_path: string } | null;
}

class Refusal extends Error {}

const PRE_BOOT_ONLY = new Set(['/boot-source', '/machine-config', '/cpu-config', '/drives/{drive_id}', '/network-interfaces/{iface_id}', '/vsock', '/mmds/config', '/entropy', '/balloon', '/pmem/{id}', '/serial', '/hotplug/memory']);
/** Allowed before `/snapshot/load` without making the process "configured". */
const BEFORE_LOAD = new Set(['/logger', '/metrics']);

export class FakeFirecracker {
  readonly apiSock: string;
  readonly calls: FakeCall[] = [];
  readonly #spec: FirecrackerSpec;
  readonly #server: http.Server;
  readonly #options: FakeFirecrackerOptions;
  #state: FakeState = 'Not started';
  #configured = false;
  #bootSource: Record<string, unknown> | null = null;
  #machineConfig: Record<string, unknown> | null = { vcpu_count: 1, mem_size_mib: 128, smt: false, track_dirty_pages: false };
  readonly #drives = new Map<string, Drive>();
  readonly #ifaces = new Map<string, { iface_id: string; host_dev_name: string; guest_mac?: string }>();
  #vsock: { guest_cid: number; uds_path: string } | null = null;
  #guest: { vmm: VmmSocket; agent: GuestAgent; listener: { close(): Promise<void> }; dir: string } | null = null;
  #closed = false;

  private constructor(options: FakeFirecrackerOptions, spec: FirecrackerSpec) {
    this.apiSock = options.apiSock;
    this.#options = options;
    this.#spec = spec;
    this.#server = http.createServer((request, response) => void this.#handle(request, response));
  }

  static async start(options: FakeFirecrackerOptions, spec = new FirecrackerSpec()): Promise<FakeFirecracker> {
    const leftover = await lstat(options.apiSock).catch(() => null);
    // Firecracker refuses to start on an existing socket path; so does the fake.
    if (leftover) throw new Error(`${options.apiSock} already exists (Firecracker does not replace an API socket)`);
    const fake = new FakeFirecracker(options, spec);
    await new Promise<void>((resolve, reject) => {
      fake.#server.once('error', reject);
      fake.#server.listen(options.apiSock, () => resolve());
    });
    return fake;
  }

  /** A path the API was given, as the (possibly chrooted) process opens it. */
  #at(file: string): string {
    return this.#options.root === undefined ? file : path.join(this.#options.root, file);
  }

  get state(): FakeState {
    return this.#state;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#stopGuest();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await unlink(this.apiSock).catch(() => {});
  }

  async #handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const method = request.method ?? 'GET';
    const url = request.url ?? '/';
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown;
    let status = 204;
    let answer: unknown;
    let fatal: string | null = null;
    try {
      if (text.trim() !== '') {
        try {
          body = JSON.parse(text);
        } catch (error) {
          throw new Refusal(`An error occurred when deserializing the json body of a request: ${(error as Error).message}`);
        }
      }
      const route = this.#spec.route(method, url);
      if (!route) throw new Refusal(`Invalid request method and/or path: ${method} ${url}.`);
      if (route.bodyDefinition) {
        if (body === undefined) throw new Refusal(`${method} ${url}: the request body is missing (${route.bodyDefinition})`);
        const problems = this.#spec.validate(route.bodyDefinition, body);
        if (problems.length > 0) throw new Refusal(`An error occurred when deserializing the json body of a request: ${problems.join('; ')}`);
      }
      try {
        answer = await this.#apply(method, route.template, route.params, body as Record<string, unknown>);
      } catch (error) {
        if (error instanceof Refusal && route.template === '/snapshot/load') fatal = error.message;
        throw error;
      }
      if (answer !== undefined) status = 200;
    } catch (error) {
      if (!(error instanceof Refusal)) throw error;
      status = 400;
      answer = { fault_message: error.message };
    }
    const call: FakeCall = { pid: process.pid, method, path: url, body: body ?? null, status, ...(status === 400 ? { fault_message: (answer as { fault_message: string }).fault_message } : {}) };
    this.calls.push(call);
    if (this.#options.callLog) await appendFile(this.#options.callLog, `${JSON.stringify(call)}\n`);
    const payload = answer === undefined ? '' : JSON.stringify(answer);
    response.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) });
    response.end(payload, () => {
      if (fatal !== null) this.#options.onFatal?.(fatal);
    });
  }

  async #apply(method: string, template: string, params: Record<string, string>, body: Record<string, unknown>): Promise<unknown> {
    const started = this.#state !== 'Not started';
    if (method === 'GET') {
      if (template === '/') return { app_name: 'Firecracker', id: 'anonymous-instance', state: this.#state, vmm_version: '1.16.1-fake' };
      if (template === '/version') return { firecracker_version: '1.16.1-fake' };
      if (template === '/vm/config') return this.#exportConfig();
      if (template === '/machine-config') return this.#machineConfig;
      throw new Refusal(`the fake does not serve GET ${template}`);
    }
    if (PRE_BOOT_ONLY.has(template) && method === 'PUT') {
      if (started) throw new Refusal('The requested operation is not supported after starting the microVM.');
      this.#configured = true;
    }
    if (BEFORE_LOAD.has(template)) return undefined;
    switch (`${method} ${template}`) {
      case 'PUT /boot-source':
        for (const field of ['kernel_image_path', 'initrd_path'] as const) {
          const file = body[field];
          if (typeof file === 'string' && !existsSync(this.#at(file))) throw new Refusal(`Boot source error: cannot open ${field === 'kernel_image_path' ? 'kernel image' : 'initrd'} ${file}: No such file or directory (os error 2)`);
        }
        this.#bootSource = body;
        return undefined;
      case 'PUT /machine-config': {
        const vcpus = body.vcpu_count as number;
        if (body.smt === true && vcpus > 1 && vcpus % 2 !== 0) throw new Refusal('The number of vCPUs must be 1 or an even number when SMT is enabled.');
        this.#machineConfig = body;
        return undefined;
      }
      case 'PUT /drives/{drive_id}': {
        const drive = body as unknown as Drive;
        if (drive.drive_id !== params.drive_id) throw new Refusal(`The id from the path (${params.drive_id}) does not match the id from the body (${drive.drive_id})!`);
        if (drive.path_on_host === undefined) throw new Refusal(`Drive ${drive.drive_id}: path_on_host is required for a virtio-block drive`);
        if (!existsSync(this.#at(drive.path_on_host))) throw new Refusal(`Unable to create the block device: BackingFile(Os { code: 2, kind: NotFound, message: "No such file or directory" }, "${drive.path_on_host}")`);
        if (drive.is_root_device && [...this.#drives.values()].some((d) => d.is_root_device && d.drive_id !== drive.drive_id)) throw new Refusal('A root block device already exists!');
        this.#drives.set(drive.drive_id, drive);
        return undefined;
      }
      case 'PATCH /drives/{drive_id}': {
        if (!started) throw new Refusal('The requested operation is not supported before starting the microVM.');
        const patch = body as unknown as { drive_id: string; path_on_host?: string };
        if (patch.drive_id !== params.drive_id) throw new Refusal(`The id from the path (${params.drive_id}) does not match the id from the body (${patch.drive_id})!`);
        const drive = this.#drives.get(patch.drive_id);
        if (!drive) throw new Refusal(`Unable to patch the block device: DeviceNotFound: no drive ${patch.drive_id} was attached before boot.`);
        if (patch.path_on_host !== undefined) {
          if (!existsSync(this.#at(patch.path_on_host))) throw new Refusal(`Unable to patch the block device: BackingFile(Os { code: 2, kind: NotFound, message: "No such file or directory" }, "${patch.path_on_host}")`);
          drive.path_on_host = patch.path_on_host;
          await this.#refreshGuestDrive(drive);
        }
        return undefined;
      }
      case 'PUT /network-interfaces/{iface_id}': {
        if (body.iface_id !== params.iface_id) throw new Refusal(`The id from the path (${params.iface_id}) does not match the id from the body (${String(body.iface_id)})!`);
        for (const other of this.#ifaces.values()) {
          if (other.iface_id !== body.iface_id && other.host_dev_name === body.host_dev_name) throw new Refusal(`The host device name ${String(body.host_dev_name)} is already in use.`);
        }
        this.#ifaces.set(String(body.iface_id), body as { iface_id: string; host_dev_name: string });
        return undefined;
      }
      case 'PUT /vsock':
        this.#vsock = { guest_cid: body.guest_cid as number, uds_path: body.uds_path as string };
        return undefined;
      case 'PUT /actions': {
        if (body.action_type !== 'InstanceStart') {
          if (!started) throw new Refusal(`${String(body.action_type)}: the microVM is not started.`);
          return undefined;
        }
        if (started) throw new Refusal('The requested operation is not supported after starting the microVM.');
        if (!this.#bootSource) throw new Refusal('Cannot start microvm without kernel configuration.');
        this.#state = 'Running';
        await this.#startGuest();
        return undefined;
      }
      case 'PATCH /vm':
        if (!started) throw new Refusal('The requested operation is not supported before starting the microVM.');
        this.#state = body.state === 'Paused' ? 'Paused' : 'Running';
        return undefined;
      case 'PUT /snapshot/create':
        return this.#createSnapshot(body);
      case 'PUT /snapshot/load':
        return this.#loadSnapshot(body);
      default:
        throw new Refusal(`the fake does not implement ${method} ${template}`);
    }
  }

  async #createSnapshot(body: Record<string, unknown>): Promise<undefined> {
    if (this.#state !== 'Paused') throw new Refusal(`Create snapshot error: the microVM must be paused to create a snapshot (it is ${this.#state}).`);
    if (body.snapshot_type === 'Diff' && this.#machineConfig?.track_dirty_pages !== true) {
      throw new Refusal('Diff snapshots require dirty page tracking (machine-config track_dirty_pages) in this fake.');
    }
    const state: VmStateFile = {
      fake_firecracker_vmstate: 1,
      machine_config: this.#machineConfig,
      drives: [...this.#drives.values()],
      network_interfaces: [...this.#ifaces.values()],
      vsock: this.#vsock,
    };
    try {
      await writeFile(this.#at(String(body.snapshot_path)), `${JSON.stringify(state)}\n`);
      const memBytes = Number(this.#machineConfig?.mem_size_mib ?? 128) * 1024 * 1024;
      await writeFile(this.#at(String(body.mem_file_path)), '');
      await run('truncate', ['-s', String(memBytes), this.#at(String(body.mem_file_path))]);
    } catch (error) {
      throw new Refusal(`Create snapshot error: cannot write the snapshot files: ${(error as Error).message}`);
    }
    // Firecracker resets vsock connections when it snapshots; the guest's listeners survive.
    if (this.#guest) await this.#restartVsock();
    return undefined;
  }

  async #loadSnapshot(body: Record<string, unknown>): Promise<undefined> {
    if (this.#state !== 'Not started' || this.#configured) throw new Refusal('Loading a microVM snapshot not allowed after configuring boot-specific resources.');
    const memBackend = body.mem_backend as { backend_type: string; backend_path: string } | undefined;
    if ((memBackend === undefined) === (body.mem_file_path === undefined)) throw new Refusal('Exactly one of mem_backend and mem_file_path must be given.');
    const memPath = memBackend?.backend_path ?? String(body.mem_file_path);
    if (memBackend && memBackend.backend_type !== 'File') throw new Refusal('The fake supports only the File memory backend.');
    let state: VmStateFile;
    try {
      state = JSON.parse(await readFile(this.#at(String(body.snapshot_path)), 'utf8')) as VmStateFile;
    } catch (error) {
      throw new Refusal(`Load snapshot error: cannot read the microVM state ${String(body.snapshot_path)}: ${(error as Error).message}`);
    }
    if (state.fake_firecracker_vmstate !== 1) throw new Refusal(`Load snapshot error: ${String(body.snapshot_path)} is not a snapshot state file`);
    if (!existsSync(this.#at(memPath))) throw new Refusal(`Load snapshot error: cannot open the memory file ${memPath}: No such file or directory (os error 2)`);
    for (const drive of state.drives) {
      if (drive.path_on_host && !existsSync(this.#at(drive.path_on_host))) throw new Refusal(`Load snapshot error: block device ${drive.drive_id}: cannot open ${drive.path_on_host}: No such file or directory (os error 2)`);
    }
    const overrides = (body.network_overrides ?? []) as { iface_id: string; host_dev_name: string }[];
    for (const override of overrides) {
      const iface = state.network_interfaces.find((i) => i.iface_id === override.iface_id);
      if (!iface) throw new Refusal(`Load snapshot error: network override for unknown interface ${override.iface_id}`);
      iface.host_dev_name = override.host_dev_name;
    }
    const vsockOverride = body.vsock_override as { uds_path: string } | undefined;
    if (vsockOverride) {
      if (!state.vsock) throw new Refusal('Load snapshot error: vsock override given but the snapshot has no vsock device');
      state.vsock.uds_path = vsockOverride.uds_path;
    }
    this.#machineConfig = { ...state.machine_config, track_dirty_pages: body.track_dirty_pages === true };
    for (const drive of state.drives) this.#drives.set(drive.drive_id, drive);
    for (const iface of state.network_interfaces) this.#ifaces.set(iface.iface_id, iface);
    this.#vsock = state.vsock;
    this.#configured = true;
    this.#state = body.resume_vm === true ? 'Running' : 'Paused';
    await this.#startGuest();
    return undefined;
  }

  #exportConfig(): Record<string, unknown> {
    return {
      'boot-source': this.#bootSource ?? undefined,
      'machine-config': this.#machineConfig,
      drives: [...this.#drives.values()],
      'network-interfaces': [...this.#ifaces.values()],
      ...(this.#vsock ? { vsock: this.#vsock } : {}),
    };
  }

  // --- the guest ---

  /** Extracts a drive whose ext4 label is `label` into `dir`; false when no drive has that label. */
  async #extractDrive(label: string, dir: string): Promise<boolean> {
    for (const drive of this.#drives.values()) {
      if (!drive.path_on_host || !existsSync(this.#at(drive.path_on_host))) continue;
      const found = await run('e2label', [this.#at(drive.path_on_host)]).then(
        (r) => r.stdout.trim(),
        () => null,
      );
      if (found !== label) continue;
      await run('debugfs', ['-R', `rdump / ${dir}`, this.#at(drive.path_on_host)]);
      return true;
    }
    return false;
  }

  /** The guest sees a swapped config or secrets drive's new contents (a real guest remounts it by label). */
  async #refreshGuestDrive(drive: Drive): Promise<void> {
    const guest = this.#guest;
    if (!guest || !drive.path_on_host) return;
    const label = await run('e2label', [this.#at(drive.path_on_host)]).then(
      (r) => r.stdout.trim(),
      () => null,
    );
    const dir = label === 'mvm-config' ? path.join(guest.dir, 'config') : label === 'mvm-secrets' ? path.join(guest.dir, 'secrets') : null;
    if (dir === null) return;
    await rm(dir, { recursive: true, force: true });
    await run('mkdir', ['-p', dir]);
    await run('debugfs', ['-R', `rdump / ${dir}`, this.#at(drive.path_on_host)]);
  }

  async #startGuest(): Promise<void> {
    if (this.#options.guest === false || !this.#vsock) return;
    await this.#stopGuest();
    // Next to the API socket, so a killed fake leaves nothing outside the VM's own directory.
    const dir = `${this.apiSock}.guest`;
    await rm(dir, { recursive: true, force: true });
    const configDir = path.join(dir, 'config');
    const secretsDir = path.join(dir, 'secrets');
    await run('mkdir', ['-p', configDir, secretsDir]);
    await this.#extractDrive('mvm-config', configDir);
    await this.#extractDrive('mvm-secrets', secretsDir);
    const log = pino({ level: 'warn', name: 'fake-firecracker-guest' }, pino.destination(2));
    const agent = await GuestAgent.start({ configPath: path.join(configDir, 'mvm.json'), secretsDir, clock: systemClock, log });
    const agentSocket = path.join(dir, 'agent.sock');
    const listener = await unixSocketTransport(agentSocket).listen((stream) => agent.handleConnection(stream));
    const config = JSON.parse(await readFile(path.join(configDir, 'mvm.json'), 'utf8').catch(() => '{}')) as { vsock?: { agent_port?: number } };
    const agentPort = config.vsock?.agent_port ?? 1024;
    const vmm = await VmmSocket.start({ udsPath: this.#at(this.#vsock.uds_path), guestPorts: { [agentPort]: agentSocket } });
    this.#guest = { vmm, agent, listener, dir };
  }

  async #restartVsock(): Promise<void> {
    const guest = this.#guest;
    if (!guest || !this.#vsock) return;
    guest.agent.closeConnections();
    await guest.vmm.close();
    const config = JSON.parse(await readFile(path.join(guest.dir, 'config', 'mvm.json'), 'utf8').catch(() => '{}')) as { vsock?: { agent_port?: number } };
    guest.vmm = await VmmSocket.start({ udsPath: this.#at(this.#vsock.uds_path), guestPorts: { [config.vsock?.agent_port ?? 1024]: path.join(guest.dir, 'agent.sock') } });
  }

  async #stopGuest(): Promise<void> {
    const guest = this.#guest;
    this.#guest = null;
    if (!guest) return;
    guest.agent.closeConnections();
    await Promise.allSettled([guest.vmm.close(), guest.listener.close()]);
    await rm(guest.dir, { recursive: true, force: true });
  }
}
