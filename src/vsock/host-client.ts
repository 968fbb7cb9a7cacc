import type { Duplex } from 'node:stream';
import { type Clock, systemClock } from '../common/clock.ts';
import { VsockError } from './errors.ts';
import { connectFirecrackerVsock, connectFirecrackerVsockWithRetry } from './firecracker-uds.ts';
import { FrameTooLargeError } from './frame-codec.ts';
import { FramedSocket } from './framed-socket.ts';
import {
  Envelope,
  ErrorFrame,
  FATAL_ERROR_CODES,
  Hello,
  type HelloAck,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  Response,
  type Verb,
  VerbArgs,
  type VerbArgsInput,
  type VerbResult,
  VerbResults,
  VersionProbe,
  type WireErrorCode,
  describeZodError,
  errorFrame,
} from './protocol.ts';

/**
 * The host's side of the vsock control protocol: one client per connection to one VM's agent.
 *
 * The VM's identity comes from the host: the caller says which instance (and tenant) owns the
 * socket it connects to. The guest's hello must agree (or, with an unreadable config drive, not
 * know), and every request is sent with that instance id, so a guest refuses a request that was
 * routed to the wrong VM. Requests naming another instance are refused here, before sending.
 */

export interface HostClientIdentity {
  /** The instance that owns this vsock socket (from the host's records, not from the guest). */
  instanceId: string;
  /** Its tenant, if the host wants it checked against the guest's hello and sent with requests. */
  tenantId?: string;
}

export interface HostSessionOptions extends HostClientIdentity {
  clock?: Clock;
  /** Wait this long for the guest's hello. */
  helloDeadlineMs?: number;
  /** Default per-request deadline. */
  requestDeadlineMs?: number;
  maxFrameBytes?: number;
}

export interface HostConnectOptions extends HostSessionOptions {
  /** The VM's vsock `uds_path`. */
  udsPath: string;
  /** The guest agent's vsock port (role manifest `vsock.agent_port`). */
  port: number;
  /** Deadline for the Firecracker `CONNECT` handshake. */
  connectDeadlineMs?: number;
  /** Retry while the VM or its agent is not up yet, within connectDeadlineMs. */
  retry?: boolean;
}

export interface RequestOptions {
  deadlineMs?: number;
}

interface Pending {
  verb: Verb;
  resolve(value: unknown): void;
  reject(error: VsockError): void;
  timer: unknown;
}

/** Connects to a VM's guest agent through its Firecracker vsock socket and completes the hello. */
export async function connectGuestAgent(options: HostConnectOptions): Promise<VsockHostClient> {
  const clock = options.clock ?? systemClock;
  const connect = options.retry ? connectFirecrackerVsockWithRetry : connectFirecrackerVsock;
  const { socket } = await connect({ udsPath: options.udsPath, port: options.port, deadlineMs: options.connectDeadlineMs ?? 2000, clock });
  return openHostSession(socket, { ...options, clock });
}

/** Runs the host side of the protocol over an already connected stream (after `OK <port>`). */
export function openHostSession(socket: Duplex, options: HostSessionOptions): Promise<VsockHostClient> {
  return new Promise<VsockHostClient>((resolve, reject) => {
    const client = new VsockHostClient(socket, options, (error) => (error ? reject(error) : resolve(client)));
  });
}

export class VsockHostClient {
  readonly instanceId: string;
  readonly tenantId: string | null;
  readonly #clock: Clock;
  readonly #framed: FramedSocket;
  readonly #requestDeadlineMs: number;
  readonly #pending = new Map<number, Pending>();
  readonly #closeListeners: ((reason: VsockError) => void)[] = [];
  #hello: Hello | null = null;
  #handlers: ReadonlySet<Verb> = new Set();
  #ready = false;
  #nextId = 1;
  #closeReason: VsockError | null = null;
  #onHandshake: ((error: VsockError | null) => void) | null;
  #helloTimer: unknown;

  /** Internal: use connectGuestAgent or openHostSession, which resolve once the hello is in. */
  constructor(socket: Duplex, options: HostSessionOptions, onHandshake: (error: VsockError | null) => void) {
    this.instanceId = options.instanceId;
    this.tenantId = options.tenantId ?? null;
    this.#clock = options.clock ?? systemClock;
    this.#requestDeadlineMs = options.requestDeadlineMs ?? 5000;
    this.#onHandshake = onHandshake;
    this.#framed = new FramedSocket(
      socket,
      {
        onMessage: (value) => this.#onMessage(value),
        onDecodeError: (code, message) => this.#protocolError(code, `guest sent ${message}`),
        onClose: () => this.#shutdown(this.#closeReason ?? new VsockError('closed', 'the guest agent closed the connection')),
      },
      { clock: this.#clock, maxFrameBytes: options.maxFrameBytes ?? MAX_FRAME_BYTES },
    );
    const helloDeadlineMs = options.helloDeadlineMs ?? 2000;
    this.#helloTimer = this.#clock.setTimeout(() => {
      this.#closeReason = new VsockError('timeout', `no hello from the guest agent within ${helloDeadlineMs} ms`);
      this.#framed.close();
      this.#shutdown(this.#closeReason);
    }, helloDeadlineMs);
  }

  /** The guest's hello (protocol version, identity, handlers, versions) as received. */
  get hello(): Hello {
    if (!this.#hello) throw new Error('no hello yet');
    return this.#hello;
  }

  /** The verbs this guest enables. */
  get handlers(): ReadonlySet<Verb> {
    return this.#handlers;
  }

  get closed(): boolean {
    return this.#closeReason !== null;
  }

  /** Why the connection closed, or null while open. */
  get closeReason(): VsockError | null {
    return this.#closeReason;
  }

  onClose(listener: (reason: VsockError) => void): void {
    if (this.#closeReason) listener(this.#closeReason);
    else this.#closeListeners.push(listener);
  }

  /**
   * Sends one request and waits for its response. Rejects with a VsockError: `unsupported` without
   * sending when the guest did not enable the verb; `bad-args` or `wrong-instance` without sending
   * when the args are invalid or name another instance; the guest's code (remote) when it refuses;
   * `timeout` after the deadline (the connection stays open; a late answer is dropped); `closed`,
   * or the protocol error that closed it, when the connection ends first.
   */
  request<V extends Verb>(verb: V, args: VerbArgsInput<V>, options: RequestOptions = {}): Promise<VerbResult<V>> {
    if (this.#closeReason) return Promise.reject(new VsockError('closed', `connection to ${this.instanceId} is closed: ${this.#closeReason.message}`));
    if (!this.#handlers.has(verb)) {
      return Promise.reject(new VsockError('unsupported', `${this.instanceId}'s guest agent does not enable "${verb}" (it enables ${[...this.#handlers].join(', ') || 'nothing'})`));
    }
    const parsed = VerbArgs[verb].safeParse(args);
    if (!parsed.success) return Promise.reject(new VsockError('bad-args', `${verb}: ${describeZodError(parsed.error)}`));
    const target = parsed.data as { instance_id?: string; tenant_id?: string };
    if (target.instance_id !== undefined && target.instance_id !== this.instanceId) {
      return Promise.reject(new VsockError('wrong-instance', `this socket belongs to ${this.instanceId}, not ${target.instance_id}`));
    }
    if (target.tenant_id !== undefined && this.tenantId !== null && target.tenant_id !== this.tenantId) {
      return Promise.reject(new VsockError('wrong-instance', `this socket belongs to tenant ${this.tenantId}, not ${target.tenant_id}`));
    }
    const sentArgs = { ...parsed.data, instance_id: this.instanceId, ...(this.tenantId !== null ? { tenant_id: this.tenantId } : {}) };
    const id = this.#nextId++;
    const deadlineMs = options.deadlineMs ?? this.#requestDeadlineMs;
    return new Promise<VerbResult<V>>((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        this.#pending.delete(id);
        reject(new VsockError('timeout', `${verb} to ${this.instanceId}: no answer within ${deadlineMs} ms`));
      }, deadlineMs);
      this.#pending.set(id, { verb, resolve: resolve as (value: unknown) => void, reject, timer });
      try {
        this.#framed.send({ type: 'request', id, verb, args: sentArgs });
      } catch (error) {
        this.#pending.delete(id);
        this.#clock.clearTimeout(timer);
        reject(error instanceof FrameTooLargeError ? new VsockError('frame-too-large', error.message) : error);
      }
    });
  }

  /** Closes the connection; pending requests reject with `closed`. */
  close(): void {
    if (!this.#closeReason) this.#closeReason = new VsockError('closed', 'closed by the host');
    this.#framed.close();
    this.#shutdown(this.#closeReason);
  }

  #onMessage(value: unknown): void {
    const envelope = Envelope.safeParse(value);
    if (!envelope.success) return this.#protocolError('bad-frame', 'guest sent a frame that is not a protocol message');
    const type = envelope.data.type;
    if (type === 'error') {
      const frame = ErrorFrame.safeParse(value);
      const error = frame.success
        ? new VsockError(frame.data.error.code, `guest agent: ${frame.data.error.message}`, true)
        : new VsockError('bad-frame', 'guest sent a malformed error frame');
      this.#closeReason = error;
      this.#framed.close();
      return this.#shutdown(error);
    }
    if (!this.#ready) {
      if (type !== 'hello') return this.#protocolError('out-of-order', `guest sent "${type}" before its hello`);
      return this.#onHello(value);
    }
    if (type !== 'response') return this.#protocolError('out-of-order', `guest sent "${type}" after the handshake; only responses are expected`);
    const response = Response.safeParse(value);
    if (!response.success) return this.#protocolError('bad-frame', `malformed response: ${describeZodError(response.error)}`);
    const { id } = response.data;
    const pending = this.#pending.get(id);
    if (!pending) {
      // An answer after its deadline is dropped; an answer to a request never sent is a protocol error.
      if (id < this.#nextId) return;
      return this.#protocolError('out-of-order', `guest answered request ${id}, which was never sent`);
    }
    this.#pending.delete(id);
    this.#clock.clearTimeout(pending.timer);
    if (!response.data.ok) {
      const { code, message } = response.data.error;
      pending.reject(new VsockError(code, `guest agent refused ${pending.verb}: ${message}`, true));
      if (FATAL_ERROR_CODES.has(code)) {
        this.#closeReason = new VsockError(code, `guest agent closed the connection: ${message}`, true);
        this.#framed.close();
        this.#shutdown(this.#closeReason);
      }
      return;
    }
    const result = VerbResults[pending.verb].safeParse(response.data.result);
    if (!result.success) {
      pending.reject(new VsockError('bad-frame', `malformed ${pending.verb} result: ${describeZodError(result.error)}`));
      return this.#protocolError('bad-frame', `malformed ${pending.verb} result for request ${id}`);
    }
    pending.resolve(result.data);
  }

  #onHello(value: unknown): void {
    const probe = VersionProbe.safeParse(value);
    if (!probe.success) return this.#protocolError('bad-frame', 'hello without a protocol_version');
    if (probe.data.protocol_version !== PROTOCOL_VERSION) {
      return this.#protocolError('version-mismatch', `guest speaks protocol ${probe.data.protocol_version}, host speaks ${PROTOCOL_VERSION}`);
    }
    const hello = Hello.safeParse(value);
    if (!hello.success) return this.#protocolError('bad-frame', `malformed hello: ${describeZodError(hello.error)}`);
    const { instance_id, tenant_id } = hello.data;
    if (instance_id !== null && instance_id !== this.instanceId) {
      return this.#protocolError('wrong-instance', `guest on ${this.instanceId}'s socket says it is ${instance_id}`);
    }
    if (tenant_id !== null && this.tenantId !== null && tenant_id !== this.tenantId) {
      return this.#protocolError('wrong-instance', `guest on ${this.instanceId}'s socket says it belongs to tenant ${tenant_id}, not ${this.tenantId}`);
    }
    this.#hello = hello.data;
    this.#handlers = new Set(hello.data.handlers);
    this.#ready = true;
    this.#clock.clearTimeout(this.#helloTimer);
    const ack: HelloAck = { type: 'hello-ack', protocol_version: PROTOCOL_VERSION, instance_id: this.instanceId };
    this.#framed.send(ack);
    const done = this.#onHandshake;
    this.#onHandshake = null;
    done?.(null);
  }

  #protocolError(code: WireErrorCode, message: string): void {
    if (this.#closeReason) return;
    this.#closeReason = new VsockError(code, message);
    this.#framed.fail(errorFrame(code, message));
    this.#shutdown(this.#closeReason);
  }

  #shutdown(reason: VsockError): void {
    this.#closeReason ??= reason;
    this.#clock.clearTimeout(this.#helloTimer);
    const done = this.#onHandshake;
    this.#onHandshake = null;
    done?.(this.#closeReason);
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      this.#clock.clearTimeout(pending.timer);
      pending.reject(this.#closeReason.code === 'closed' ? this.#closeReason : new VsockError(this.#closeReason.code, `connection closed: ${this.#closeReason.message}`, this.#closeReason.remote));
    }
    for (const listener of this.#closeListeners.splice(0)) listener(this.#closeReason);
  }
}
