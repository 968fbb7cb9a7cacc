import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { WebSocket } from 'ws';
import type { z } from 'zod';
import { systemClock, type Clock } from '../common/clock.ts';
import type {
  ApplyReply,
  CommandReply,
  EventMessage,
  InstanceView,
  PlanReply,
  SecretInfo,
  SecretReply,
  TenantView,
} from '../server/api-schemas.ts';
import type { ErrorEnvelope } from '../server/errors.ts';
import { readToken, tokenFileFor } from '../server/token.ts';
import { defaultDataDir, serverFileFor } from './data-dir.ts';
import { UsageError } from './output.ts';

/**
 * The CLI's client of a running `mvm-actors serve`: finds the server and its token, sends
 * requests with global fetch, reads the events WebSocket with `ws`, and turns every failure into
 * a message that says what to do next. Types come from the server's reply schemas (type-only
 * imports: the client loads no server code).
 */

export type Instance = z.infer<typeof InstanceView>;
export type Tenant = z.infer<typeof TenantView>;
export type Plan = z.infer<typeof PlanReply>;
export type ApplyResult = z.infer<typeof ApplyReply>;
export type CommandAccepted = z.infer<typeof CommandReply>;
export type Secret = z.infer<typeof SecretInfo>;
export type SecretWritten = z.infer<typeof SecretReply>;
export type EventMessage = z.infer<typeof EventMessage>;
export type Health = { status: 'ok'; generation: number };

export interface ConnectOptions {
  /** --server URL */
  server?: string | undefined;
  /** --token-file F */
  tokenFile?: string | undefined;
  /** --data-dir DIR: where a local serve wrote server.json and api-token. */
  dataDir?: string | undefined;
  env?: NodeJS.ProcessEnv;
  clock?: Clock;
}

/** What `serve` writes to <data-dir>/server.json while it listens. */
interface ServerFile {
  url: string;
  pid?: number;
  token_file?: string;
}

const START_HINT = 'start one with `mvm-actors serve` or pass --server URL';

/** The server answered with an error envelope (or something that is not one). */
export class ApiRequestError extends Error {
  constructor(
    readonly status: number,
    readonly envelope: ErrorEnvelope,
  ) {
    super(envelope.message);
  }

  /** 4xx other than 401: the request was checked and refused (exit 1). Anything else could not run (exit 2). */
  get exitCode(): 1 | 2 {
    return this.status >= 400 && this.status < 500 && this.status !== 401 ? 1 : 2;
  }

  /** The message, each issue as `path: message` (with its hint), and the machine-readable reason. */
  lines(): string[] {
    const lines = [this.envelope.message];
    for (const issue of this.envelope.issues ?? []) {
      lines.push(`  ✖ ${issue.path || '(document)'}: ${issue.message}`);
      if (issue.hint) lines.push(`      hint: ${issue.hint}`);
    }
    if (this.envelope.reason) lines.push(`reason: ${this.envelope.reason}`);
    return lines;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readServerFile(file: string, dataDir: string): ServerFile {
  if (!existsSync(file)) throw new UsageError(`no local mvm-actors serve found in ${dataDir}; ${START_HINT}`);
  let parsed: Partial<ServerFile>;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<ServerFile>;
  } catch (error) {
    throw new UsageError(`${file} is unreadable (${(error as Error).message}); ${START_HINT}`);
  }
  if (typeof parsed.url !== 'string') throw new UsageError(`${file} names no server url; ${START_HINT}`);
  return { url: parsed.url, ...(typeof parsed.pid === 'number' && { pid: parsed.pid }), ...(typeof parsed.token_file === 'string' && { token_file: parsed.token_file }) };
}

function parseServerUrl(url: string, via: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`${via}: "${url}" is not a URL; expected e.g. http://127.0.0.1:7070`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UsageError(`${via}: "${url}" must be an http:// or https:// URL`);
  if (!parsed.pathname.endsWith('/')) parsed.pathname += '/';
  parsed.search = '';
  parsed.hash = '';
  return parsed;
}

/** Where the token comes from, described for messages (a file path, or the environment variable). */
interface TokenSource {
  describe: string;
  read(): string;
}

function tokenFromFile(file: string, how: string): TokenSource {
  return {
    describe: `token file ${file}${how}`,
    read: () => {
      if (!existsSync(file)) throw new UsageError(`token file ${file}${how} does not exist; pass --token-file with the file serve uses (a local serve writes <data-dir>/api-token)`);
      try {
        return readToken(file);
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
    },
  };
}

/**
 * Finds the server: --server, else $MVM_ACTORS_SERVER, else <data-dir>/server.json. And the token:
 * --token-file, else $MVM_ACTORS_TOKEN (the token itself), else the token file named in
 * server.json, else <data-dir>/api-token. The token is read on the first request that needs it.
 */
export function connect(options: ConnectOptions = {}): Client {
  const env = options.env ?? process.env;
  const dataDir = path.resolve(options.dataDir ?? defaultDataDir(env));
  const serverFile = serverFileFor(dataDir);
  const local = existsSync(serverFile) ? readServerFile(serverFile, dataDir) : undefined;

  let url: string;
  let via: string;
  if (options.server) [url, via] = [options.server, '--server'];
  else if (env.MVM_ACTORS_SERVER) [url, via] = [env.MVM_ACTORS_SERVER, '$MVM_ACTORS_SERVER'];
  else {
    const found = local ?? readServerFile(serverFile, dataDir);
    [url, via] = [found.url, serverFile];
  }

  let token: TokenSource;
  if (options.tokenFile) token = tokenFromFile(path.resolve(options.tokenFile), ' (--token-file)');
  else if (env.MVM_ACTORS_TOKEN) token = { describe: 'the token in $MVM_ACTORS_TOKEN', read: () => env.MVM_ACTORS_TOKEN!.trim() };
  else if (local?.token_file) token = tokenFromFile(local.token_file, ` (named in ${serverFile})`);
  else token = tokenFromFile(tokenFileFor(dataDir), '');

  const stale = via === serverFile && local?.pid !== undefined && !isAlive(local.pid) ? local.pid : undefined;
  return new Client(parseServerUrl(url, via), via, token, stale, options.clock ?? systemClock);
}

export interface EventsOptions {
  since: number;
  /** Keep streaming until `signal` aborts; otherwise stop once the replay is over. */
  follow: boolean;
  onMessage: (message: EventMessage) => void;
  /** Called once the socket is open (follow mode says so on stderr). */
  onOpen?: () => void;
  signal?: AbortSignal;
  /** Without follow: the replay is over once no message arrived for this long (default 300 ms; 1 s for the first). */
  idleMs?: number;
}

/** Close code the server uses for a client that cannot keep up; the client reconnects from its last seq. */
const CLOSE_SLOW_CONSUMER = 4008;
/** Without follow: how long to wait for the replay's first message before deciding there is none. */
const FIRST_MESSAGE_MS = 1_000;

export class Client {
  #token: string | undefined;

  constructor(
    /** Base URL, ending in a slash. */
    readonly base: URL,
    /** Where the URL came from: --server, $MVM_ACTORS_SERVER or the path of server.json. */
    readonly via: string,
    readonly tokenSource: TokenSource,
    /** The pid in server.json when that process is gone (the file is stale). */
    readonly stalePid: number | undefined,
    readonly clock: Clock,
  ) {}

  /** The server's URL as people type it (no trailing slash). */
  get url(): string {
    return this.base.href.replace(/\/$/, '');
  }

  #auth(): string {
    this.#token ??= this.tokenSource.read();
    return `Bearer ${this.#token}`;
  }

  #unreachable(cause: string): UsageError {
    const stale = this.stalePid !== undefined ? ` (${this.via} names pid ${this.stalePid}, which is not running: that serve has exited)` : '';
    const from = this.via === '--server' ? '' : ` (from ${this.via})`;
    return new UsageError(`cannot reach mvm-actors serve at ${this.url}${from}: ${cause}${stale}; ${START_HINT}`);
  }

  #unauthorized(envelope?: ErrorEnvelope): ApiRequestError {
    return new ApiRequestError(401, {
      statusCode: 401,
      code: envelope?.code ?? 'MVM_ERR_UNAUTHORIZED',
      message: `${this.url} refused ${this.tokenSource.describe} (401 unauthorized); pass --token-file with the token file that serve uses (by default <its data dir>/api-token)`,
    });
  }

  /** One request; 2xx replies are parsed JSON, anything else throws ApiRequestError or a UsageError. */
  async request<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', route: string, options: { body?: unknown; auth?: boolean } = {}): Promise<T> {
    const url = new URL(route.replace(/^\//, ''), this.base);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.auth !== false) headers.authorization = this.#auth();
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(url, { method, headers, ...(options.body !== undefined && { body: JSON.stringify(options.body) }) });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw this.#unreachable(cause?.code ?? cause?.message ?? (error as Error).message);
    }
    const text = await response.text();
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (response.ok) {
      if (body === undefined) throw new UsageError(`${method} ${url.pathname}: ${this.url} answered ${response.status} without JSON; is it an mvm-actors serve?`);
      return body as T;
    }
    const envelope = isEnvelope(body)
      ? body
      : { statusCode: response.status, code: 'MVM_ERR_HTTP', message: `${method} ${url.pathname}: ${response.status} ${response.statusText}${text ? `: ${text.slice(0, 200)}` : ''}` };
    if (response.status === 401) throw this.#unauthorized(envelope);
    throw new ApiRequestError(response.status, envelope);
  }

  health = () => this.request<Health>('GET', '/healthz', { auth: false });
  instances = (query: { tenant?: string | undefined; role?: string | undefined; pool?: string | undefined; state?: string | undefined } = {}) => {
    const params = new URLSearchParams(Object.entries(query).filter((e): e is [string, string] => typeof e[1] === 'string'));
    const qs = params.toString();
    return this.request<{ instances: Instance[] }>('GET', `/v1/instances${qs ? `?${qs}` : ''}`);
  };
  tenants = () => this.request<{ tenants: Tenant[] }>('GET', '/v1/tenants');
  apply = (document: unknown) => this.request<ApplyResult>('PUT', '/v1/desired-state', { body: document });
  plan = (document: unknown) => this.request<Plan>('POST', '/v1/plan', { body: document });
  command = (command: 'sleep' | 'wake' | 'stop' | 'start', id: string) => this.request<CommandAccepted>('POST', `/v1/instances/${encodeURIComponent(id)}/${command}`);
  secrets = (tenant: string) => this.request<{ secrets: Secret[] }>('GET', `/v1/tenants/${encodeURIComponent(tenant)}/secrets`);
  putSecret = (tenant: string, name: string, value: string) =>
    this.request<SecretWritten>('PUT', `/v1/tenants/${encodeURIComponent(tenant)}/secrets/${encodeURIComponent(name)}`, { body: { value } });
  deleteSecret = (tenant: string, name: string) => this.request<SecretWritten>('DELETE', `/v1/tenants/${encodeURIComponent(tenant)}/secrets/${encodeURIComponent(name)}`);

  /**
   * Reads the events WebSocket from `since`. Without follow it resolves once the replay is over
   * (the socket has been quiet for idleMs: the API sends no end-of-replay marker). With follow it
   * streams until the signal aborts, reconnecting from the last seq when the server drops it as
   * a slow consumer; any other close by the server is an error.
   */
  async events(options: EventsOptions): Promise<void> {
    let since = options.since;
    for (;;) {
      const outcome = await this.#eventsOnce({ ...options, since }, (seq) => (since = seq));
      if (outcome !== 'slow') return;
    }
  }

  #eventsOnce(options: EventsOptions, seen: (seq: number) => void): Promise<'done' | 'slow'> {
    const url = new URL(`v1/events?since=${options.since}`, this.base);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const idleMs = options.idleMs ?? 300;
    return new Promise((resolve, reject) => {
      let settled = false;
      let idle: unknown;
      const ws = new WebSocket(url, { headers: { authorization: this.#auth() } });
      const finish = (error?: Error, outcome: 'done' | 'slow' = 'done') => {
        if (settled) return;
        settled = true;
        this.clock.clearTimeout(idle);
        options.signal?.removeEventListener('abort', onAbort);
        if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(1000);
        if (error) reject(error);
        else resolve(outcome);
      };
      // The server flushes its store before the replay, then sends the replay in one burst: give
      // the first message longer to arrive than the gaps inside the burst.
      let received = false;
      const armIdle = () => {
        if (options.follow) return;
        this.clock.clearTimeout(idle);
        idle = this.clock.setTimeout(() => finish(), received ? idleMs : Math.max(idleMs, FIRST_MESSAGE_MS));
      };
      const onAbort = () => finish();
      if (options.signal?.aborted) return finish();
      options.signal?.addEventListener('abort', onAbort);

      ws.on('open', () => {
        options.onOpen?.();
        armIdle();
      });
      ws.on('message', (data: Buffer) => {
        if (settled) return; // ws still delivers what was in flight when we closed
        received = true;
        armIdle();
        let message: EventMessage;
        try {
          message = JSON.parse(data.toString('utf8')) as EventMessage;
        } catch {
          return finish(new UsageError(`${url.origin}/v1/events sent a message that is not JSON`));
        }
        if (message.type === 'journal') seen(message.entry.seq);
        options.onMessage(message);
        // The server says when the replay is over: without --follow, that is the end.
        if (message.type === 'replayed' && !options.follow) finish();
      });
      ws.on('unexpected-response', (_request, response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            body = undefined;
          }
          const status = response.statusCode ?? 0;
          if (status === 401) return finish(this.#unauthorized());
          finish(new ApiRequestError(status, isEnvelope(body) ? body : { statusCode: status, code: 'MVM_ERR_HTTP', message: `GET /v1/events: ${status} ${response.statusMessage ?? ''}` }));
        });
      });
      ws.on('error', (error: NodeJS.ErrnoException) => finish(this.#unreachable(error.code ?? error.message)));
      ws.on('close', (code: number, reason: Buffer) => {
        if (settled) return;
        if (code === CLOSE_SLOW_CONSUMER) return finish(undefined, 'slow');
        if (!options.follow) return finish();
        const why = reason.length > 0 ? `: ${reason.toString('utf8')}` : '';
        finish(new UsageError(`${this.url} closed the event stream (code ${code}${why}); to resume, run again with --since <the last seq printed>`));
      });
    });
  }
}

function isEnvelope(body: unknown): body is ErrorEnvelope {
  return typeof body === 'object' && body !== null && typeof (body as ErrorEnvelope).message === 'string' && typeof (body as ErrorEnvelope).code === 'string';
}

/** Aligned columns for human output: a header row, then the rows; no trailing spaces. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
