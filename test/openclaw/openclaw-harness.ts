import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { systemClock } from '../../src/common/clock.ts';
import { renderOpenClawConfig, type OpenClawConfigInput } from '../../src/openclaw/gateway-config.ts';
import { findOpenClaw, type OpenClawInstall } from '../../src/openclaw/install-location.ts';
import { OpenClawProcess } from '../../src/openclaw/openclaw-process.ts';
import { serviceOutputPath, type OpenClawMounts } from '../../src/openclaw/openclaw-layout.ts';
import { openclawServiceEnv } from '../../src/openclaw/service-env.ts';

/**
 * Runs the real OpenClaw (the pinned install) for tests: one temp directory per instance with
 * the data, secrets, config and tmp "drives", processes in their own groups, all stopped by
 * `stopAll` (SIGTERM, then SIGKILL after a bound).
 */

export const clock = systemClock;

/** The install, or a loud failure: these tests never skip. */
export function requireInstall(): OpenClawInstall {
  const install = findOpenClaw();
  if (install === null) throw new Error('OpenClaw is not installed: run `npm run openclaw:install` (these tests run the real openclaw@2026.9.6 with Node 24)');
  return install;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

export interface InstanceDirs {
  root: string;
  mounts: OpenClawMounts;
}

export function instanceDirs(parent: string, name: string): InstanceDirs {
  const root = join(parent, name);
  const mounts = { data: join(root, 'data'), secrets: join(root, 'secrets'), config: join(root, 'config'), tmp: join(root, 'tmp') };
  for (const dir of Object.values(mounts)) mkdirSync(dir, { recursive: true });
  return { root, mounts };
}

/** A secret as the secrets drive holds it: a regular file, mode 0600, single link. */
export function putSecret(dirs: InstanceDirs, name: string, value: string): void {
  writeFileSync(join(dirs.mounts.secrets, name), `${value}\n`, { mode: 0o600 });
}

export function writeConfig(dirs: InstanceDirs, input: Omit<OpenClawConfigInput, 'mounts' | 'config_file'>) {
  const rendered = renderOpenClawConfig({ ...input, mounts: dirs.mounts, config_file: 'openclaw.json' });
  writeFileSync(join(dirs.mounts.config, 'openclaw.json'), rendered.text);
  return rendered;
}

export function serviceEnv(install: OpenClawInstall, dirs: InstanceDirs, extra: Record<string, string> = {}): Record<string, string> {
  return { ...openclawServiceEnv({ mounts: dirs.mounts, configFile: 'openclaw.json', path: `${dirname(install.node)}:/usr/bin:/bin` }), ...extra };
}

export class Harness {
  readonly parent = mkdtempSync(join(tmpdir(), 'mvm-openclaw-'));
  readonly install = requireInstall();
  readonly #processes: OpenClawProcess[] = [];

  start(dirs: InstanceDirs, args: readonly string[], logName: string, extraEnv: Record<string, string> = {}): OpenClawProcess {
    const proc = OpenClawProcess.start({ install: this.install, args, env: serviceEnv(this.install, dirs, extraEnv), logFile: join(dirs.root, `${logName}.out`), clock });
    this.#processes.push(proc);
    return proc;
  }

  /** Like start, with stdout and stderr where the simulator and the NixOS unit put a service's output: on the data drive. */
  startService(dirs: InstanceDirs, args: readonly string[], service: string, extraEnv: Record<string, string> = {}): OpenClawProcess {
    const proc = OpenClawProcess.start({ install: this.install, args, env: serviceEnv(this.install, dirs, extraEnv), logFile: serviceOutputPath(dirs.mounts.data, service), clock });
    this.#processes.push(proc);
    return proc;
  }

  async stopAll(graceMs = 5_000): Promise<void> {
    await Promise.all(this.#processes.splice(0).map((p) => p.stop(graceMs)));
  }

  cleanup(): void {
    rmSync(this.parent, { recursive: true, force: true });
  }
}

/** Every file under dir (relative paths), for "nothing outside /data" checks. */
export function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

/** Ports in LISTEN state on this machine (from /proc/net/tcp{,6}). */
export async function listeningPorts(): Promise<Set<number>> {
  const { readFileSync } = await import('node:fs');
  const ports = new Set<number>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] === '0A') ports.add(parseInt(fields[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

/**
 * Processes that still listen on `port` and were started by this test: their environment names
 * `marker` (the harness directory, in OPENCLAW_STATE_DIR and friends). The port alone is not
 * enough: test files run in parallel, and once our gateway is gone the kernel may hand the same
 * ephemeral port to another file's listener.
 */
export async function ourListeners(port: number, marker: string): Promise<number[]> {
  const { readFileSync, readdirSync, readlinkSync } = await import('node:fs');
  const inodes = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] === '0A' && parseInt(fields[1]!.split(':')[1]!, 16) === port) inodes.add(fields[9]!);
    }
  }
  if (inodes.size === 0) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const holds = readdirSync(`/proc/${entry}/fd`).some((fd) => {
        const target = (() => {
          try {
            return readlinkSync(`/proc/${entry}/fd/${fd}`);
          } catch {
            return '';
          }
        })();
        const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
        return inode !== undefined && inodes.has(inode);
      });
      if (holds && readFileSync(`/proc/${entry}/environ`, 'utf8').includes(marker)) pids.push(Number(entry));
    } catch {
      // The process ended while we looked: it holds nothing any more.
    }
  }
  return pids;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}
