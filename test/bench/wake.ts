/**
 * Bench part 5: the control plane's added latency of a wake, on a host of the full fleet's size.
 *
 * Per wake: (a) host.wake(id) called -> the driver's restore() called (the waking state's
 * prepareDrives, a fake op, included), plus (b) restore() settled -> the instance reaching running
 * (one fake readiness probe included). The fake driver completes every op on a microtask, so what
 * is left is the host's own work: the tenant supervisor's decision, the instance chart's
 * transitions, journal and snapshot records, subscribers.
 *
 * Method:
 *   - the host is the bench's fleet (10,000 instances by default) on XState's SimulatedClock;
 *     the workers are slept after their 300 s minimum runtime has passed on that clock;
 *   - `warmup` wakes first, untimed for the target (V8 is still compiling the wake path
 *     concurrently on the second core then; their figures are printed on their own);
 *   - then `wakes` timed wakes, one at a time, with an event-loop turn between them so the store
 *     commits each wake's batch, as between independent requests;
 *   - for the slowest wakes, the split of the time, whether a GC pause overlapped, and how long
 *     the main thread sat runnable but off-CPU (/proc/thread-self/schedstat), which says whether
 *     a slow wake was work or waiting for a core.
 */
import { readFileSync } from 'node:fs';
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { SimulatedClock } from 'xstate';
import type { Catalog } from '../../src/catalog/catalog.ts';
import { createFakeDriver } from '../../src/driver/fake-driver.ts';
import { createHost, type Host } from '../../src/host/host.ts';
import { ms, settle, settledHeap, silent, turn, within } from './bench-runtime.ts';
import { fleetDesiredState, instancesPerTenant, type FleetShape } from './fleet.ts';
import { distribution, fixed, int, type Distribution, type Row } from './report.ts';
import { TimingDriver } from './timing-driver.ts';

export interface WakeOptions {
  /** The host's fleet: tenants x (1 gateway + workersPerTenant workers), at least enough for warmup + wakes. */
  tenants: number;
  workersPerTenant: number;
  /** Untimed wakes before the timed ones. */
  warmup: number;
  /** Timed wakes. */
  wakes: number;
}

interface WakeSample {
  /** (a): wake() called -> restore() called. */
  a: number;
  /** (b): restore() settled -> running. */
  b: number;
  /** wake() called -> running, the fake driver's own time included. */
  endToEnd: number;
  split: { wakeCall: number; toPrepare: number; prepareToRestore: number };
  /** Main thread runnable but not running during the wake, ms; undefined without schedstat. */
  offCpuMs: number | undefined;
  gc: boolean;
}

export interface SlowWake {
  index: number;
  ms: number;
  gc: boolean;
  offCpuMs: number | undefined;
  split: { wakeCall: number; toPrepare: number; prepareToRestore: number; b: number };
}

export interface WakeFigures {
  host: { tenants: number; instances: number };
  warmup: { wakes: number; firstMs: number; overhead: Distribution };
  /** (a): host.wake(id) call to the driver's restore() call (includes the waking state's prepareDrives, a fake op). */
  commandToRestoreCall: Distribution;
  /** (b): driver restore() resolved to the instance reaching running (includes one readiness probe, a fake op). */
  restoreDoneToRunning: Distribution;
  /** (a) + (b): the control plane's added latency, over the timed wakes. */
  overhead: Distribution;
  /** host.wake(id) call to running, end to end (the fake driver's own time included). */
  endToEnd: Distribution;
  refusedOrFailed: number;
  /** Timed wakes during which a GC pause (perf_hooks 'gc' entry) overlapped, and (a)+(b) of the others. */
  gcOverlapped: number;
  gcPauses: { count: number; totalMs: number };
  overheadWithoutGc: Distribution;
  /** Whether the main thread's run-queue wait could be read (Linux schedstat). */
  schedstat: boolean;
  /** Timed wakes whose main thread waited over 0.2 ms for a core. */
  offCpuWakes: number;
  slowest: SlowWake[];
}

/** The main thread's run-queue wait so far (ns), or undefined where schedstat is not available. */
function mainThreadWaitNs(): number | undefined {
  try {
    // "<on-cpu ns> <run-queue wait ns> <timeslices>"; read from the main thread, thread-self is it.
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1]);
  } catch {
    return undefined;
  }
}

export async function wakeLatency(dataDir: string, catalog: Catalog, options: WakeOptions): Promise<WakeFigures> {
  const needed = options.warmup + options.wakes;
  // The bench's fleet, grown when --tenants is too small for the wakes asked (the notes print its size).
  const tenants = Math.max(options.tenants, Math.ceil(needed / options.workersPerTenant));
  const shape: FleetShape = { tenants, gatewaysRunning: 1, workersRunning: options.workersPerTenant };
  const clock = new SimulatedClock();
  clock.set(1_764_000_000_000);
  const driver = new TimingDriver(createFakeDriver({ clock }));
  const host = await createHost({ dataDir, driver, clock, roles: catalog, logger: silent });
  try {
    const result = await host.apply(fleetDesiredState(catalog, shape));
    if (!result.applied) throw new Error(`wake host: apply refused: ${result.refusal ?? ''}`);
    await settle(host);
    // Spread the slept workers over the tenants, like wakes arriving for many tenants.
    const byTenant = new Map<string, string[]>();
    for (const w of host.instances({ role: 'worker' })) {
      if (w.status !== 'running') throw new Error(`wake host: ${w.instance_id} is ${w.status} after apply, not running`);
      const list = byTenant.get(w.tenant_id) ?? [];
      list.push(w.instance_id);
      byTenant.set(w.tenant_id, list);
    }
    const ids: string[] = [];
    for (let round = 0; ids.length < needed; round++) {
      for (const list of byTenant.values()) {
        if (list[round] !== undefined && ids.length < needed) ids.push(list[round]!);
      }
    }
    // Past the worker's minimum runtime (300 s), then put them to sleep.
    clock.increment(301_000);
    await settle(host);
    for (const id of ids) {
      const reply = host.sleep(id);
      if (!reply.accepted) throw new Error(`wake host: sleep(${id}) refused: ${reply.reason ?? ''}`);
    }
    await settle(host);
    const notAsleep = ids.filter((id) => host.instance(id)?.status !== 'sleeping');
    if (notAsleep.length > 0) throw new Error(`wake host: ${notAsleep.length} workers did not reach sleeping (first: ${notAsleep[0]} is ${host.instance(notAsleep[0]!)?.status ?? '?'})`);
    await settledHeap();

    const warm = await timedWakes(host, driver, ids.slice(0, options.warmup));
    await settle(host);
    await settledHeap();
    const timed = await timedWakes(host, driver, ids.slice(options.warmup));

    const samples = timed.samples;
    const sum = samples.map((s) => s.a + s.b);
    const warmSums = warm.samples.map((s) => s.a + s.b);
    return {
      host: { tenants: shape.tenants, instances: shape.tenants * instancesPerTenant(shape) },
      warmup: { wakes: warm.samples.length, firstMs: warmSums[0] ?? Number.NaN, overhead: distribution(warmSums) },
      commandToRestoreCall: distribution(samples.map((s) => s.a)),
      restoreDoneToRunning: distribution(samples.map((s) => s.b)),
      overhead: distribution(sum),
      endToEnd: distribution(samples.map((s) => s.endToEnd)),
      refusedOrFailed: warm.refusedOrFailed + timed.refusedOrFailed,
      gcOverlapped: samples.filter((s) => s.gc).length,
      gcPauses: timed.gcPauses,
      overheadWithoutGc: distribution(sum.filter((_, i) => !samples[i]!.gc)),
      schedstat: samples.every((s) => s.offCpuMs !== undefined),
      offCpuWakes: samples.filter((s) => (s.offCpuMs ?? 0) > 0.2).length,
      slowest: sum
        .map((value, index) => ({ index, ms: value, gc: samples[index]!.gc, offCpuMs: samples[index]!.offCpuMs, split: { ...samples[index]!.split, b: samples[index]!.b } }))
        .sort((x, y) => y.ms - x.ms)
        .slice(0, 5),
    };
  } finally {
    await host.close();
  }
}

/** Wakes `ids` one at a time and times each; a refused or failed wake is counted, not timed. */
async function timedWakes(host: Host, driver: TimingDriver, ids: readonly string[]): Promise<{ samples: WakeSample[]; refusedOrFailed: number; gcPauses: WakeFigures['gcPauses'] }> {
  const waiting = new Map<string, (at: bigint) => void>();
  const unsubscribe = host.subscribe((event) => {
    if (event.type !== 'transition') return;
    const resolve = waiting.get(event.instance_id);
    if (!resolve) return;
    if (event.to === 'running') resolve(process.hrtime.bigint());
    else if (event.to === 'failed' || event.to === 'refused') resolve(-1n);
  });
  const gcPauses: { start: number; end: number }[] = [];
  const gcObserver = new PerformanceObserver((list) => {
    for (const entry of list.getEntries() as PerformanceEntry[]) gcPauses.push({ start: entry.startTime, end: entry.startTime + entry.duration });
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  const windows: { start: number; end: number }[] = [];
  const samples: Omit<WakeSample, 'gc'>[] = [];
  let refusedOrFailed = 0;
  try {
    for (const id of ids) {
      // The timeout is armed and schedstat read before the clock starts, so they cost the measured section nothing.
      const runningAt = within(new Promise<bigint>((resolve) => waiting.set(id, resolve)), 10_000, `wake ${id}`).catch(() => -1n);
      const waitBefore = mainThreadWaitNs();
      const windowStart = performance.now();
      const started = process.hrtime.bigint();
      const reply = host.wake(id);
      const returned = process.hrtime.bigint();
      if (!reply.accepted) {
        refusedOrFailed++;
        waiting.delete(id);
        continue;
      }
      const at = await runningAt;
      const windowEnd = performance.now();
      const waitAfter = mainThreadWaitNs();
      waiting.delete(id);
      const restore = driver.last('restore', id);
      if (at < 0n || !restore || restore.settledAt === undefined || restore.calledAt < started) {
        refusedOrFailed++;
        continue;
      }
      const prepare = driver.last('prepareDrives', id);
      samples.push({
        a: ms(started, restore.calledAt),
        b: ms(restore.settledAt, at),
        endToEnd: ms(started, at),
        split: {
          wakeCall: ms(started, returned),
          toPrepare: prepare ? ms(started, prepare.calledAt) : Number.NaN,
          prepareToRestore: prepare?.settledAt !== undefined ? ms(prepare.settledAt, restore.calledAt) : Number.NaN,
        },
        offCpuMs: waitBefore !== undefined && waitAfter !== undefined ? (waitAfter - waitBefore) / 1e6 : undefined,
      });
      windows.push({ start: windowStart, end: windowEnd });
      // Let the store commit this wake's batch before the next one, as between independent requests.
      await turn();
    }
  } finally {
    unsubscribe();
    // GC entries are delivered asynchronously (after a timer turn).
    await new Promise<void>((resolve) => setTimeout(resolve, 20));
    gcObserver.disconnect();
  }
  return {
    samples: samples.map((s, i) => ({ ...s, gc: gcPauses.some((g) => g.start < windows[i]!.end && g.end > windows[i]!.start) })),
    refusedOrFailed,
    gcPauses: { count: gcPauses.length, totalMs: gcPauses.reduce((n, g) => n + g.end - g.start, 0) },
  };
}

/** The table rows of part 5; `target` is the p99 target in ms and `pass` its verdict. */
export function wakeRows(w: WakeFigures, target: number, pass: boolean | undefined): Row[] {
  const d = (x: Distribution) => `${fixed(x.p50, 3)} / ${fixed(x.p99, 3)} ms`;
  const offCpu = (x: number | undefined) => (x === undefined ? '' : `, ${fixed(x, 2)} off-CPU`);
  return [
    { id: '5', label: `wake overhead (a)+(b) p50 / p99, ${int(w.overhead.n)} timed wakes after ${int(w.warmup.wakes)} warm-up`, figure: d(w.overhead), target: `p99 < ${target} ms`, pass },
    { id: '', label: '(a) wake() call -> driver restore() called (incl. prepareDrives)', figure: d(w.commandToRestoreCall) },
    { id: '', label: '(b) driver restore() done -> running (incl. readiness probe)', figure: d(w.restoreDoneToRunning) },
    { id: '', label: 'wake() -> running end to end; max of (a)+(b)', figure: `${d(w.endToEnd)}; ${fixed(w.overhead.max, 3)} ms` },
    { id: '', label: `warm-up wakes (untimed for the target): the first (cold); p50 / p99 of ${int(w.warmup.wakes)}`, figure: `${fixed(w.warmup.firstMs, 2)} ms; ${d(w.warmup.overhead)}` },
    { id: '', label: `(a)+(b) p50 / p99 of the ${int(w.overheadWithoutGc.n)} wakes with no GC pause (${w.gcOverlapped} had one; ${w.gcPauses.count} pauses, ${fixed(w.gcPauses.totalMs, 1)} ms in the loop)`, figure: d(w.overheadWithoutGc) },
    {
      id: '',
      label: 'timed wakes whose main thread waited > 0.2 ms for a core (schedstat)',
      figure: w.schedstat ? int(w.offCpuWakes) : 'n/a',
    },
    ...w.slowest.slice(0, 3).map((s, i) => ({
      id: '',
      label: i === 0 ? 'slowest #n: (a)+(b) = wake() sync | ->prepareDrives | ->restore | (b)' : '',
      figure: `#${s.index} ${fixed(s.ms, 2)} = ${fixed(s.split.wakeCall, 2)} | ${fixed(s.split.toPrepare, 2)} | ${fixed(s.split.prepareToRestore, 2)} | ${fixed(s.split.b, 2)}${offCpu(s.offCpuMs)}${s.gc ? ' (gc)' : ''}`,
    })),
    { id: '', label: 'wakes refused or failed', figure: int(w.refusedOrFailed) },
  ];
}

export function wakeNotes(w: WakeFigures): string[] {
  return [
    `  (5) wakes on a separate host of ${int(w.host.instances)} instances (${int(w.host.tenants)} tenants) on XState's SimulatedClock, workers slept past their 300 s minimum runtime,`,
    `      spread over the tenants; ${int(w.warmup.wakes)} untimed warm-up wakes (V8 still compiles the wake path on the other core then), then ${int(w.overhead.n)} timed ones, one at a time.`,
    '      The fake driver completes every op on a microtask, so (a) includes the fake prepareDrives and (b) includes the readiness probe after restore.',
    '      off-CPU: the main thread runnable but not running (run-queue wait from /proc/thread-self/schedstat), read outside the timed section.',
  ];
}
