import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { chown, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { systemClock } from '../../common/clock.ts';
import { type GuestConfig, loadGuestConfig } from '../../guest/config.ts';
import { GuestAgent } from '../../guest/guest-agent.ts';
import { OpenClawGuest } from '../../guest/openclaw-guest.ts';
import { defaultServiceProbe } from '../../guest/service-probe.ts';
import { unixSocketTransport } from '../../guest/transport.ts';
import { type RunnerConfig, type VmLayout, vmLayout } from './layout.ts';
import { isOpenClawService, openclawLauncher } from './openclaw-launcher.ts';
import { type LaunchedService, type ServiceLauncher, simulatedServiceLauncher } from './service-launcher.ts';
import { VmmSocket } from './vmm-socket.ts';

/**
 * One simulated microVM: node --import tsx src/driver/sim/vm-runner.ts <vmDir>
 *
 * Started detached by the simulation driver (sim-driver.ts). It runs, in this one process:
 * - Firecracker's vsock device, host side: `<vmDir>/vsock.sock` with the `CONNECT <port>` handshake,
 *   forwarding the agent's port to the agent;
 * - the guest agent, reading the config drive's mvm.json and the secrets drive, listening on a
 *   Unix socket inside the VM's run directory;
 * - each service the config drive declares, started by a ServiceLauncher (service-launcher.ts):
 *   today always the SIMULATED stand-in; `<run>/pids/<service>.pid` holds its pid.
 * When everything listens it writes `<run>/ready`. SIGTERM closes everything and exits 0.
 *
 * Like Firecracker's jailer, it starts as the driver's user, sets up what needs that user (the
 * vsock socket in the root-owned VM directory, the run directory), then, when the runner config
 * names a tenant identity, drops to that uid and gid for good before it reads a drive or starts a
 * service: the guest side of the VM only ever holds its tenant's rights. It first changes into
 * the VM directory and from then on uses paths relative to it, so the tenant needs no right on
 * the directories above (a state dir under /root, say); this is its chroot without a chroot.
 */

async function main(): Promise<void> {
  const vmDir = process.argv[2];
  if (!vmDir) {
    process.stderr.write('usage: vm-runner <vmDir>\n');
    process.exit(2);
  }
  const absolute = vmLayout(path.resolve(vmDir));
  const config = JSON.parse(readFileSync(absolute.runnerFile, 'utf8')) as RunnerConfig;
  process.chdir(absolute.dir);
  const layout = vmLayout('.');
  const configDir = insideVm(absolute.dir, config.config_dir);
  const secretsDir = insideVm(absolute.dir, config.secrets_dir);
  const log = pino({ name: 'mvm-sim-vm', base: { pid: process.pid, instance_id: config.instance_id } }, pino.destination(2));

  // --- as the driver's user ---
  await prepareRunDir(layout, config.identity);
  const vmm = await VmmSocket.start({ udsPath: layout.vsockSocket, guestPorts: { [config.agent_port]: layout.agentSocket } });
  if (config.openclaw) mountGuestPaths(config.openclaw.mounts);
  if (config.identity) dropPrivileges(config.identity);

  // --- as the tenant ---
  const configPath = path.join(configDir, 'mvm.json');
  const real = config.openclaw ?? null;
  let openclaw: OpenClawGuest | null = null;
  let services: StartedService[] = [];
  const agent = await GuestAgent.start({
    configPath,
    secretsDir,
    secretsEpoch: config.secrets_epoch,
    clock: systemClock,
    log,
    probe: defaultServiceProbe({ clock: systemClock, pidDir: layout.pidDir, host: config.loopback }),
    // Only once a real gateway runs here: a stand-in is probed like any service.
    openclaw: () => openclaw,
    restartService: (name) => restartService(services, name, configPath, layout, config, log),
  });
  const listener = await unixSocketTransport(layout.agentSocket).listen((stream) => agent.handleConnection(stream));
  services = await startServices((guest) => launcherFor(guest, real), configPath, layout, config, log);
  if (real && services.some((s) => !s.launched.simulated)) openclaw = new OpenClawGuest({ clock: systemClock, secretsDir: real.secrets, dataDir: real.data });

  const simulated = services.flatMap(({ name, program, launched }) =>
    launched.simulated ? launched.listening.map((l) => ({ service: name, program, address: l.address, port: l.port, port_name: l.port_name })) : [],
  );
  const realServices = services.filter((s) => !s.launched.simulated).map(({ name, program, launched }) => ({ service: name, program, pid: launched.pid, listening: launched.listening }));
  await writeFile(layout.servicesFile, `${JSON.stringify({ loopback: config.loopback, simulated, real: realServices }, null, 2)}\n`);
  await writeFile(layout.readyFile, `${process.pid}\n`);
  process.stdout.write(`sim vm ${config.instance_id} ready: agent on ${listener.address}, vsock ${absolute.vsockSocket}${config.identity ? `, uid ${config.identity.uid}` : ''}\n`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    agent.closeConnections();
    void Promise.allSettled([listener.close(), vmm.close(), ...services.map((s) => s.launched.stop())])
      .then(() => rm(layout.readyFile, { force: true }))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/** A drive directory from runner.json, relative to the VM directory (the driver puts them all there). */
function insideVm(vmDir: string, dir: string): string {
  const relative = path.relative(vmDir, dir);
  if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) throw new Error(`runner.json: ${dir} is not inside the VM directory ${vmDir}`);
  return relative;
}

/** A fresh run directory (nothing from an earlier life of this VM), owned by the tenant. */
async function prepareRunDir(layout: VmLayout, identity: RunnerConfig['identity']): Promise<void> {
  await rm(layout.runDir, { recursive: true, force: true });
  await mkdir(layout.pidDir, { recursive: true, mode: 0o700 });
  if (identity) {
    await chown(layout.runDir, identity.uid, identity.gid);
    await chown(layout.pidDir, identity.uid, identity.gid);
  }
}

/**
 * Inside the VM's private mount namespace (from `ip netns exec`): each drive at its guest mount
 * point, /tmp on the VM's own tmp, the OpenClaw install at its image path. Mount points are
 * created empty on the machine's filesystem; what is mounted on them is seen by this VM only.
 */
function mountGuestPaths(mounts: { host: string; guest: string; read_only: boolean }[]): void {
  for (const mount of mounts) {
    mkdirSync(mount.host, { recursive: true });
    mkdirSync(mount.guest, { recursive: true });
    execFileSync('mount', ['--bind', mount.host, mount.guest]);
    if (mount.read_only) execFileSync('mount', ['-o', 'remount,bind,ro', mount.guest]);
  }
}

/** Supplementary groups first (they need root), then the gid, then the uid: no way back. */
function dropPrivileges(identity: { uid: number; gid: number }): void {
  process.setgroups?.([identity.gid]);
  process.setgid?.(identity.gid);
  process.setuid?.(identity.uid);
  if (process.getuid?.() !== identity.uid || process.getgid?.() !== identity.gid) throw new Error(`could not drop to uid ${identity.uid} gid ${identity.gid}`);
}

interface StartedService {
  name: string;
  program: string;
  launched: LaunchedService;
}

/** The real OpenClaw for the services that declare an OpenClaw config, when the runner config provides it; the stand-in otherwise. */
function launcherFor(guest: GuestConfig, real: RunnerConfig['openclaw']): ServiceLauncher {
  if (!real) return simulatedServiceLauncher;
  const openclaw = openclawLauncher({ runtime: { node: real.node, entry: real.entry, mounts: { data: real.data, secrets: real.secrets, config: real.config } }, config: guest, clock: systemClock });
  return { launch: (service, ctx) => (isOpenClawService(service) ? openclaw : simulatedServiceLauncher).launch(service, ctx) };
}

/** Restarts one service (config-reload with a changed generated config): stop within its deadline, start again. */
async function restartService(services: StartedService[], name: string, configPath: string, layout: VmLayout, config: RunnerConfig, log: pino.Logger): Promise<void> {
  const index = services.findIndex((s) => s.name === name);
  if (index < 0) throw new Error(`no service ${name} runs in this VM`);
  const guestConfig = await loadGuestConfig(configPath);
  if (!guestConfig.ok) throw new Error(guestConfig.error);
  const service = guestConfig.config.services.find((s) => s.name === name);
  if (!service) throw new Error(`the config drive no longer declares service ${name}`);
  await services[index]!.launched.stop();
  const launched = await launcherFor(guestConfig.config, config.openclaw ?? null).launch(service, { instanceId: config.instance_id, loopback: config.loopback, ports: guestConfig.config.ports });
  services[index] = { name, program: service.program, launched };
  await writeFile(path.join(layout.pidDir, `${name}.pid`), `${launched.pid}\n`);
  log.info({ service: name, pid: launched.pid }, 'service restarted for a new config');
}

/** Starts every service the config drive declares, in order, and writes each one's pid file. */
async function startServices(launcherOf: (guest: GuestConfig) => ServiceLauncher, configPath: string, layout: VmLayout, config: RunnerConfig, log: pino.Logger): Promise<StartedService[]> {
  const guestConfig = await loadGuestConfig(configPath);
  if (!guestConfig.ok) {
    log.warn({ error: guestConfig.error }, 'no usable mvm.json on the config drive: no services to start');
    return [];
  }
  const launcher = launcherOf(guestConfig.config);
  const started: StartedService[] = [];
  for (const service of guestConfig.config.services) {
    const launched = await launcher.launch(service, { instanceId: config.instance_id, loopback: config.loopback, ports: guestConfig.config.ports });
    started.push({ name: service.name, program: service.program, launched });
    await writeFile(path.join(layout.pidDir, `${service.name}.pid`), `${launched.pid}\n`);
    for (const l of launched.listening) {
      process.stdout.write(`${launched.simulated ? 'SIMULATED' : 'started'} service ${service.name} listening on ${l.address}:${l.port}\n`);
    }
    if (!launched.simulated) process.stdout.write(`REAL ${service.program} service ${service.name} started, pid ${launched.pid}\n`);
  }
  return started;
}

main().catch((error: unknown) => {
  process.stderr.write(`vm-runner: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
