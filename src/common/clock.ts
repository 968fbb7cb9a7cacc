/**
 * The one place that reads the wall clock and arms real timers. Everything else takes a Clock,
 * so tests drive time with XState's SimulatedClock (which implements this interface) instead of
 * sleeping. XState actors get the same clock through `createActor(logic, { clock })`.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const handle = setTimeout(fn, ms);
    // A pending deadline must not keep a finished process alive.
    handle.unref?.();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** ISO 8601 text of a clock reading, for records and logs. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Keeps the process alive while it waits on the clock's (unref'd) timers, e.g. a command that
 * waits out a stop grace period with nothing else pending. Returns the release function.
 */
export function holdProcessOpen(): () => void {
  const handle = setInterval(() => undefined, 1 << 30);
  return () => clearInterval(handle);
}
