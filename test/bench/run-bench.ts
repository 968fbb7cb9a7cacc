/**
 * `npm run bench`: the performance figures of issue 3, from one run on this machine.
 *
 *   1. apply-to-running: a desired state of `--tenants` tenants (1 gateway + 9 workers each,
 *      10,000 instances by default) applied from nothing until every instance is running, with
 *      the fake driver (no latency) and the real clock; wall and CPU time;
 *   2. persisted transitions per second, next to raw LMDB batched puts per second of values the
 *      size of a real persisted instance snapshot measured in the same run, and their ratio (the
 *      figure with the target). The transitions: after the restore (3), a host restored again on
 *      the same data dir with its 10,000 running instances gets `--rounds` rounds of
 *      `host.secrets.put` for every tenant, each reaching all of the tenant's instances as
 *      `obs.secrets-changed` (a real transition, persisted through the host's normal
 *      putSnapshotLater path), one store batch per round. The journal rate during the apply (1)
 *      is kept as secondary information;
 *   3. restore: the host closed and created again on the same data dir and the same driver;
 *   4. heap per instance actor (needs --expose-gc);
 *   5. wake overhead: command to driver restore() call, plus driver restore() done to running;
 *   6. the API (issue 4), on the host restored again after (2) with its 10,000 running instances
 *      (see api.ts): GET /v1/instances latency and reply size, GET /healthz requests/s under
 *      autocannon with 50 connections, and /v1/events delivering 10,000 journaled transitions to 10
 *      subscribers without loss.
 *
 * Options: --json (machine-readable output on stdout), --tenants N, --wakes N, --raw-puts N, --rounds N,
 * --profile-rounds FILE (a V8 CPU profile of the timed rounds of (2) only, written to FILE),
 * --api-gets N (timed GET /v1/instances), --api-seconds N (the /healthz load run),
 * --api-clients child|in-process (where the API clients run; default a child process),
 * --api-log-level LEVEL (give the server a pino logger at LEVEL writing to /dev/null; default none).
 * Progress goes to stderr.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { pino, type Level } from 'pino';
import type { Catalog } from '../../src/catalog/catalog.ts';
import { loadCatalogStrict } from '../../src/catalog/load-catalog.ts';
import { systemClock, type Clock } from '../../src/common/clock.ts';
import { createFakeDriver, type FakeDriver } from '../../src/driver/fake-driver.ts';
import { createHost, Host } from '../../src/host/host.ts';
import { openStore, type Store, type StoreStats } from '../../src/store/lmdb-store.ts';
import { apiBench, type ApiFigures } from './api.ts';
import { fleetDesiredState, instancesPerTenant, type FleetShape } from './fleet.ts';
import { rawBatchedPuts, readPersistedSizes, type PersistedSizes, type RawPutResult } from './raw-lmdb.ts';
import { distribution, fixed, int, renderTable, type Distribution, type Row } from './report.ts';
import { gcExposed, ms, settle, settledHeap, silent, turn, within } from './bench-runtime.ts';
import { wakeLatency, wakeNotes, wakeRows, type WakeFigures } from './wake.ts';
import { parseParts, renderLaterParts, runLaterParts, type PartResult } from './later-parts.ts';

const TARGETS = {
  applyMs: 5_000,
  persistRatio: 0.5,
  restoreMs: 1_000,
  heapBytesPerInstance: 16 * 1024,
  wakeP99Ms: 2,
};

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    tenants: { type: 'string', default: '1000' },
    wakes: { type: 'string', default: '1000' },
    'wake-warmup': { type: 'string', default: '200' },
    'raw-puts': { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '10' },
    'profile-rounds': { type: 'string' },
    'api-gets': { type: 'string', default: '30' },
    'api-seconds': { type: 'string', default: '5' },
    'api-clients': { type: 'string', default: 'child' },
    'api-log-level': { type: 'string' },
    // The driver and integration parts after the core ones: all (default), none, or a list.
    parts: { type: 'string' },
  },
});
const TENANTS = Number(args.tenants);
const LATER_PARTS = parseParts(args.parts);
const WAKES = Number(args.wakes);
const WAKE_WARMUP = Number(args['wake-warmup']);
const RAW_PUTS = Number(args['raw-puts']);
const ROUNDS = Number(args.rounds);
const API_GETS = Number(args['api-gets']);
const API_SECONDS = Number(args['api-seconds']);
for (const [name, n] of [['--tenants', TENANTS], ['--wakes', WAKES], ['--wake-warmup', WAKE_WARMUP], ['--raw-puts', RAW_PUTS], ['--rounds', ROUNDS], ['--api-gets', API_GETS], ['--api-seconds', API_SECONDS]] as const) {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name} must be a positive integer`);
}
if (args['api-clients'] !== 'child' && args['api-clients'] !== 'in-process') throw new RangeError('--api-clients must be child or in-process');
/** The API's shape from issue 4: 50 concurrent clients, 10 subscribers, 10,000 transitions. */
const API = { connections: 50, warmupSeconds: 1, getsWarmup: 2, subscribers: 10, transitions: 10_000 };

const progress = (message: string): void => {
  process.stderr.write(`[bench] ${message}\n`);
};

// ---------------------------------------------------------------------------------------------
// 1, 2 and 4 (part): apply from nothing to all running

interface ApplyFigures {
  instances: number;
  /** apply() call to the last instance reaching running. */
  wallMs: number;
  cpuMs: { user: number; system: number; total: number };
  /** When apply()'s promise resolved, from the call. */
  applyReturnedMs: number;
  /** apply() call until everything queued is committed and flushed. */
  persistWindowMs: number;
  store: Pick<StoreStats, 'journalEntriesWritten' | 'snapshotPutsRequested' | 'snapshotPutsWritten' | 'batchesCommitted' | 'commitLatencyMs'>;
  /** Transition events the host emitted, and those that changed the status (from !== to). */
  transitionEvents: number;
  statusChanges: number;
  /** Longest event-loop delay seen while applying (the fake driver completes on microtasks). */
  maxEventLoopBlockMs: number;
  /** Journal entries (one per transition, deferral or refusal) committed per second of the window. */
  transitionsPerSecond: number;
  snapshotRecordsPerSecond: number;
  heapBytesPerInstance: number | undefined;
  allRunning: boolean;
}

/**
 * createHost() with the store opened here, so its stats() are visible; the same steps as
 * createHost (open the store on <dataDir>/state.lmdb, construct, restore).
 */
async function openHostWithStore(dataDir: string, driver: FakeDriver, catalog: Catalog, clock: Clock): Promise<{ host: Host; store: Store }> {
  const store = openStore({ path: path.join(dataDir, 'state.lmdb'), clock });
  const host = new Host(store, catalog, { dataDir, driver, roles: catalog, logger: silent, clock }, clock, silent);
  await host.restore();
  return { host, store };
}

async function applyToRunning(dataDir: string, driver: FakeDriver, catalog: Catalog, shape: FleetShape): Promise<ApplyFigures> {
  const total = shape.tenants * instancesPerTenant(shape);
  const document = fleetDesiredState(catalog, shape);
  const { host, store } = await openHostWithStore(dataDir, driver, catalog, systemClock);
  const heapBefore = await settledHeap();

  const running = new Set<string>();
  let transitionEvents = 0;
  let statusChanges = 0;
  let doneAt = 0n;
  let cpuStart: NodeJS.CpuUsage = { user: 0, system: 0 };
  let cpuAtDone: NodeJS.CpuUsage = { user: 0, system: 0 };
  let reached!: () => void;
  const allRunning = new Promise<void>((resolve) => (reached = resolve));
  const unsubscribe = host.subscribe((event) => {
    if (event.type !== 'transition') return;
    transitionEvents++;
    if (event.from !== event.to) statusChanges++;
    if (event.to !== 'running' || running.has(event.instance_id)) return;
    running.add(event.instance_id);
    if (running.size === total) {
      doneAt = process.hrtime.bigint();
      cpuAtDone = process.cpuUsage(cpuStart);
      reached();
    }
  });

  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const statsBefore = store.stats();
  cpuStart = process.cpuUsage();
  const started = process.hrtime.bigint();
  let returnedAt = 0n;
  const applied = host.apply(document).then((result) => {
    returnedAt = process.hrtime.bigint();
    return result;
  });
  const result = await applied;
  if (!result.applied) throw new Error(`apply refused: ${result.refusal ?? ''} ${JSON.stringify(result.issues.slice(0, 3))}`);
  await within(allRunning, 180_000, `apply: ${running.size} of ${total} instances running`);
  await host.flush();
  const flushedAt = process.hrtime.bigint();
  const statsAfter = store.stats();
  loopDelay.disable();
  unsubscribe();

  const persistSeconds = ms(started, flushedAt) / 1000;
  const journal = statsAfter.journalEntriesWritten - statsBefore.journalEntriesWritten;
  const snapshotsWritten = statsAfter.snapshotPutsWritten - statsBefore.snapshotPutsWritten;
  const runningNow = host.instances({ status: 'running' }).length;
  const heapAfter = await settledHeap();
  await host.close();
  return {
    instances: total,
    wallMs: ms(started, doneAt),
    cpuMs: { user: cpuAtDone.user / 1000, system: cpuAtDone.system / 1000, total: (cpuAtDone.user + cpuAtDone.system) / 1000 },
    applyReturnedMs: ms(started, returnedAt),
    persistWindowMs: persistSeconds * 1000,
    store: {
      journalEntriesWritten: journal,
      snapshotPutsRequested: statsAfter.snapshotPutsRequested - statsBefore.snapshotPutsRequested,
      snapshotPutsWritten: snapshotsWritten,
      batchesCommitted: statsAfter.batchesCommitted - statsBefore.batchesCommitted,
      commitLatencyMs: statsAfter.commitLatencyMs,
    },
    transitionEvents,
    statusChanges,
    maxEventLoopBlockMs: loopDelay.max / 1e6,
    transitionsPerSecond: journal / persistSeconds,
    snapshotRecordsPerSecond: snapshotsWritten / persistSeconds,
    heapBytesPerInstance: heapBefore !== undefined && heapAfter !== undefined ? (heapAfter - heapBefore) / total : undefined,
    allRunning: runningNow === total,
  };
}

// ---------------------------------------------------------------------------------------------
// 3 and 4: restore after a restart

interface RestoreFigures {
  /** createHost() call until it resolved (store opened, manifests loaded, actors restored, driver observed). */
  createHostMs: number;
  instances: number;
  running: number;
  settled: boolean;
  /** heapUsed delta of the restored host / instances: actors and host bookkeeping only (the fake driver already existed). */
  heapBytesPerInstance: number | undefined;
  /** Journal entries the restore itself committed (read back from LMDB). */
  journalEntriesWritten: number;
}

async function restoreAfterRestart(dataDir: string, driver: FakeDriver, expected: number, journalBefore: number): Promise<RestoreFigures> {
  const heapBefore = await settledHeap();
  const started = process.hrtime.bigint();
  // Default roles: the built-in manifests are loaded from disk, as in a real restart.
  const host = await createHost({ dataDir, driver, clock: systemClock, logger: silent });
  const createHostMs = ms(started, process.hrtime.bigint());
  const instances = host.instances();
  const running = instances.filter((i) => i.status === 'running').length;
  const settled = host.isSettled();
  await host.flush();
  const heapAfter = await settledHeap();
  await host.close();
  const after = await readPersistedSizes(path.join(dataDir, 'state.lmdb'));
  if (instances.length !== expected) progress(`restore: expected ${expected} instances, found ${instances.length}`);
  return {
    createHostMs,
    instances: instances.length,
    running,
    settled,
    heapBytesPerInstance: heapBefore !== undefined && heapAfter !== undefined ? (heapAfter - heapBefore) / Math.max(1, instances.length) : undefined,
    journalEntriesWritten: after.journalEntries - journalBefore,
  };
}

// ---------------------------------------------------------------------------------------------
// 2: persisted transitions per second, in rounds on a restored host

/** A secret no role declares: putting it changes no drive, only what the instances record. */
const ROUND_SECRET = 'bench-rotation';

/** The in-process V8 profiler (node:inspector), for profiling one section of the bench. */
async function startProfiler(): Promise<{ stop: (file: string) => Promise<void> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 1000 });
  await session.post('Profiler.start');
  return {
    stop: async (file) => {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      await writeFile(file, JSON.stringify(profile));
      progress(`    CPU profile of the rounds written to ${file}`);
    },
  };
}

interface RoundFigures {
  /** Instances of the host (all running before the first round) and the tenants they belong to. */
  instances: number;
  runningBefore: number;
  tenants: number;
  rounds: number;
  /** host.secrets.put calls per round (one per tenant). */
  putsPerRound: number;
  /** instances × rounds: one obs.secrets-changed transition per instance per round. */
  transitions: number;
  /** First round's sends to `host.flush()` resolved after the last round. */
  windowMs: number;
  transitionsPerSecond: number;
  /** Per round: the synchronous secrets.put loop (sends, actor transitions, dirty marks). */
  sendMs: Distribution;
  /** Per round: from its first send until the setImmediate after it (the store's commit callback ran before it). */
  roundMs: Distribution;
  /** `await host.flush()` after the last round. */
  finalFlushMs: number;
  cpuMs: { user: number; system: number; total: number };
  store: Pick<StoreStats, 'journalEntriesWritten' | 'snapshotPutsRequested' | 'snapshotPutsWritten' | 'batchesCommitted' | 'commitLatencyMs'>;
  /** Status changes the host emitted during the rounds (expected 0: the transition stays in running). */
  statusChanges: number;
  /** snapshotPutsWritten delta equals instances × rounds. */
  persistedAsExpected: boolean;
  /** Committed instance snapshot records (read back through the store after the flush) written by the last round (updated_at >= its start). */
  lastRoundOnDisk: number;
  /** An untimed warm-up round came first (JIT, as for the raw puts). */
  warmupRounds: number;
  /** Secondary: one status-change round on the same host after the rounds. */
  statusRound: StatusRoundFigures;
}

interface StatusRoundFigures {
  workers: number;
  /** host.stop() of every worker until all are stopped, then host.start() until all run, then host.flush(). */
  windowMs: number;
  /** Status changes the host emitted (each one journaled). */
  statusChanges: number;
  store: Pick<StoreStats, 'journalEntriesWritten' | 'snapshotPutsWritten' | 'batchesCommitted'>;
  journalEntriesPerSecond: number;
  snapshotRecordsPerSecond: number;
  refused: number;
  allRunning: boolean;
}

/**
 * Every worker stopped (running -> stopping -> stopped) and started again (through preflight,
 * boot and readiness to running): status transitions, each journaled and its snapshot persisted,
 * with the fake driver's calls in between. Informative only: this includes driver effects.
 */
async function statusChangeRound(host: Host, store: Store): Promise<StatusRoundFigures> {
  const workers = host.instances({ role: 'worker', status: 'running' }).map((i) => i.instance_id);
  const wanted = new Set(workers);
  let statusChanges = 0;
  let reachedSet = new Set<string>();
  let target = 'stopped';
  let reached: () => void = () => {};
  const unsubscribe = host.subscribe((event) => {
    if (event.type !== 'transition' || event.from === event.to) return;
    statusChanges++;
    if (event.to !== target || !wanted.has(event.instance_id) || reachedSet.has(event.instance_id)) return;
    reachedSet.add(event.instance_id);
    if (reachedSet.size === wanted.size) reached();
  });
  const phase = async (to: string, command: (id: string) => { accepted: boolean }): Promise<number> => {
    target = to;
    reachedSet = new Set();
    const done = new Promise<void>((resolve) => (reached = resolve));
    let refused = 0;
    for (const id of workers) if (!command(id).accepted) refused++;
    if (refused === 0) await within(done, 120_000, `status round: ${reachedSet.size} of ${wanted.size} workers ${to}`);
    return refused;
  };
  const before = store.stats();
  const started = process.hrtime.bigint();
  let refused = await phase('stopped', (id) => host.stop(id));
  refused += await phase('running', (id) => host.start(id));
  await host.flush();
  const ended = process.hrtime.bigint();
  const after = store.stats();
  unsubscribe();
  const seconds = ms(started, ended) / 1000;
  const journal = after.journalEntriesWritten - before.journalEntriesWritten;
  const snapshots = after.snapshotPutsWritten - before.snapshotPutsWritten;
  return {
    workers: workers.length,
    windowMs: seconds * 1000,
    statusChanges,
    store: { journalEntriesWritten: journal, snapshotPutsWritten: snapshots, batchesCommitted: after.batchesCommitted - before.batchesCommitted },
    journalEntriesPerSecond: journal / seconds,
    snapshotRecordsPerSecond: snapshots / seconds,
    refused,
    allRunning: workers.every((id) => host.instance(id)?.status === 'running'),
  };
}

async function persistedTransitionRounds(dataDir: string, driver: FakeDriver, catalog: Catalog, rounds: number): Promise<RoundFigures> {
  const { host, store } = await openHostWithStore(dataDir, driver, catalog, systemClock);
  try {
    await settle(host);
    const instances = host.instances().length;
    const runningBefore = host.instances({ status: 'running' }).length;
    const tenants = host.tenants().map((t) => t.tenant_id);
    let statusChanges = 0;
    const unsubscribe = host.subscribe((event) => {
      if (event.type === 'transition' && event.from !== event.to) statusChanges++;
    });
    const round = (r: number): void => {
      const value = `round-${r}`;
      for (const tenant of tenants) host.secrets.put(tenant, ROUND_SECRET, value);
    };
    const warmupRounds = 1;
    for (let r = 0; r < warmupRounds; r++) {
      round(-1 - r);
      await turn();
    }
    await host.flush();
    await settledHeap();

    const profiler = args['profile-rounds'] === undefined ? undefined : await startProfiler();
    const before = store.stats();
    let lastRoundStart = 0;
    const sends: number[] = [];
    const perRound: number[] = [];
    const cpuStart = process.cpuUsage();
    const started = process.hrtime.bigint();
    for (let r = 0; r < rounds; r++) {
      if (r === rounds - 1) lastRoundStart = systemClock.now();
      const t0 = process.hrtime.bigint();
      round(r);
      const t1 = process.hrtime.bigint();
      // The store commits what this round queued as one batch on the setImmediate armed by its
      // first write, which runs before this one.
      await turn();
      sends.push(ms(t0, t1));
      perRound.push(ms(t0, process.hrtime.bigint()));
    }
    const flushFrom = process.hrtime.bigint();
    await host.flush();
    const ended = process.hrtime.bigint();
    const cpu = process.cpuUsage(cpuStart);
    const after = store.stats();
    unsubscribe();
    if (profiler) await profiler.stop(args['profile-rounds']!);

    const lastRoundOnDisk = store.listSnapshots('instance').filter((record) => record.updated_at >= lastRoundStart).length;
    const statusRound = await statusChangeRound(host, store);
    const windowMs = ms(started, ended);
    const transitions = instances * rounds;
    const written = after.snapshotPutsWritten - before.snapshotPutsWritten;
    return {
      instances,
      runningBefore,
      tenants: tenants.length,
      rounds,
      putsPerRound: tenants.length,
      transitions,
      windowMs,
      transitionsPerSecond: transitions / (windowMs / 1000),
      sendMs: distribution(sends),
      roundMs: distribution(perRound),
      finalFlushMs: ms(flushFrom, ended),
      cpuMs: { user: cpu.user / 1000, system: cpu.system / 1000, total: (cpu.user + cpu.system) / 1000 },
      store: {
        journalEntriesWritten: after.journalEntriesWritten - before.journalEntriesWritten,
        snapshotPutsRequested: after.snapshotPutsRequested - before.snapshotPutsRequested,
        snapshotPutsWritten: written,
        batchesCommitted: after.batchesCommitted - before.batchesCommitted,
        commitLatencyMs: after.commitLatencyMs,
      },
      statusChanges,
      persistedAsExpected: written === transitions,
      lastRoundOnDisk,
      warmupRounds,
      statusRound,
    };
  } finally {
    await host.close();
  }
}

// ---------------------------------------------------------------------------------------------
// 6: the API on a restored host

/**
 * The host restored again on the data dir of (1)-(2) (every instance running, as (2) leaves
 * them), served by createServer(); see api.ts. Part (c) stops 5,000 workers; nothing measured
 * later uses this data dir.
 */
async function apiOnRestoredHost(dataDir: string, driver: FakeDriver, catalog: Catalog): Promise<ApiFigures> {
  const { host } = await openHostWithStore(dataDir, driver, catalog, systemClock);
  try {
    await settle(host);
    const level = args['api-log-level'];
    return await apiBench(host, {
      clients: args['api-clients'] === 'child' ? 'child process' : 'in process',
      gets: API_GETS,
      getsWarmup: API.getsWarmup,
      connections: API.connections,
      seconds: API_SECONDS,
      warmupSeconds: API.warmupSeconds,
      subscribers: API.subscribers,
      transitions: API.transitions,
      ...(level !== undefined && { logger: pino({ level: level as Level }, pino.destination('/dev/null')) }),
      progress,
    });
  } finally {
    await host.close();
  }
}

// ---------------------------------------------------------------------------------------------

interface BenchResult {
  laterParts: PartResult[];
  machine: { node: string; cpus: number; cpuModel: string; platform: string; totalMemGiB: number; loadAvgAtStart: number[] };
  fleet: FleetShape & { instances: number };
  catalogLoadMs: number;
  apply: ApplyFigures;
  persisted: Omit<PersistedSizes, 'sample'>;
  raw: RawPutResult;
  /** The figure with the target: round transitions/s / raw puts/s. */
  persistRatio: number;
  rounds: RoundFigures;
  /** Secondary: the apply's journal entries/s / raw puts/s. */
  applyPersistRatio: number;
  restore: RestoreFigures;
  wake: WakeFigures;
  api: ApiFigures;
  targets: { name: string; value: number | null; target: string; pass: boolean | null }[];
  totalSeconds: number;
}

async function main(): Promise<void> {
  const benchStarted = process.hrtime.bigint();
  // Other processes on this 2-core machine skew every figure; the load average says whether there were any.
  const loadAvgAtStart = os.loadavg();
  if (!gcExposed) progress('global.gc is not exposed (run with --expose-gc): heap figures are skipped');
  const catalogStarted = process.hrtime.bigint();
  const catalog = await loadCatalogStrict();
  const catalogLoadMs = ms(catalogStarted, process.hrtime.bigint());
  const shape: FleetShape = { tenants: TENANTS, gatewaysRunning: 1, workersRunning: 9 };
  const total = TENANTS * instancesPerTenant(shape);
  const root = await mkdtemp(path.join(os.tmpdir(), 'mvm-bench-'));
  try {
    // The big host and its fake driver live only in this call, so later phases run without them.
    const { apply, persistedFull, restore, rounds, api } = await (async () => {
      const dataDir = path.join(root, 'host');
      const driver = createFakeDriver({ clock: systemClock });
      progress(`1/7 apply ${int(total)} instances in ${int(TENANTS)} tenants ...`);
      const applied = await applyToRunning(dataDir, driver, catalog, shape);
      progress(`    all running after ${int(applied.wallMs)} ms`);
      const sizes = await readPersistedSizes(path.join(dataDir, 'state.lmdb'));
      progress('2/7 restore after a restart ...');
      const restored = await restoreAfterRestart(dataDir, driver, total, sizes.journalEntries);
      progress(`    restored in ${int(restored.createHostMs)} ms`);
      progress(`3/7 persisted transitions: ${ROUNDS} rounds of one secrets-changed transition per instance on a restored host ...`);
      const measured = await persistedTransitionRounds(dataDir, driver, catalog, ROUNDS);
      progress(`    ${int(measured.transitions)} transitions persisted in ${int(measured.windowMs)} ms`);
      progress(`4/7 API on the host restored again (${int(total)} running), clients in ${args['api-clients'] === 'child' ? 'a child process' : 'this process'} ...`);
      const apiFigures = await apiOnRestoredHost(dataDir, driver, catalog);
      progress(`    done in ${fixed(apiFigures.totalSeconds, 1)} s`);
      return { apply: applied, persistedFull: sizes, restore: restored, rounds: measured, api: apiFigures };
    })();
    const { sample, ...persisted } = persistedFull;

    progress(`5/7 raw LMDB: ${int(RAW_PUTS)} puts of a whole real instance snapshot record per round ...`);
    const raw = await rawBatchedPuts(path.join(root, 'raw.lmdb'), sample, RAW_PUTS, 3);

    progress(`6/7 wake latency: ${int(WAKE_WARMUP)} warm-up and ${int(WAKES)} timed wakes on a host of ${int(total)} instances ...`);
    const wake = await wakeLatency(path.join(root, 'wake'), catalog, { tenants: TENANTS, workersPerTenant: shape.workersRunning, warmup: WAKE_WARMUP, wakes: WAKES });
    progress('7/7 done');
    const laterParts = await runLaterParts(LATER_PARTS, progress);

    const persistRatio = rounds.transitionsPerSecond / raw.median;
    const applyPersistRatio = apply.transitionsPerSecond / raw.median;
    const roundsVerified = rounds.persistedAsExpected && rounds.lastRoundOnDisk === rounds.instances && rounds.runningBefore === rounds.instances;
    const heap = restore.heapBytesPerInstance;
    const healthErrors = api.health.errors + api.health.timeouts + api.health.non2xx;
    const eventAnomalies = api.events.perSubscriber.reduce((n, s) => n + s.missing + s.extra + s.duplicates + s.outOfOrder, 0);
    const targets: BenchResult['targets'] = [
      { name: 'apply-to-running wall ms', value: apply.wallMs, target: `< ${TARGETS.applyMs}`, pass: apply.allRunning && apply.wallMs < TARGETS.applyMs },
      { name: 'persisted transitions / raw LMDB puts', value: persistRatio, target: `>= ${TARGETS.persistRatio}`, pass: roundsVerified && persistRatio >= TARGETS.persistRatio },
      { name: 'restore ms', value: restore.createHostMs, target: `< ${TARGETS.restoreMs}`, pass: restore.running === total && restore.createHostMs < TARGETS.restoreMs },
      { name: 'heap bytes per instance actor', value: heap ?? null, target: `<= ${TARGETS.heapBytesPerInstance}`, pass: heap === undefined ? null : heap <= TARGETS.heapBytesPerInstance },
      { name: 'wake overhead p99 ms', value: wake.overhead.p99, target: `< ${TARGETS.wakeP99Ms}`, pass: wake.refusedOrFailed === 0 && wake.overhead.p99 < TARGETS.wakeP99Ms },
      { name: 'API healthz errors + timeouts + non-2xx', value: healthErrors, target: '0', pass: healthErrors === 0 },
      { name: 'API events entries missing, extra, duplicated or out of order', value: eventAnomalies, target: 'no loss', pass: api.events.noLoss },
    ];
    const result: BenchResult = {
      machine: { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '?', platform: `${os.platform()} ${os.arch()}`, totalMemGiB: os.totalmem() / 2 ** 30, loadAvgAtStart },
      fleet: { ...shape, instances: total },
      catalogLoadMs,
      apply,
      persisted,
      raw,
      persistRatio,
      rounds,
      applyPersistRatio,
      restore,
      wake,
      api,
      targets,
      laterParts,
      totalSeconds: ms(benchStarted, process.hrtime.bigint()) / 1000,
    };
    if (args.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else process.stdout.write(`${render(result)}\n`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

function render(r: BenchResult): string {
  const t = (name: string) => r.targets.find((x) => x.name === name)!;
  const pass = (name: string) => t(name).pass ?? undefined;
  const kib = (bytes: number | undefined) => (bytes === undefined ? 'n/a (no --expose-gc)' : `${fixed(bytes / 1024, 2)} KiB`);
  const rows: Row[] = [
    { id: '1', label: `apply -> all ${int(r.apply.instances)} running, wall`, figure: `${int(r.apply.wallMs)} ms`, target: `< ${int(TARGETS.applyMs)} ms`, pass: pass('apply-to-running wall ms') },
    { id: '', label: 'CPU time (user + system, whole process)', figure: `${int(r.apply.cpuMs.total)} ms`, target: '' },
    { id: '', label: 'of which user / system', figure: `${int(r.apply.cpuMs.user)} / ${int(r.apply.cpuMs.system)} ms` },
    { id: '', label: 'apply() promise resolved after', figure: `${int(r.apply.applyReturnedMs)} ms` },
    { id: '', label: 'every instance running at the end', figure: r.apply.allRunning ? 'yes' : 'NO' },
    { id: '', label: 'longest event-loop block during the apply', figure: `${int(r.apply.maxEventLoopBlockMs)} ms` },
    { id: '2', label: `persisted transitions/s (${int(r.rounds.instances)} actors x ${r.rounds.rounds} rounds, one batch per round)`, figure: `${int(r.rounds.transitionsPerSecond)} /s` },
    { id: '', label: `raw LMDB batched puts/s (${int(r.raw.valueBytes)} B values, median of ${r.raw.rounds} x ${int(r.raw.values)})`, figure: `${int(r.raw.median)} /s` },
    { id: '', label: 'raw LMDB rounds (puts/s, in order)', figure: r.raw.putsPerSecond.map((x) => int(x)).join(' / ') },
    { id: '', label: 'ratio persisted transitions / raw puts', figure: fixed(r.persistRatio, 3), target: `>= ${TARGETS.persistRatio}`, pass: pass('persisted transitions / raw LMDB puts') },
    { id: '', label: 'window: first round sent -> host.flush() after the last', figure: `${int(r.rounds.windowMs)} ms` },
    { id: '', label: `per round p50 / max: ${int(r.rounds.putsPerRound)} secrets.put (sends + transitions)`, figure: `${fixed(r.rounds.sendMs.p50, 1)} / ${fixed(r.rounds.sendMs.max, 1)} ms` },
    { id: '', label: 'per round p50 / max: sends to the next turn (commit callback included)', figure: `${fixed(r.rounds.roundMs.p50, 1)} / ${fixed(r.rounds.roundMs.max, 1)} ms` },
    { id: '', label: 'final host.flush(); CPU in the window (user + system)', figure: `${fixed(r.rounds.finalFlushMs, 1)} ms; ${int(r.rounds.cpuMs.total)} ms` },
    {
      id: '',
      label: 'check: snapshot records written / expected (puts asked); batches',
      figure: `${int(r.rounds.store.snapshotPutsWritten)} / ${int(r.rounds.transitions)} (${int(r.rounds.store.snapshotPutsRequested)}); ${int(r.rounds.store.batchesCommitted)}`,
    },
    {
      id: '',
      label: 'check: committed instance records written by the last round; running before',
      figure: `${int(r.rounds.lastRoundOnDisk)} / ${int(r.rounds.instances)}; ${int(r.rounds.runningBefore)}`,
    },
    { id: '', label: 'journal entries written; status changes (both expected 0)', figure: `${int(r.rounds.store.journalEntriesWritten)}; ${int(r.rounds.statusChanges)}` },
    {
      id: '',
      label: `secondary: status round, ${int(r.rounds.statusRound.workers)} workers stop -> stopped, start -> running (with fake driver calls)`,
      figure: `${int(r.rounds.statusRound.windowMs)} ms`,
    },
    {
      id: '',
      label: 'journal entries/s (status changes); snapshot records/s written',
      figure: `${int(r.rounds.statusRound.journalEntriesPerSecond)} /s (${int(r.rounds.statusRound.statusChanges)}); ${int(r.rounds.statusRound.snapshotRecordsPerSecond)} /s`,
    },
    {
      id: '',
      label: 'journal entries / snapshot records written; batches; refused; all running again',
      figure: `${int(r.rounds.statusRound.store.journalEntriesWritten)} / ${int(r.rounds.statusRound.store.snapshotPutsWritten)}; ${int(r.rounds.statusRound.store.batchesCommitted)}; ${r.rounds.statusRound.refused}; ${r.rounds.statusRound.allRunning ? 'yes' : 'NO'}`,
    },
    { id: '2b', label: 'secondary, no target: journal entries/s over the apply (1) window', figure: `${int(r.apply.transitionsPerSecond)} /s` },
    { id: '', label: 'ratio apply journal entries/s / raw puts (not the target figure)', figure: fixed(r.applyPersistRatio, 3) },
    { id: '', label: `journal entries / snapshot records written (puts asked)`, figure: `${int(r.apply.store.journalEntriesWritten)} / ${int(r.apply.store.snapshotPutsWritten)} (${int(r.apply.store.snapshotPutsRequested)})` },
    { id: '', label: 'transition events emitted / of which status changed', figure: `${int(r.apply.transitionEvents)} / ${int(r.apply.statusChanges)}` },
    { id: '', label: 'snapshot records/s written; batches committed', figure: `${int(r.apply.snapshotRecordsPerSecond)} /s; ${int(r.apply.store.batchesCommitted)}` },
    { id: '', label: 'window: apply() call to store flushed', figure: `${int(r.apply.persistWindowMs)} ms` },
    { id: '', label: 'instance snapshot as stored: record avg (min-max); base avg; whole record (raw test value)', figure: `${int(r.persisted.snapshotBytes.avg)} B (${int(r.persisted.snapshotBytes.min)}-${int(r.persisted.snapshotBytes.max)}); ${int(r.persisted.baseBytes.avg)} B; ${int(r.raw.valueBytes)} B` },
    { id: '', label: 'journal entry size avg', figure: `${int(r.persisted.journalEntryBytes.avg)} B` },
    { id: '3', label: `restore ${int(r.restore.instances)} actors (createHost until resolved)`, figure: `${int(r.restore.createHostMs)} ms`, target: `< ${int(TARGETS.restoreMs)} ms`, pass: pass('restore ms') },
    { id: '', label: 'restored with status running; settled', figure: `${int(r.restore.running)} / ${int(r.restore.instances)}; ${r.restore.settled ? 'yes' : 'no'}` },
    { id: '', label: 'journal entries written by the restore itself', figure: int(r.restore.journalEntriesWritten) },
    { id: '', label: 'built-in manifest load (part of createHost)', figure: `${int(r.catalogLoadMs)} ms` },
    { id: '4', label: 'heap per instance actor (restored host; actors + host maps)', figure: kib(r.restore.heapBytesPerInstance), target: `<= ${int(TARGETS.heapBytesPerInstance / 1024)} KiB`, pass: pass('heap bytes per instance actor') },
    { id: '', label: 'heap per instance, applied host (incl. fake-driver VM records)', figure: kib(r.apply.heapBytesPerInstance) },
    ...wakeRows(r.wake, TARGETS.wakeP99Ms, pass('wake overhead p99 ms')),
    ...apiRows(r),
  ];
  const m = r.machine;
  return [
    `mvm-actors bench: node ${m.node}, ${m.cpus} x ${m.cpuModel}, ${m.platform}, ${fixed(m.totalMemGiB, 1)} GiB; load average at start ${m.loadAvgAtStart.map((l) => fixed(l, 2)).join(' ')}`,
    `fleet: ${int(r.fleet.tenants)} tenants x (${r.fleet.gatewaysRunning} gateway + ${r.fleet.workersRunning} workers) = ${int(r.fleet.instances)} instances; fake driver, no latency; real clock (1-3)`,
    '',
    renderTable(rows),
    '',
    `Notes: (2) persisted transitions: the host restored again after (3), all instances running; after ${r.rounds.warmupRounds} untimed warm-up round, each round calls`,
    `      host.secrets.put(tenant, "${ROUND_SECRET}", value) for every tenant, which sends obs.secrets-changed to each of the tenant's instances (a root-level`,
    `      transition, action recordSecrets; status unchanged, so no journal entry); the host persists each changed actor through putSnapshotLater, and`,
    `      the store commits the round (plus the ${int(r.rounds.putsPerRound)} tenant secrets records) as one LMDB transaction on the next setImmediate.`,
    `      Rate = instances x rounds / (first send -> host.flush() resolved, fsync included).`,
    `      Raw puts are N put() calls in one event turn into a fresh env with the store's settings, then awaited (committed, fsync in the background).`,
    `      Status round (no target): the fake driver completes on microtasks, so stop and start run within one event turn and the store coalesces`,
    `      them into one batch (one snapshot record per changed actor, every status change journaled); its rate includes the driver effects.`,
    `  (2b) the earlier figure: journal entries (one per transition, deferral or refusal) committed between the apply() call and the store flush,`,
    `      divided by that whole window; it mostly measures the apply's CPU (actor creation, driver effects, readiness), not the persistence path.`,
    `  (4) heap: global.gc() before/after, heapUsed delta / instances; the figure with a target is the restored host (the fake driver's VM records already existed).`,
    ...wakeNotes(r.wake),
    `  (6) API: createServer() listening on 127.0.0.1 in the bench's process (${r.api.serverLogger ? 'with a pino logger to /dev/null' : 'no logger, as createServer() without one; serve logs each request at info'}), over the host restored`,
    `      again after (2) (${int(r.api.hostRunning)} of ${int(r.api.hostInstances)} running); clients (fetch, autocannon, ws) ${r.api.clients === 'child process' ? 'in a forked child process, so they do not share the server\'s event loop' : 'in the bench\'s own process (--api-clients in-process)'}.`,
    `      (6a) from the request sent to the whole body received, one request at a time on one connection, after ${API.getsWarmup} untimed ones.`,
    `      (6b) autocannon after a ${r.api.health.warmupSeconds} s warm-up; requests/s averaged over its 1 s samples; latency histogram resolution 1 ms.`,
    `      (6c) every subscriber connects with since = the journal head and waits for {"type":"replayed"}; then host.stop() of ${int(r.api.events.workersStopped)} running workers`,
    `      (running -> stopping -> stopped); delivery = first stop() call -> the last subscriber's ${int(r.api.events.expected)}th entry; no loss = the journal after`,
    `      since holds exactly ${int(r.api.events.expected)} entries and every subscriber received exactly their seqs, in order, no gap or duplicate, no early close.
      The running -> stopping entries go out inside the synchronous stop() loop, the stopping -> stopped ones on the microtasks after it (fake
      driver), so the delivery time is mostly the host making the transitions; the lag after the host emitted the last entry is the fan-out's.`,
    '',
    renderLaterParts(r.laterParts),
    '',
    `total bench time ${fixed(r.totalSeconds, 1)} s`,
  ].join('\n');
}

function apiRows(r: BenchResult): Row[] {
  const a = r.api;
  const t = (name: string) => r.targets.find((x) => x.name === name)!;
  const e = a.events;
  const opt = (x: number | null, digits = 0) => (x === null ? 'n/a' : digits ? fixed(x, digits) : int(x));
  const sum = (pick: (s: ApiFigures['events']['perSubscriber'][number]) => number) => int(e.perSubscriber.reduce((n, s) => n + pick(s), 0));
  const received = e.perSubscriber.map((s) => s.received);
  const h = a.health;
  const lat = (x: number) => (x === 0 ? '<1' : int(x));
  return [
    {
      id: '6a',
      label: `GET /v1/instances (all ${int(a.hostInstances)}) p50 / p99, ${a.listInstances.requests} sequential requests`,
      figure: `${fixed(a.listInstances.ms.p50, 1)} / ${fixed(a.listInstances.ms.p99, 1)} ms`,
    },
    { id: '', label: 'reply size; instances in the reply', figure: `${fixed(a.listInstances.bytes / 2 ** 20, 2)} MiB (${int(a.listInstances.bytes)} B); ${int(a.listInstances.instancesInReply)}` },
    { id: '', label: 'mean / max; first (cold) request; non-200 replies', figure: `${fixed(a.listInstances.ms.mean, 1)} / ${fixed(a.listInstances.ms.max, 1)} ms; ${fixed(a.listInstances.coldMs, 1)} ms; ${a.listInstances.non200}` },
    { id: '6b', label: `GET /healthz, ${h.connections} connections, ${h.seconds} s (autocannon, ${a.clients}): requests/s average`, figure: `${int(h.requestsPerSecond.average)} /s` },
    { id: '', label: 'requests/s stddev / lowest 1 s sample; requests completed', figure: `${int(h.requestsPerSecond.stddev)} / ${int(h.requestsPerSecond.min)}; ${int(h.requestsTotal)}` },
    { id: '', label: 'latency p50 / p99 / max (1 ms buckets, truncated)', figure: `${lat(h.latencyMs.p50)} / ${lat(h.latencyMs.p99)} / ${lat(h.latencyMs.max)} ms` },
    { id: '', label: 'errors / timeouts / non-2xx', figure: `${h.errors} / ${h.timeouts} / ${h.non2xx}`, target: '0', pass: t('API healthz errors + timeouts + non-2xx').pass ?? undefined },
    {
      id: '6c',
      label: `/v1/events: ${int(e.expected)} journaled transitions to ${e.subscribers} subscribers, first command -> last delivered`,
      figure: `${opt(e.deliveryMs)} ms`,
    },
    { id: '', label: 'entries/s per subscriber, slowest / fastest', figure: `${opt(e.entriesPerSecond.slowest)} / ${opt(e.entriesPerSecond.fastest)} /s` },
    {
      id: '',
      label: 'from the first command: first entry at a subscriber; host emitted the last entry; + lag to the last delivery',
      figure: `${opt(e.firstEntryMs, 1)} ms; ${opt(e.lastEmittedMs)} ms; + ${e.deliveryMs === null || e.lastEmittedMs === null ? 'n/a' : fixed(e.deliveryMs - e.lastEmittedMs, 1)} ms`,
    },
    {
      id: '',
      label: `${int(e.workersStopped)} host.stop() calls (one sync loop), wall; bench process CPU user / system in it`,
      figure: `${int(e.commandLoopMs)} ms; ${int(e.commandLoopCpuMs.user)} / ${int(e.commandLoopCpuMs.system)} ms`,
    },
    {
      id: '',
      label: `check: journal entries after since=${int(e.since)} (status transitions); stops refused`,
      figure: `${int(e.journalEntries)} (${int(e.journalTransitions)}); ${e.refused}`,
    },
    {
      id: '',
      label: 'received per subscriber min-max; missing / extra / duplicate / out of order (all subscribers)',
      figure: `${int(Math.min(...received))}-${int(Math.max(...received))}; ${sum((s) => s.missing)} / ${sum((s) => s.extra)} / ${sum((s) => s.duplicates)} / ${sum((s) => s.outOfOrder)}`,
      target: 'no loss',
      pass: e.noLoss,
    },
    ...(e.perSubscriber.some((s) => s.closedEarly !== null || s.errors.length > 0 || s.replayedEntries > 0)
      ? [{ id: '', label: 'subscriber trouble (close code, errors, replayed entries)', figure: e.perSubscriber.map((s, i) => `#${i}: ${s.closedEarly ?? '-'} ${s.errors.join(',') || '-'} ${s.replayedEntries}`).join('; ') }]
      : []),
  ];
}

await main();
