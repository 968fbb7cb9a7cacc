/**
 * The API bench's clients (part 6): sequential GETs with fetch (undici), an autocannon load run,
 * and WebSocket subscribers of /v1/events. They run in a child process (api-client-child.ts) or
 * in the bench's own process; every result is plain JSON so it can cross the IPC channel.
 */
import autocannon from 'autocannon';
import WebSocket from 'ws';

/** process.hrtime in ms: CLOCK_MONOTONIC on Linux, so comparable between the bench and its child. */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export interface GetsOptions {
  url: string;
  token: string;
  /** Timed requests, one after the other on one kept-alive connection. */
  requests: number;
  /** Untimed requests first (the first one is reported as the cold request). */
  warmup: number;
}

export interface GetsResult {
  /** Request sent to the whole body received, per timed request. */
  ms: number[];
  coldMs: number;
  /** Body bytes of the last reply (identity encoding). */
  bytes: number;
  /** Length of `instances` in the last reply (parsed after the timing). */
  instancesInReply: number;
  /** Replies with a status other than 200, timed or not. */
  non200: number;
}

export async function sequentialGets(options: GetsOptions): Promise<GetsResult> {
  const headers = { authorization: `Bearer ${options.token}` };
  let non200 = 0;
  let last = new ArrayBuffer(0);
  const one = async (): Promise<number> => {
    const started = nowMs();
    const response = await fetch(options.url, { headers });
    last = await response.arrayBuffer();
    const took = nowMs() - started;
    if (response.status !== 200) non200++;
    return took;
  };
  let coldMs = Number.NaN;
  for (let i = 0; i < options.warmup; i++) {
    const took = await one();
    if (i === 0) coldMs = took;
  }
  const ms: number[] = [];
  for (let i = 0; i < options.requests; i++) ms.push(await one());
  const parsed = JSON.parse(Buffer.from(last).toString('utf8')) as { instances?: unknown[] };
  return { ms, coldMs, bytes: last.byteLength, instancesInReply: parsed.instances?.length ?? 0, non200 };
}

export interface LoadOptions {
  url: string;
  connections: number;
  seconds: number;
  warmupSeconds: number;
}

export interface LoadResult {
  seconds: number;
  /** Requests per one-second sample: average, stddev, lowest. */
  requestsPerSecond: { average: number; stddev: number; min: number };
  requestsTotal: number;
  /** Per request, ms (autocannon's histogram has 1 ms resolution). */
  latencyMs: { p50: number; p99: number; max: number; average: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  resets: number;
  mismatches: number;
  ok2xx: number;
}

export async function loadRun(options: LoadOptions): Promise<LoadResult> {
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.seconds,
    ...(options.warmupSeconds > 0 ? { warmup: { connections: options.connections, duration: options.warmupSeconds } } : {}),
  });
  return {
    seconds: result.duration,
    requestsPerSecond: { average: result.requests.average, stddev: result.requests.stddev, min: result.requests.min },
    requestsTotal: result.requests.total,
    latencyMs: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max, average: result.latency.average },
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    resets: result.resets,
    mismatches: result.mismatches,
    ok2xx: result['2xx'],
  };
}

export interface SubscribeOptions {
  /** ws://.../v1/events?since=N&token=T */
  url: string;
  since: number;
  subscribers: number;
  /** Live entries each subscriber waits for. */
  expect: number;
  /** Give up waiting for `expect` entries after this long (from ready). */
  timeoutMs: number;
  /** After the last subscriber has its `expect` entries, keep listening this long (duplicates, extras). */
  graceMs: number;
}

export interface SubscriberResult {
  /** seq of every journal message after the replayed marker, in arrival order. */
  seqs: number[];
  /** seq of the replayed marker; journal messages before it (expected none: since = head). */
  replayedSeq: number | null;
  replayedEntries: number;
  /** nowMs() when the first live entry and the `expect`-th one arrived. */
  firstAt: number | null;
  nthAt: number | null;
  /** Close code if the server closed the socket before the end (4008: slow consumer). */
  closedEarly: number | null;
  otherMessages: number;
  errors: string[];
}

/**
 * Opens `subscribers` sockets and calls `onReady` once every one has its replayed marker; resolves
 * when every one has `expect` live entries (plus `graceMs`) or after `timeoutMs`.
 */
export async function subscribeEvents(options: SubscribeOptions, onReady: () => void): Promise<SubscriberResult[]> {
  const results: SubscriberResult[] = [];
  const sockets: WebSocket[] = [];
  let readyCount = 0;
  let doneCount = 0;
  let allReady!: () => void;
  let allDone!: () => void;
  const ready = new Promise<void>((resolve) => (allReady = resolve));
  const done = new Promise<void>((resolve) => (allDone = resolve));
  let finished = false;
  for (let i = 0; i < options.subscribers; i++) {
    const r: SubscriberResult = { seqs: [], replayedSeq: null, replayedEntries: 0, firstAt: null, nthAt: null, closedEarly: null, otherMessages: 0, errors: [] };
    results.push(r);
    const socket = new WebSocket(options.url);
    sockets.push(socket);
    socket.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString('utf8')) as { type?: string; seq?: number; entry?: { seq: number } };
      if (message.type === 'journal' && message.entry) {
        if (r.replayedSeq === null) {
          r.replayedEntries++;
          return;
        }
        const seqs = r.seqs;
        seqs.push(message.entry.seq);
        if (seqs.length === 1) r.firstAt = nowMs();
        if (seqs.length === options.expect) {
          r.nthAt = nowMs();
          if (++doneCount === options.subscribers) allDone();
        }
      } else if (message.type === 'replayed' && r.replayedSeq === null) {
        r.replayedSeq = message.seq ?? -1;
        if (++readyCount === options.subscribers) allReady();
      } else r.otherMessages++;
    });
    socket.on('error', (error) => r.errors.push(error.message));
    socket.on('close', (code) => {
      if (!finished) {
        r.closedEarly = code;
        // A closed subscriber will never be ready or done: stop waiting for it.
        if (r.replayedSeq === null && ++readyCount === options.subscribers) allReady();
        if (r.nthAt === null && ++doneCount === options.subscribers) allDone();
      }
    });
  }
  const wait = (promise: Promise<void>, limitMs: number) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), limitMs);
      void promise.then(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  if (!(await wait(ready, options.timeoutMs))) for (const r of results) if (r.replayedSeq === null) r.errors.push('no replayed marker');
  onReady();
  if (!(await wait(done, options.timeoutMs))) for (const r of results) if (r.nthAt === null) r.errors.push(`timed out with ${r.seqs.length} of ${options.expect} entries`);
  await new Promise<void>((resolve) => setTimeout(resolve, options.graceMs));
  finished = true;
  await Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          if (socket.readyState === WebSocket.CLOSED) return resolve();
          socket.once('close', () => resolve());
          socket.close();
        }),
    ),
  );
  return results;
}
