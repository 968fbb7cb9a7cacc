import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Clock } from '../common/clock.ts';
import type { OpenClawInstall } from './install-location.ts';
import { openclawServiceSpec } from './service-spec.ts';

/**
 * One OpenClaw process (gateway or node host) run with the pinned Node 24, in its own process
 * group: OpenClaw's launcher respawns itself as `openclaw-gateway` / `openclaw-node` and starts
 * worker processes, so only signalling the whole group stops everything. Stopping is bounded:
 * SIGTERM, then SIGKILL once the grace period is over (a gateway with an unreachable channel
 * otherwise drains for up to 325 s).
 */

export interface StartOptions {
  install: OpenClawInstall;
  /** OpenClaw CLI arguments, e.g. ["gateway", "run"] or ["node", "run", "--host", ...]. */
  args: readonly string[];
  env: Record<string, string>;
  /** stdout and stderr go here (the process's own log file is set in its config). */
  logFile: string;
  clock: Clock;
  /** Working directory (default: this process's); a VM passes its data drive, the one path sure to exist in its mount namespace. */
  cwd?: string;
}

export interface StopResult {
  /** How the group ended: "exited" within the grace period, or "killed" after it. */
  outcome: 'exited' | 'killed';
  stop_ms: number;
}

export class OpenClawProcess {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  readonly startedAt: number;
  #running = true;

  private constructor(child: ChildProcess, readonly clock: Clock) {
    this.#child = child;
    this.startedAt = clock.now();
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    void this.#exited.then(() => {
      this.#running = false;
    });
  }

  static start(options: StartOptions): OpenClawProcess {
    mkdirSync(dirname(options.logFile), { recursive: true });
    const log = openSync(options.logFile, 'a');
    try {
      // The log is appended to across restarts: the marker tells the readiness probe where this run's lines begin.
      writeSync(log, `${openclawServiceSpec.start_marker}\n`);
      const child = spawn(options.install.node, [options.install.entry, ...options.args], {
        env: options.env,
        ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
        stdio: ['ignore', log, log],
        // Its own process group, so stop() reaches the respawned child and its workers.
        detached: true,
      });
      child.unref();
      return new OpenClawProcess(child, options.clock);
    } finally {
      closeSync(log);
    }
  }

  get pid(): number {
    return this.#child.pid!;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Resolves when the launcher process has exited. */
  exited(): Promise<void> {
    return this.#exited;
  }

  /** PIDs of every live process in this group (from /proc), launcher included. */
  groupPids(): number[] {
    const pids: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        // Fields after the command name: state, ppid, pgrp.
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (Number(fields[2]) === this.pid && fields[0] !== 'Z') pids.push(Number(entry));
      } catch {
        // The process ended while we looked.
      }
    }
    return pids;
  }

  /** Resident memory of each process in the group, in bytes, by command name. */
  memory(): { pid: number; name: string; rss_bytes: number }[] {
    return this.groupPids().flatMap((pid) => {
      try {
        const status = readFileSync(`/proc/${pid}/status`, 'utf8');
        const name = /^Name:\s*(.*)$/m.exec(status)?.[1] ?? '?';
        const rssKb = Number(/^VmRSS:\s*(\d+) kB$/m.exec(status)?.[1] ?? 0);
        return [{ pid, name, rss_bytes: rssKb * 1024 }];
      } catch {
        return [];
      }
    });
  }

  #signal(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }

  /** SIGTERM to the group; SIGKILL to whatever is left after `graceMs`. Resolves once no process of the group is left. */
  async stop(graceMs: number): Promise<StopResult> {
    const started = this.clock.now();
    this.#signal('SIGTERM');
    const deadline = started + graceMs;
    let outcome: StopResult['outcome'] = 'exited';
    while (this.groupPids().length > 0) {
      if (this.clock.now() >= deadline && outcome === 'exited') {
        outcome = 'killed';
        this.#signal('SIGKILL');
      }
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, 50));
      // SIGKILL cannot be ignored; a group still there 5 s later is stuck in the kernel, not ours to wait on.
      if (outcome === 'killed' && this.clock.now() > deadline + 5_000) break;
    }
    return { outcome, stop_ms: this.clock.now() - started };
  }
}
