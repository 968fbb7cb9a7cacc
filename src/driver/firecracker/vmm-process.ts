import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { type PidRecord, readProcStat } from '../sim/proc.ts';

/**
 * Starting and finding Firecracker processes. Each VMM is started detached, in its own process
 * group, with its output going straight to log files: it outlives the control plane, and a
 * restarted control plane finds it again through the pid file (pid plus /proc start time, since
 * pids are reused).
 */

export interface StartedVmm {
  record: PidRecord;
  /** Resolves when the process ends (only for processes this control plane started). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function startVmm(options: { file: string; args: string[]; stdoutLog: string; stderrLog: string; cwd?: string }): StartedVmm {
  const out = openSync(options.stdoutLog, 'a');
  const err = openSync(options.stderrLog, 'a');
  let child;
  try {
    child = spawn(options.file, options.args, { detached: true, stdio: ['ignore', out, err], ...(options.cwd ? { cwd: options.cwd } : {}) });
  } finally {
    closeSync(out);
    closeSync(err);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', () => resolve({ code: null, signal: null }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  child.unref();
  const pid = child.pid;
  const startTime = pid === undefined ? null : (readProcStat(pid)?.startTime ?? null);
  if (pid === undefined || startTime === null) throw new Error(`${options.file} did not start; see ${options.stderrLog}`);
  return { record: { pid, start_time: startTime }, exited };
}

export function readPidRecord(file: string): PidRecord | null {
  try {
    const record = JSON.parse(readFileSync(file, 'utf8')) as PidRecord;
    return Number.isInteger(record.pid) && typeof record.start_time === 'string' ? record : null;
  } catch {
    return null;
  }
}

export async function writePidRecord(file: string, record: PidRecord): Promise<void> {
  await writeFile(`${file}.tmp`, `${JSON.stringify(record)}\n`);
  await rename(`${file}.tmp`, file);
}
