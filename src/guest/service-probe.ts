import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { z } from 'zod';
import { type Clock, systemClock } from '../common/clock.ts';
import type { PortSpec } from '../schemas/role-manifest.ts';
import type { ServiceProbeKind, ServiceState } from '../vsock/protocol.ts';
import type { GuestService } from './config.ts';

/**
 * How the agent decides whether a service is ready. Injectable: the default is deliberately simple.
 * - A service with TCP ports is ready when every one of them accepts a connection on the loopback.
 * - A service without TCP ports is ready when its process runs, known from `<pid-dir>/<name>.pid`
 *   (the service manager or simulator writes it); without a pid directory its state is unknown.
 */
export interface ServiceProbeResult {
  state: z.infer<typeof ServiceState>;
  probe: z.infer<typeof ServiceProbeKind>;
  detail: string | null;
}

export interface ServiceProbe {
  probe(service: GuestService, ports: readonly z.infer<typeof PortSpec>[]): Promise<ServiceProbeResult>;
}

export interface DefaultProbeOptions {
  clock?: Clock;
  /** Directory of `<service>.pid` files; null when the agent has none. */
  pidDir?: string | null;
  host?: string;
  connectTimeoutMs?: number;
}

export function defaultServiceProbe(options: DefaultProbeOptions = {}): ServiceProbe {
  const clock = options.clock ?? systemClock;
  const pidDir = options.pidDir ?? null;
  const host = options.host ?? '127.0.0.1';
  const timeoutMs = options.connectTimeoutMs ?? 1000;

  function tcpConnect(port: number): Promise<string | null> {
    return new Promise((resolve) => {
      const socket = net.createConnection({ host, port });
      const done = (problem: string | null) => {
        clock.clearTimeout(timer);
        socket.destroy();
        resolve(problem);
      };
      const timer = clock.setTimeout(() => done(`tcp/${port}: no answer within ${timeoutMs} ms`), timeoutMs);
      socket.once('connect', () => done(null));
      socket.once('error', (error: NodeJS.ErrnoException) => done(`tcp/${port}: ${error.code ?? error.message}`));
    });
  }

  async function processRuns(name: string): Promise<ServiceProbeResult> {
    if (pidDir === null) return { state: 'unknown', probe: 'none', detail: 'no TCP port and no pid directory to check' };
    let pid: number;
    try {
      pid = Number((await readFile(path.join(pidDir, `${name}.pid`), 'utf8')).trim());
    } catch {
      return { state: 'not-ready', probe: 'process', detail: `no pid file for ${name}` };
    }
    if (!Number.isInteger(pid) || pid <= 0) return { state: 'not-ready', probe: 'process', detail: `pid file for ${name} holds no pid` };
    try {
      process.kill(pid, 0);
      return { state: 'ready', probe: 'process', detail: null };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EPERM') return { state: 'ready', probe: 'process', detail: null };
      return { state: 'not-ready', probe: 'process', detail: `process ${pid} is not running` };
    }
  }

  return {
    async probe(service, ports) {
      const declared = service.ports.map((name) => ports.find((p) => p.name === name));
      const missing = service.ports.filter((_, i) => declared[i] === undefined);
      if (missing.length > 0) return { state: 'unknown', probe: 'none', detail: `ports not declared in the config: ${missing.join(', ')}` };
      const tcp = declared.filter((p) => p !== undefined && p.protocol === 'tcp').map((p) => p!.port);
      if (tcp.length === 0) return processRuns(service.name);
      const problems = (await Promise.all(tcp.map(tcpConnect))).filter((p): p is string => p !== null);
      return problems.length === 0 ? { state: 'ready', probe: 'tcp', detail: null } : { state: 'not-ready', probe: 'tcp', detail: problems.join('; ') };
    },
  };
}
