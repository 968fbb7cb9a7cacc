import type { Duplex } from 'node:stream';
import { FrameTooLargeError } from '../vsock/frame-codec.ts';
import { FramedSocket } from '../vsock/framed-socket.ts';
import {
  Envelope,
  FATAL_ERROR_CODES,
  GUEST_SENDS,
  HelloAck,
  PROTOCOL_VERSION,
  RequestEnvelope,
  type Response,
  VerbArgs,
  VersionProbe,
  type WireErrorCode,
  describeZodError,
  errorFrame,
  errorResponse,
  isVerb,
} from '../vsock/protocol.ts';
import { AgentError } from './agent-error.ts';
import type { GuestAgent } from './guest-agent.ts';

/**
 * One host connection, guest side. The agent speaks first (hello); the host must answer with
 * hello-ack before any request. Every problem with a frame ends in a typed error, never a throw:
 * fatal ones (bad-frame, frame-too-large, out-of-order, version-mismatch, wrong-instance) are
 * followed by closing this connection; the agent keeps serving others.
 */
export class GuestSession {
  readonly #agent: GuestAgent;
  readonly #framed: FramedSocket;
  #state: 'starting' | 'awaiting-ack' | 'ready' = 'starting';
  /** The instance id the host bound to this socket (its hello-ack). */
  #boundInstance: string | null = null;

  constructor(agent: GuestAgent, stream: Duplex, onClosed: () => void) {
    this.#agent = agent;
    this.#framed = new FramedSocket(
      stream,
      {
        onMessage: (value) => this.#onMessage(value),
        onDecodeError: (code, message) => this.#fail(code, message, null),
        onClose: onClosed,
      },
      { clock: agent.clock },
    );
  }

  /** Sends the hello; from then on the host may acknowledge. */
  start(): void {
    if (this.#framed.closing) return;
    this.#framed.send(this.#agent.hello());
    this.#state = 'awaiting-ack';
  }

  destroy(): void {
    this.#framed.destroy();
  }

  #onMessage(value: unknown): void {
    const envelope = Envelope.safeParse(value);
    if (!envelope.success) return this.#fail('bad-frame', 'frame is not a protocol message (no "type")', null);
    const type = envelope.data.type;
    if (type === 'error') {
      this.#agent.log.info({ frame: value }, 'host closed the connection with an error');
      return this.#framed.close();
    }
    if (type === 'hello-ack') {
      if (this.#state !== 'awaiting-ack') {
        return this.#fail('out-of-order', this.#state === 'starting' ? "hello-ack before the agent's hello" : 'a second hello-ack', null);
      }
      return this.#onHelloAck(value);
    }
    if (type === 'request') {
      if (this.#state !== 'ready') return this.#fail('out-of-order', 'request before the handshake (hello, then hello-ack) finished', requestIdOf(value));
      return this.#onRequest(value);
    }
    if ((GUEST_SENDS as readonly string[]).includes(type)) return this.#fail('out-of-order', `"${type}" is sent by the guest, not by the host`, null);
    return this.#fail('bad-frame', `unknown message type ${JSON.stringify(type.slice(0, 64))}`, null);
  }

  #onHelloAck(value: unknown): void {
    const probe = VersionProbe.safeParse(value);
    if (!probe.success) return this.#fail('bad-frame', 'hello-ack without a protocol_version', null);
    if (probe.data.protocol_version !== PROTOCOL_VERSION) {
      return this.#fail('version-mismatch', `host speaks protocol ${probe.data.protocol_version}, this agent speaks ${PROTOCOL_VERSION}`, null);
    }
    const ack = HelloAck.safeParse(value);
    if (!ack.success) return this.#fail('bad-frame', `malformed hello-ack: ${describeZodError(ack.error)}`, null);
    const identity = this.#agent.identity;
    if (identity && ack.data.instance_id !== identity.instance_id) {
      return this.#fail('wrong-instance', `this socket belongs to ${identity.instance_id}, not ${ack.data.instance_id}`, null);
    }
    this.#boundInstance = ack.data.instance_id;
    this.#state = 'ready';
  }

  #onRequest(value: unknown): void {
    const envelope = RequestEnvelope.safeParse(value);
    if (!envelope.success) return this.#fail('bad-frame', `malformed request: ${describeZodError(envelope.error)}`, requestIdOf(value));
    const { id, verb, args } = envelope.data;
    const handlers = this.#agent.handlers;
    if (!isVerb(verb) || !handlers.has(verb)) {
      return this.#respondError(id, 'unsupported', `"${verb.slice(0, 64)}" is not enabled for this guest (it answers ${[...handlers].join(', ')})`);
    }
    const parsed = VerbArgs[verb].safeParse(args);
    if (!parsed.success) return this.#respondError(id, 'bad-args', `${verb}: ${describeZodError(parsed.error)}`);
    const target = parsed.data as { instance_id?: string; tenant_id?: string };
    const identity = this.#agent.identity;
    const instance = identity?.instance_id ?? this.#boundInstance;
    if (target.instance_id !== undefined && target.instance_id !== instance) {
      return this.#respondError(id, 'wrong-instance', `this socket belongs to ${instance}, not ${target.instance_id}`);
    }
    if (target.tenant_id !== undefined && identity && target.tenant_id !== identity.tenant_id) {
      return this.#respondError(id, 'wrong-instance', `this socket belongs to tenant ${identity.tenant_id}, not ${target.tenant_id}`);
    }
    this.#agent.run(verb, parsed.data).then(
      (result) => this.#respond({ type: 'response', id, ok: true, result }),
      (error: unknown) => {
        if (error instanceof AgentError) return this.#respondError(id, error.code, error.message);
        this.#agent.log.warn({ verb, error: String(error) }, 'handler failed');
        return this.#respondError(id, 'internal', `${verb} failed: ${(error as Error)?.message ?? String(error)}`);
      },
    );
  }

  #respond(response: Response): void {
    try {
      this.#framed.send(response);
    } catch (error) {
      // An answer that cannot be framed (too large, not serializable) becomes a typed error, not a crash.
      const message = error instanceof FrameTooLargeError ? `the answer (${error.size} bytes) exceeds the frame limit` : `the answer could not be encoded: ${String(error)}`;
      this.#agent.log.warn({ id: response.id, message }, 'answer not sent');
      this.#framed.send(errorResponse(response.id, 'internal', message));
    }
  }

  #respondError(id: number, code: WireErrorCode, message: string): void {
    this.#respond(errorResponse(id, code, message));
    if (FATAL_ERROR_CODES.has(code)) {
      this.#agent.log.warn({ code, id, message }, 'refused a request; closing the connection');
      this.#framed.close();
    }
  }

  #fail(code: WireErrorCode, message: string, id: number | null): void {
    this.#agent.log.warn({ code, id, message }, 'protocol error; closing the connection');
    this.#framed.fail(errorFrame(code, message, id));
  }
}

function requestIdOf(value: unknown): number | null {
  const id = (value as { id?: unknown } | null)?.id;
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 1 ? id : null;
}
