import { readFile } from 'node:fs/promises';
import type { Clock } from '../common/clock.ts';
import { VerbResults, type VerbResult } from '../vsock/protocol.ts';

/**
 * In-flight work that `drain` waits for. Nothing in the agent does work of its own yet, so the
 * default has none; the simulation hook gives every drain a work item that takes a set time.
 */
export interface WorkTracker {
  /** Work items running now. */
  inFlight(): number;
  /** Resolves when the work in flight at the time of the call has finished. */
  whenIdle(): Promise<void>;
}

export const noWork: WorkTracker = {
  inFlight: () => 0,
  whenIdle: () => Promise.resolve(),
};

/** Each drain finds one work item that finishes `ms` after the drain began (`--simulate-in-flight-ms`). */
export function simulatedWork(ms: number, clock: Clock): WorkTracker {
  let running = 0;
  return {
    inFlight: () => running,
    whenIdle: () => {
      running += 1;
      return new Promise<void>((resolve) =>
        clock.setTimeout(() => {
          running -= 1;
          resolve();
        }, ms),
      );
    },
  };
}

/** Where `job-status` comes from. */
export interface JobStatusSource {
  read(): Promise<VerbResult<'job-status'>>;
}

const NO_JOB: VerbResult<'job-status'> = { job_id: null, state: 'none', progress: null, message: null };

/**
 * A JSON file the job runner keeps up to date (`{job_id, state, progress, message}`); no file (or no
 * path) means no job.
 */
export function fileJobStatus(file: string | null): JobStatusSource {
  return {
    async read() {
      if (file === null) return NO_JOB;
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return NO_JOB;
        throw error;
      }
      const parsed = VerbResults['job-status'].safeParse(JSON.parse(text));
      if (!parsed.success) throw new Error(`job status file ${file} is not a job status`);
      return parsed.data;
    },
  };
}
