import http from 'node:http';
import type { Clock } from '../common/clock.ts';
import type { components } from './api-types.ts';

/**
 * A client for one Firecracker process's API socket: HTTP/1.1 over a Unix socket.
 *
 * Requests go out one at a time (a queue per client): Firecracker's API thread handles one
 * request at a time, and integrators who wrote to one socket from two places at once saw broken
 * pipes and 503s (flintlock #213). Every non-2xx answer becomes a FirecrackerApiError carrying the
 * status, method, path and Firecracker's `fault_message`. Every request has a deadline, armed on
 * the injected clock.
 */

export type FirecrackerSchemas = components['schemas'];
export type MachineConfiguration = FirecrackerSchemas['MachineConfiguration'];
export type BootSource = FirecrackerSchemas['BootSource'];
export type Drive = FirecrackerSchemas['Drive'];
export type NetworkInterface = FirecrackerSchemas['NetworkInterface'];
export type Vsock = FirecrackerSchemas['Vsock'];
export type SnapshotCreateParams = FirecrackerSchemas['SnapshotCreateParams'];
export type SnapshotLoadParams = FirecrackerSchemas['SnapshotLoadParams'];
export type InstanceInfo = FirecrackerSchemas['InstanceInfo'];
export type Logger = FirecrackerSchemas['Logger'];
export type FullVmConfiguration = FirecrackerSchemas['FullVmConfiguration'];
export type VmState = FirecrackerSchemas['Vm']['state'];
export type HttpMethod = 'GET' | 'PUT' | 'PATCH';

/**
 * - `status`: Firecracker answered with a non-2xx status (`status` and `faultMessage` say why);
 * - `unreachable`: nothing listens on the socket (the process is gone or not up yet);
 * - `transport`: the connection broke, or the answer was not HTTP/JSON;
 * - `deadline`: no answer before the request's deadline;
 * - `aborted`: the caller's signal aborted it.
 */
export type FirecrackerApiErrorKind = 'status' | 'unreachable' | 'transport' | 'deadline' | 'aborted';

export class FirecrackerApiError extends Error {
  override readonly name = 'FirecrackerApiError';
  constructor(
    readonly kind: FirecrackerApiErrorKind,
    readonly method: HttpMethod,
    readonly path: string,
    /** HTTP status, or 0 when no answer came. */
    readonly status: number,
    /** Firecracker's `fault_message` (for `status`), or what went wrong on the way. */
    readonly faultMessage: string,
  ) {
    super(`Firecracker API ${method} ${path}: ${kind === 'status' ? `${status} ${faultMessage}` : `${kind}: ${faultMessage}`}`);
  }
}

export interface RequestOptions {
  /** Absolute time (clock ms) by which the answer must be in; the client default applies otherwise. */
  deadline?: number;
  signal?: AbortSignal;
}

export interface FirecrackerApiClientOptions {
  socketPath: string;
  clock: Clock;
  /** Deadline for a request given none (ms from when it is sent). */
  defaultTimeoutMs?: number;
}

/** Firecracker refuses bodies above 51200 bytes by default (--http-api-max-payload-size). */
const MAX_BODY_BYTES = 51_200;
/** Answers are small JSON documents; anything larger is not Firecracker. */
const MAX_ANSWER_BYTES = 1 << 20;

export class FirecrackerApiClient {
  readonly socketPath: string;
  readonly #clock: Clock;
  readonly #defaultTimeoutMs: number;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(options: FirecrackerApiClientOptions) {
    this.socketPath = options.socketPath;
    this.#clock = options.clock;
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? 5000;
  }

  /** One request, after every earlier request of this client has finished. Resolves with the parsed JSON answer, or undefined for 204. */
  request<T = unknown>(method: HttpMethod, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    const run = () => this.#send<T>(method, path, body, options);
    const result = this.#tail.then(run, run);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  // --- the calls the driver makes, typed by the spec ---

  describeInstance(options?: RequestOptions): Promise<InstanceInfo> {
    return this.request<InstanceInfo>('GET', '/', undefined, options);
  }
  putLogger(body: Logger, options?: RequestOptions): Promise<void> {
    return this.request('PUT', '/logger', body, options);
  }
  putMachineConfig(body: MachineConfiguration, options?: RequestOptions): Promise<void> {
    return this.request('PUT', '/machine-config', body, options);
  }
  putBootSource(body: BootSource, options?: RequestOptions): Promise<void> {
    return this.request('PUT', '/boot-source', body, options);
  }
  putDrive(body: Drive, options?: RequestOptions): Promise<void> {
    return this.request('PUT', `/drives/${encodeURIComponent(body.drive_id)}`, body, options);
  }
  putNetworkInterface(body: NetworkInterface, options?: RequestOptions): Promise<void> {
    return this.request('PUT', `/network-interfaces/${encodeURIComponent(body.iface_id)}`, body, options);
  }
  putVsock(body: Vsock, options?: RequestOptions): Promise<void> {
    return this.request('PUT', '/vsock', body, options);
  }
  instanceStart(options?: RequestOptions): Promise<void> {
    return this.request('PUT', '/actions', { action_type: 'InstanceStart' }, options);
  }
  patchVm(state: VmState, options?: RequestOptions): Promise<void> {
    return this.request('PATCH', '/vm', { state }, options);
  }
  createSnapshot(body: SnapshotCreateParams, options?: RequestOptions): Promise<void> {
    return this.request('PUT', '/snapshot/create', body, options);
  }
  loadSnapshot(body: SnapshotLoadParams, options?: RequestOptions): Promise<void> {
    return this.request('PUT', '/snapshot/load', body, options);
  }
  vmConfig(options?: RequestOptions): Promise<FullVmConfiguration> {
    return this.request<FullVmConfiguration>('GET', '/vm/config', undefined, options);
  }

  #send<T>(method: HttpMethod, path: string, body: unknown, options: RequestOptions): Promise<T> {
    const fail = (kind: FirecrackerApiErrorKind, status: number, message: string) => new FirecrackerApiError(kind, method, path, status, message);
    const deadline = options.deadline ?? this.#clock.now() + this.#defaultTimeoutMs;
    const remaining = deadline - this.#clock.now();
    if (options.signal?.aborted) return Promise.reject(fail('aborted', 0, 'aborted before it was sent'));
    if (remaining <= 0) return Promise.reject(fail('deadline', 0, 'the deadline passed before it was sent'));
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    if (payload && payload.length > MAX_BODY_BYTES) return Promise.reject(fail('transport', 0, `body of ${payload.length} bytes exceeds Firecracker's ${MAX_BODY_BYTES}-byte limit`));

    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const settle = (error: FirecrackerApiError | null, value?: T) => {
        if (settled) return;
        settled = true;
        this.#clock.clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (error) {
          request.destroy();
          reject(error);
        } else {
          resolve(value as T);
        }
      };
      const onAbort = () => settle(fail('aborted', 0, 'aborted while waiting for the answer'));
      const timer = this.#clock.setTimeout(() => settle(fail('deadline', 0, `no answer within ${Math.round(remaining)} ms`)), remaining);
      options.signal?.addEventListener('abort', onAbort, { once: true });

      const request = http.request(
        {
          socketPath: this.socketPath,
          method,
          path,
          // A fresh connection per request: a Firecracker process that died mid-way cannot leave a
          // half-read keep-alive connection behind for the next call.
          agent: false,
          headers: {
            Accept: 'application/json',
            ...(payload ? { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) } : {}),
          },
        },
        (response) => {
          const chunks: Buffer[] = [];
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_ANSWER_BYTES) settle(fail('transport', response.statusCode ?? 0, `answer larger than ${MAX_ANSWER_BYTES} bytes`));
            else chunks.push(chunk);
          });
          response.on('error', (error) => settle(fail('transport', response.statusCode ?? 0, error.message)));
          response.on('end', () => {
            const status = response.statusCode ?? 0;
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            if (text.trim() !== '') {
              try {
                parsed = JSON.parse(text);
              } catch {
                if (status >= 200 && status < 300) return settle(fail('transport', status, `answer is not JSON: ${JSON.stringify(text.slice(0, 200))}`));
              }
            }
            if (status >= 200 && status < 300) return settle(null, parsed as T);
            const fault = (parsed as { fault_message?: unknown } | undefined)?.fault_message;
            settle(fail('status', status, typeof fault === 'string' ? fault : text.trim() || '(no fault_message)'));
          });
        },
      );
      request.on('error', (error: NodeJS.ErrnoException) => {
        const unreachable = error.code === 'ENOENT' || error.code === 'ECONNREFUSED' || error.code === 'ENOTSOCK';
        settle(fail(unreachable ? 'unreachable' : 'transport', 0, `${this.socketPath}: ${error.message}`));
      });
      request.end(payload);
    });
  }
}
