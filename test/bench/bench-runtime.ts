/**
 * Helpers every core bench part uses: event-loop turns, settling a host, timing, and a heap
 * reading that only counts what is really live.
 */
import { pino } from 'pino';
import type { Host } from '../../src/host/host.ts';

/** The hosts' logger in every part: the bench measures the control plane, not log output. */
export const silent = pino({ level: 'silent' });

export const turn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/** Lets microtasks, effects and store commits run until no instance is in the middle of an effect. */
export async function settle(host: Host): Promise<void> {
  for (let i = 0; i < 500; i++) {
    await turn();
    await turn();
    if (host.isSettled()) break;
  }
  await turn();
  await host.flush();
}

/** Milliseconds between two process.hrtime.bigint() readings. */
export const ms = (from: bigint, to: bigint): number => Number(to - from) / 1e6;

/** `promise`, or a rejection naming `what` after `limitMs` (so a stuck phase fails instead of hanging). */
export function within<T>(promise: Promise<T>, limitMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${limitMs} ms`)), limitMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const gc = (globalThis as { gc?: () => void }).gc;
export const gcExposed = gc !== undefined;

/**
 * heapUsed after full collections; undefined without --expose-gc. Collections alternate with
 * event-loop turns: objects held through weak handles (native wrappers such as LMDB's, the closed
 * hosts' stores) are released by second-pass callbacks that run in a later task, so two gc() calls
 * in one turn left ~185 MB of the earlier parts' garbage counted as live (and made every minor GC
 * of the next part copy through a 200 MB heap).
 */
export async function settledHeap(): Promise<number | undefined> {
  if (!gc) return undefined;
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise<void>((resolve) => setTimeout(resolve, 10));
  }
  gc();
  return process.memoryUsage().heapUsed;
}
