/**
 * Part 6 of the bench: the HTTP and WebSocket API over a host with every instance running
 * (issue 4, "Performance"). The server is createServer() listening on 127.0.0.1 (port 0) in the
 * bench's process; the clients (api-clients.ts) run in a child process by default.
 *
 *   a. GET /v1/instances (every instance) with the bearer token: sequential requests with fetch,
 *      latency from the request to the whole body received, and the reply size;
 *   b. GET /healthz (no auth) under autocannon with `connections` concurrent connections for
 *      `seconds`: requests/s, latency, errors/timeouts and non-2xx (both must be 0);
 *   c. /v1/events fan-out: `subscribers` sockets connect with since = the journal head and wait for
 *      the replayed marker; the host then stops workers (running -> stopping -> stopped, two journal
 *      entries each) until exactly `transitions` entries are journaled, and every subscriber must
 *      receive exactly those entries, in seq order, no gap, no duplicate.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Host } from '../../src/host/host.ts';
import { createServer } from '../../src/server/create-server.ts';
import type { ClientReply, ClientRequest } from './api-client-child.ts';
import {
  loadRun,
  nowMs,
  sequentialGets,
  subscribeEvents,
  type GetsOptions,
  type GetsResult,
  type LoadOptions,
  type LoadResult,
  type SubscribeOptions,
  type SubscriberResult,
} from './api-clients.ts';
import { distribution, type Distribution } from './report.ts';

export type ClientPlacement = 'child process' | 'in process';

interface Clients {
  placement: ClientPlacement;
  gets(options: GetsOptions): Promise<GetsResult>;
  load(options: LoadOptions): Promise<LoadResult>;
  subscribe(options: SubscribeOptions, onReady: () => void): Promise<SubscriberResult[]>;
  close(): Promise<void>;
}

const inProcessClients = (): Clients => ({
  placement: 'in process',
  gets: sequentialGets,
  load: loadRun,
  subscribe: subscribeEvents,
  close: async () => {},
});

/** The clients in a forked child (same tsx loader), driven over IPC. */
async function childClients(): Promise<Clients> {
  const child: ChildProcess = fork(fileURLToPath(new URL('./api-client-child.ts', import.meta.url)), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const pending = new Map<number, { ready?: () => void; resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = true;
      for (const p of pending.values()) p.reject(new Error(`bench client process exited (${code ?? signal ?? '?'})`));
      pending.clear();
      resolve();
    }),
  );
  let started!: () => void;
  const startedPromise = new Promise<void>((resolve) => (started = resolve));
  child.on('message', (reply: ClientReply) => {
    if (reply.kind === 'started') return started();
    const p = pending.get(reply.id);
    if (!p) return;
    if (reply.kind === 'ready') return p.ready?.();
    pending.delete(reply.id);
    if (reply.kind === 'result') p.resolve(reply.result);
    else p.reject(new Error(`bench client: ${reply.message}`));
  });
  await Promise.race([startedPromise, exit.then(() => Promise.reject(new Error('bench client process exited before it started')))]);
  let nextId = 1;
  const call = <T>(request: Omit<Extract<ClientRequest, { op: 'gets' | 'load' | 'subscribe' }>, 'id'>, ready?: () => void): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (exited) return reject(new Error('bench client process has exited'));
      const id = nextId++;
      pending.set(id, { ...(ready && { ready }), resolve: resolve as (value: unknown) => void, reject });
      child.send({ id, ...request } as ClientRequest);
    });
  return {
    placement: 'child process',
    gets: (options) => call<GetsResult>({ op: 'gets', options }),
    load: (options) => call<LoadResult>({ op: 'load', options }),
    subscribe: (options, onReady) => call<SubscriberResult[]>({ op: 'subscribe', options }, onReady),
    close: async () => {
      if (!exited) child.send({ id: nextId++, op: 'exit' } satisfies ClientRequest);
      const timer = setTimeout(() => child.kill(), 5_000);
      await exit;
      clearTimeout(timer);
    },
  };
}

export interface ApiOptions {
  clients: ClientPlacement;
  gets: number;
  getsWarmup: number;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  subscribers: number;
  /** Journal entries to make (two per stopped worker). */
  transitions: number;
  /** Server logger (default none, as createServer without one). */
  logger?: Logger;
  progress: (message: string) => void;
}

export interface SubscriberFigures {
  received: number;
  /** Entries of the journal window never received / received but not in it / received more than once / received before a smaller seq. */
  missing: number;
  extra: number;
  duplicates: number;
  outOfOrder: number;
  replayedEntries: number;
  closedEarly: number | null;
  errors: string[];
  /** First command to this subscriber's `expected`-th entry. */
  deliveryMs: number | null;
  entriesPerSecond: number | null;
}

export interface ApiFigures {
  clients: ClientPlacement;
  serverLogger: boolean;
  hostInstances: number;
  hostRunning: number;
  listInstances: { requests: number; ms: Distribution; coldMs: number; bytes: number; instancesInReply: number; non200: number };
  health: LoadResult & { connections: number; warmupSeconds: number };
  events: {
    subscribers: number;
    expected: number;
    workersStopped: number;
    refused: number;
    /** Journal head the subscribers connected at (since). */
    since: number;
    /** Entries in the journal after `since` once everything was flushed, and how many are status transitions. */
    journalEntries: number;
    journalTransitions: number;
    /** The synchronous host.stop() loop (running -> stopping entries are sent to the sockets inside it), and the CPU of the bench's process (all threads) meanwhile. */
    commandLoopMs: number;
    commandLoopCpuMs: { user: number; system: number };
    /** First command to the host emitting the last of the expected entries. */
    lastEmittedMs: number | null;
    /** First command to the last subscriber receiving its last expected entry. */
    deliveryMs: number | null;
    /** First command to the first entry at the first subscriber. */
    firstEntryMs: number | null;
    perSubscriber: SubscriberFigures[];
    entriesPerSecond: { slowest: number | null; fastest: number | null };
    noLoss: boolean;
  };
  /** Listen until close, seconds. */
  totalSeconds: number;
}

/** The newest committed journal seq (0 for an empty journal), by bisection on readJournal's sinceSeq. */
export async function journalHead(host: Host): Promise<number> {
  await host.flush();
  const after = (seq: number) => host.journal({ sinceSeq: seq, limit: 1 }).length > 0;
  if (!after(0)) return 0;
  let low = 0;
  let high = 1;
  while (after(high)) {
    low = high;
    high *= 2;
  }
  // after(low) is true, after(high) is false: the head is in (low, high].
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (after(mid)) low = mid;
    else high = mid;
  }
  return high;
}

export async function apiBench(host: Host, options: ApiOptions): Promise<ApiFigures> {
  const started = nowMs();
  const token = randomBytes(24).toString('base64url');
  const app = await createServer(host, { token, ...(options.logger && { logger: options.logger }) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (!address || typeof address !== 'object') throw new Error('server address unknown');
  const base = `127.0.0.1:${address.port}`;
  const clients = options.clients === 'child process' ? await childClients() : inProcessClients();
  try {
    const hostInstances = host.instances().length;
    const hostRunning = host.instances({ status: 'running' }).length;

    options.progress(`    a. GET /v1/instances (${hostInstances} instances): ${options.getsWarmup} untimed + ${options.gets} timed sequential requests (clients: ${clients.placement}) ...`);
    const gets = await clients.gets({ url: `http://${base}/v1/instances`, token, requests: options.gets, warmup: options.getsWarmup });

    options.progress(`    b. GET /healthz: autocannon, ${options.connections} connections, ${options.warmupSeconds} s warm-up + ${options.seconds} s ...`);
    const load = await clients.load({ url: `http://${base}/healthz`, connections: options.connections, seconds: options.seconds, warmupSeconds: options.warmupSeconds });

    options.progress(`    c. /v1/events: ${options.subscribers} subscribers, ${options.transitions} journaled transitions ...`);
    const events = await eventsFanOut(host, clients, `ws://${base}/v1/events`, token, options);

    return {
      clients: clients.placement,
      serverLogger: options.logger !== undefined,
      hostInstances,
      hostRunning,
      listInstances: { requests: gets.ms.length, ms: distribution(gets.ms), coldMs: gets.coldMs, bytes: gets.bytes, instancesInReply: gets.instancesInReply, non200: gets.non200 },
      health: { ...load, connections: options.connections, warmupSeconds: options.warmupSeconds },
      events,
      totalSeconds: (nowMs() - started) / 1000,
    };
  } finally {
    await clients.close();
    await app.close();
  }
}

async function eventsFanOut(host: Host, clients: Clients, url: string, token: string, options: ApiOptions): Promise<ApiFigures['events']> {
  const workers = host
    .instances({ role: 'worker', status: 'running' })
    .map((i) => i.instance_id)
    .slice(0, Math.floor(options.transitions / 2));
  // running -> stopping -> stopped: two journal entries per worker.
  const expected = workers.length * 2;
  const since = await journalHead(host);

  let emitted = 0;
  let lastEmittedAt: number | null = null;
  const unsubscribe = host.subscribe((event) => {
    if (event.seq <= since) return;
    if (++emitted === expected) lastEmittedAt = nowMs();
  });

  let commandsAt = 0;
  let commandLoopMs = 0;
  let commandLoopCpuMs = { user: 0, system: 0 };
  let refused = 0;
  const results = await clients.subscribe(
    { url: `${url}?since=${since}&token=${encodeURIComponent(token)}`, since, subscribers: options.subscribers, expect: expected, timeoutMs: 60_000, graceMs: 250 },
    () => {
      const cpuStart = process.cpuUsage();
      commandsAt = nowMs();
      for (const id of workers) if (!host.stop(id).accepted) refused++;
      commandLoopMs = nowMs() - commandsAt;
      const cpu = process.cpuUsage(cpuStart);
      commandLoopCpuMs = { user: cpu.user / 1000, system: cpu.system / 1000 };
    },
  );
  unsubscribe();
  await host.flush();
  const journal = host.journal({ sinceSeq: since });
  const journalSeqs = journal.map((e) => e.seq);
  const inJournal = new Set(journalSeqs);

  const perSubscriber = results.map((r): SubscriberFigures => {
    const received = new Set(r.seqs);
    let outOfOrder = 0;
    for (let i = 1; i < r.seqs.length; i++) if (r.seqs[i]! <= r.seqs[i - 1]!) outOfOrder++;
    const deliveryMs = r.nthAt === null ? null : r.nthAt - commandsAt;
    return {
      received: r.seqs.length,
      missing: journalSeqs.filter((s) => !received.has(s)).length,
      extra: [...received].filter((s) => !inJournal.has(s)).length,
      duplicates: r.seqs.length - received.size,
      outOfOrder,
      replayedEntries: r.replayedEntries,
      closedEarly: r.closedEarly,
      errors: r.errors,
      deliveryMs,
      entriesPerSecond: deliveryMs === null ? null : expected / (deliveryMs / 1000),
    };
  });
  const rates = perSubscriber.map((s) => s.entriesPerSecond).filter((x): x is number => x !== null);
  const deliveries = perSubscriber.map((s) => s.deliveryMs);
  const firsts = results.map((r) => r.firstAt).filter((x): x is number => x !== null);
  const exact = (r: SubscriberResult) => r.seqs.length === journalSeqs.length && r.seqs.every((s, i) => s === journalSeqs[i]);
  const noLoss =
    expected > 0 &&
    journal.length === expected &&
    refused === 0 &&
    results.length === options.subscribers &&
    results.every((r) => exact(r) && r.replayedSeq === since && r.replayedEntries === 0 && r.closedEarly === null && r.errors.length === 0);
  return {
    subscribers: options.subscribers,
    expected,
    workersStopped: workers.length,
    refused,
    since,
    journalEntries: journal.length,
    journalTransitions: journal.filter((e) => e.kind === 'transition' && e.from !== e.to).length,
    commandLoopMs,
    commandLoopCpuMs,
    lastEmittedMs: lastEmittedAt === null ? null : lastEmittedAt - commandsAt,
    deliveryMs: deliveries.some((d) => d === null) ? null : Math.max(...(deliveries as number[])),
    firstEntryMs: firsts.length ? Math.min(...firsts) - commandsAt : null,
    perSubscriber,
    entriesPerSecond: { slowest: rates.length === results.length && rates.length ? Math.min(...rates) : null, fastest: rates.length ? Math.max(...rates) : null },
    noLoss,
  };
}
