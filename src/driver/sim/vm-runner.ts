import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { pino } from 'pino';
import { systemClock } from '../../common/clock.ts';
import { loadGuestConfig } from '../../guest/config.ts';
import { GuestAgent } from '../../guest/guest-agent.ts';
import { defaultServiceProbe } from '../../guest/service-probe.ts';
import { unixSocketTransport } from '../../guest/transport.ts';
import { type RunnerConfig, vmLayout } from './layout.ts';
import { VmmSocket } from './vmm-socket.ts';

/**
 * One simulated microVM: node --import tsx src/driver/sim/vm-runner.ts <vmDir>
 *
 * Started detached by the simulation driver (sim-driver.ts). It runs, in this one process:
 * - the guest agent, reading the config drive's mvm.json and the secrets drive, listening on a
 *   Unix socket inside the VM directory;
 * - Firecracker's vsock device, host side: `<vmDir>/vsock.sock` with the `CONNECT <port>` handshake,
 *   forwarding the agent's port to the agent;
 * - each service the config drive declares, as a SIMULATED service (the real program is not
 *   installed): it listens on the service's TCP ports on this VM's own loopback address and
 *   answers with one line naming itself; `<run>/pids/<service>.pid` holds this process's pid.
 * When everything listens it writes `<run>/ready`. SIGTERM closes everything and exits 0.
 */

async function main(): Promise<void> {
  const vmDir = process.argv[2];
  if (!vmDir) {
    process.stderr.write('usage: vm-runner <vmDir>\n');
    process.exit(2);
  }
  const layout = vmLayout(path.resolve(vmDir));
  const config = JSON.parse(readFileSync(layout.runnerFile, 'utf8')) as RunnerConfig;
  const log = pino({ name: 'mvm-sim-vm', base: { pid: process.pid, instance_id: config.instance_id } }, pino.destination(2));

  await rm(layout.runDir, { recursive: true, force: true });
  await mkdir(layout.pidDir, { recursive: true });

  const configPath = path.join(config.config_dir, 'mvm.json');
  const agent = await GuestAgent.start({
    configPath,
    secretsDir: config.secrets_dir,
    secretsEpoch: config.secrets_epoch,
    clock: systemClock,
    log,
    probe: defaultServiceProbe({ clock: systemClock, pidDir: layout.pidDir, host: config.loopback }),
  });
  const listener = await unixSocketTransport(layout.agentSocket).listen((stream) => agent.handleConnection(stream));
  const vmm = await VmmSocket.start({ udsPath: layout.vsockSocket, guestPorts: { [config.agent_port]: layout.agentSocket } });

  const servers: net.Server[] = [];
  const simulated: { service: string; program: string; address: string; port: number; port_name: string }[] = [];
  const guestConfig = await loadGuestConfig(configPath);
  if (guestConfig.ok) {
    for (const service of guestConfig.config.services) {
      for (const portName of service.ports) {
        const port = guestConfig.config.ports.find((p) => p.name === portName);
        if (!port || port.protocol !== 'tcp') continue;
        const banner = `simulated ${service.name} (${service.program} is not installed) on ${config.instance_id}\n`;
        const server = net.createServer((socket) => {
          socket.on('error', () => {});
          socket.end(banner);
        });
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host: config.loopback, port: port.port, exclusive: true }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        servers.push(server);
        simulated.push({ service: service.name, program: service.program, address: config.loopback, port: port.port, port_name: port.name });
        process.stdout.write(`SIMULATED service ${service.name} listening on ${config.loopback}:${port.port}\n`);
      }
      await writeFile(path.join(layout.pidDir, `${service.name}.pid`), `${process.pid}\n`);
    }
  } else {
    log.warn({ error: guestConfig.error }, 'no usable mvm.json on the config drive: no services to simulate');
  }
  await writeFile(layout.servicesFile, `${JSON.stringify({ loopback: config.loopback, simulated }, null, 2)}\n`);
  await writeFile(layout.readyFile, `${process.pid}\n`);
  process.stdout.write(`sim vm ${config.instance_id} ready: agent on ${listener.address}, vsock ${layout.vsockSocket}\n`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    agent.closeConnections();
    void Promise.allSettled([listener.close(), vmm.close(), ...servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))])
      .then(() => rm(layout.readyFile, { force: true }))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`vm-runner: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
