import net from 'node:net';
import type { GuestConfig, GuestService } from '../../guest/config.ts';

/**
 * How a simulated VM starts one of its role's services. The runner (vm-runner.ts) asks a launcher
 * for every service its config drive declares and only sees the result, so a launcher that runs
 * the real program (when it is installed on this machine) slots in next to the simulated one
 * without touching the runner.
 */
export interface ServiceLaunchContext {
  instanceId: string;
  /** This VM's own loopback address: where its services listen. */
  loopback: string;
  /** The config drive's port declarations, which `service.ports` names. */
  ports: GuestConfig['ports'];
}

export interface LaunchedService {
  /** The process that runs the service: written to `<run>/pids/<service>.pid` for the agent's probe. */
  pid: number;
  /** What listens where; `simulated` says whether it is a stand-in for the real program. */
  listening: { port_name: string; address: string; port: number }[];
  simulated: boolean;
  /** Whether the service's process still runs (a stand-in inside the runner always does). */
  running?: () => boolean;
  stop(): Promise<void>;
}

export interface ServiceLauncher {
  launch(service: GuestService, ctx: ServiceLaunchContext): Promise<LaunchedService>;
}

/**
 * The stand-in for a program that is not installed (the OpenClaw gateway and node host need
 * their own, large install): it listens on each of the service's TCP ports on the VM's loopback
 * address and answers every connection with one line naming itself, which is all the agent's
 * readiness probe and a curious user need. It runs inside the runner's process.
 */
export const simulatedServiceLauncher: ServiceLauncher = {
  async launch(service, ctx) {
    const banner = `simulated ${service.name} (${service.program} is not installed) on ${ctx.instanceId}\n`;
    const servers: net.Server[] = [];
    const listening: LaunchedService['listening'] = [];
    const stop = () => Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined);
    try {
      for (const portName of service.ports) {
        const port = ctx.ports.find((p) => p.name === portName);
        if (!port || port.protocol !== 'tcp') continue;
        const server = net.createServer((socket) => {
          socket.on('error', () => {});
          socket.end(banner);
        });
        servers.push(server);
        await listenExclusive(server, ctx.loopback, port.port);
        listening.push({ port_name: port.name, address: ctx.loopback, port: port.port });
      }
    } catch (error) {
      await stop();
      throw error;
    }
    return { pid: process.pid, listening, simulated: true, stop };
  },
};

function listenExclusive(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      // The usual cause is a second dev fleet (another state dir) on the same tenant subnet:
      // 10.a.b.c maps to 127.a.b.c for every fleet on this machine.
      if (error.code === 'EADDRINUSE') {
        reject(new Error(`${host}:${port} is already in use on this machine; if another simulated fleet runs here with the same tenant subnets, stop it (mvm-actors dev --down --state-dir <its dir>) or give this fleet other tenants[].ipv4_subnet values`));
      } else reject(error);
    });
    server.listen({ host, port, exclusive: true }, () => resolve());
  });
}
