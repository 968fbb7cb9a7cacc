import { readFileSync } from 'node:fs';

/**
 * Linux process facts from /proc, for the simulation driver: a pid file is only trusted when the
 * process with that pid still has the start time recorded when it was started (pids are reused).
 */
export interface ProcStat {
  /** One-letter state: R, S, D, T (stopped), t, Z (zombie), X ... */
  state: string;
  /** Start time in clock ticks since boot (field 22). */
  startTime: string;
  pgrp: number;
}

export function readProcStat(pid: number): ProcStat | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may hold spaces; fields after it are plain.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  const pgrp = Number(rest[2]);
  const startTime = rest[19];
  if (state === undefined || startTime === undefined) return null;
  return { state, startTime, pgrp };
}

export interface PidRecord {
  pid: number;
  start_time: string;
}

/** The live process a pid record names, or null when it is gone, a zombie, or another process reusing the pid. */
export function liveProcess(record: PidRecord | null): ProcStat | null {
  if (!record) return null;
  const stat = readProcStat(record.pid);
  if (!stat || stat.startTime !== record.start_time) return null;
  if (stat.state === 'Z' || stat.state === 'X' || stat.state === 'x') return null;
  return stat;
}

export function isStopped(stat: ProcStat): boolean {
  return stat.state === 'T' || stat.state === 't';
}

/** Signals a whole process group; false when it no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}
