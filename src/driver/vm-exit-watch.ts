import type { Clock } from '../common/clock.ts';
import { liveProcess, type PidRecord } from './sim/proc.ts';
import type { VmExit } from './vmm-driver.ts';

interface Watched {
  record: PidRecord;
  /** Set before the driver ends the process itself, so its exit is not reported as unexpected. */
  expected: boolean;
  /** Started by this driver (its exit is seen directly) or adopted (polled). */
  child: boolean;
}

/**
 * The `onExit` half of a driver whose VMs are detached host processes (the simulator's runners,
 * Firecracker processes): reports a VM's exit only when the driver did not cause it. A process the
 * driver started is watched through its exit promise; one found running after a control-plane
 * restart is adopted and polled on the injected clock, since it is no child of ours.
 */
export class VmExitWatch {
  readonly #clock: Clock;
  readonly #pollMs: number;
  readonly #watched = new Map<string, Watched>();
  readonly #listeners = new Set<(exit: VmExit) => void>();
  #pollTimer: unknown = null;
  #closed = false;

  constructor(clock: Clock, pollMs: number) {
    this.#clock = clock;
    this.#pollMs = pollMs;
  }

  /** A process this driver started; `exited` resolves with why it ended. */
  started(instanceId: string, record: PidRecord, exited: Promise<string>): void {
    const watched: Watched = { record, expected: false, child: true };
    this.#watched.set(instanceId, watched);
    void exited.then((reason) => {
      if (this.#watched.get(instanceId) === watched) this.#watched.delete(instanceId);
      if (!watched.expected) this.#emit({ instance_id: instanceId, reason });
    });
  }

  /** A VM that was running before this driver started: polled until it ends. */
  adopt(instanceId: string, record: PidRecord | null): void {
    if (this.#watched.has(instanceId) || !record) return;
    this.#watched.set(instanceId, { record, expected: false, child: false });
    this.#schedulePoll();
  }

  /** The driver is about to end this process itself: its exit is not reported. */
  expectExit(instanceId: string, record: PidRecord): void {
    const watched = this.#watched.get(instanceId);
    if (watched && watched.record.pid === record.pid) watched.expected = true;
    else this.#watched.set(instanceId, { record, expected: true, child: false });
  }

  forget(instanceId: string): void {
    this.#watched.delete(instanceId);
  }

  onExit(listener: (exit: VmExit) => void): () => void {
    const subscription = (exit: VmExit) => listener(exit);
    this.#listeners.add(subscription);
    return () => this.#listeners.delete(subscription);
  }

  /** Stops reporting and polling (the VMs keep running: they are detached). */
  close(): void {
    this.#closed = true;
    if (this.#pollTimer !== null) this.#clock.clearTimeout(this.#pollTimer);
    this.#pollTimer = null;
  }

  #schedulePoll(): void {
    if (this.#pollTimer !== null || this.#closed) return;
    this.#pollTimer = this.#clock.setTimeout(() => {
      this.#pollTimer = null;
      let adopted = 0;
      for (const [id, watched] of [...this.#watched]) {
        if (watched.child) continue;
        if (liveProcess(watched.record)) {
          adopted += 1;
          continue;
        }
        this.#watched.delete(id);
        if (!watched.expected) this.#emit({ instance_id: id, reason: 'exited (adopted VM; exit status unknown)' });
      }
      if (adopted > 0) this.#schedulePoll();
    }, this.#pollMs);
  }

  #emit(exit: VmExit): void {
    if (this.#closed) return;
    for (const listener of [...this.#listeners]) listener(exit);
  }
}
