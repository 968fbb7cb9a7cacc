import { randomUUID } from 'node:crypto';
import { WebSocket } from 'ws';
import { z } from 'zod';
import type { Clock } from '../common/clock.ts';
import { deviceAuthPayload, type DeviceIdentity } from './device-identity.ts';
import { OpenClawGatewayError } from './gateway-error.ts';

/**
 * A minimal client of the OpenClaw Gateway's WebSocket protocol (version 4): the challenge,
 * a signed `connect`, `hello-ok`, then request/response frames. Every wait is bounded by an
 * absolute deadline on the injected clock; nothing here retries (callers own the policy).
 */

export const PROTOCOL_VERSION = 4;

const ErrorShape = z.object({
  code: z.string(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
  retryable: z.boolean().optional(),
  retryAfterMs: z.number().optional(),
});

const Frame = z.discriminatedUnion('type', [
  z.object({ type: z.literal('event'), event: z.string(), payload: z.unknown().optional(), seq: z.number().optional() }),
  z.object({ type: z.literal('res'), id: z.string(), ok: z.boolean(), payload: z.unknown().optional(), error: ErrorShape.optional() }),
  z.object({ type: z.literal('req'), id: z.string(), method: z.string(), params: z.unknown().optional() }),
]);
type Frame = z.infer<typeof Frame>;

const Challenge = z.object({ nonce: z.string().min(1), ts: z.number() });

export const HelloOk = z.object({
  type: z.literal('hello-ok'),
  protocol: z.number(),
  server: z.object({ version: z.string(), connId: z.string().optional() }).loose(),
  auth: z
    .object({ role: z.string().optional(), scopes: z.array(z.string()).optional(), method: z.string().optional(), deviceToken: z.string().optional() })
    .loose()
    .optional(),
  policy: z.object({ tickIntervalMs: z.number().optional() }).loose().optional(),
}).loose();
export type HelloOk = z.infer<typeof HelloOk>;

export interface ConnectOptions {
  /** ws://host:port of the gateway. */
  url: string;
  clock: Clock;
  /** Absolute deadline (clock ms) for the socket, the challenge and hello-ok together. */
  deadline: number;
  /** The shared gateway token; omitted when reconnecting with the identity's device token. */
  token?: string | undefined;
  role: 'operator' | 'node';
  scopes: readonly string[];
  /** Signs the challenge; null connects without a device (then no device token is issued). */
  identity: DeviceIdentity | null;
  clientId?: string;
  clientMode?: string;
  displayName?: string;
}

export interface ConnectTimings {
  /** Socket open after the connect call started. */
  open_ms: number;
  /** hello-ok after the socket opened. */
  hello_ok_ms: number;
}

type Pending = { resolve: (payload: unknown) => void; reject: (error: Error) => void; timer: unknown; method: string };

export class GatewayConnection {
  readonly #pending = new Map<string, Pending>();
  readonly #listeners = new Set<(event: string, payload: unknown) => void>();
  #closed: Error | null = null;

  constructor(
    private readonly ws: WebSocket,
    private readonly clock: Clock,
    readonly hello: HelloOk,
    readonly timings: ConnectTimings,
  ) {
    ws.on('message', (data) => this.#onFrame(data.toString()));
    ws.on('close', (code, reason) => this.#fail(new OpenClawGatewayError('CLOSED', null, `gateway closed the connection (${code} ${reason.toString()})`, true)));
    ws.on('error', (error) => this.#fail(new OpenClawGatewayError('UNREACHABLE', null, `gateway connection failed: ${error.message}`, true)));
  }

  #onFrame(text: string): void {
    const frame = Frame.safeParse(JSON.parse(text));
    if (!frame.success) return;
    const f = frame.data;
    if (f.type === 'event') this.#listeners.forEach((l) => l(f.event, f.payload));
    if (f.type !== 'res') return;
    const pending = this.#pending.get(f.id);
    if (pending === undefined) return;
    this.#pending.delete(f.id);
    this.clock.clearTimeout(pending.timer);
    if (f.ok) pending.resolve(f.payload);
    else pending.reject(OpenClawGatewayError.fromShape(f.error, `${pending.method} failed`));
  }

  #fail(error: Error): void {
    if (this.#closed !== null) return;
    this.#closed = error;
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      this.clock.clearTimeout(pending.timer);
      pending.reject(error);
    }
  }

  onEvent(listener: (event: string, payload: unknown) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** One RPC; resolves with its payload or rejects with the gateway's error, by `deadline` at the latest. */
  request(method: string, params: unknown, deadline: number): Promise<unknown> {
    if (this.#closed !== null) return Promise.reject(this.#closed);
    const id = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.#pending.delete(id);
        reject(new OpenClawGatewayError('TIMEOUT', null, `${method}: no answer from the gateway before the deadline`, true));
      }, Math.max(0, deadline - this.clock.now()));
      this.#pending.set(id, { resolve, reject, timer, method });
      this.ws.send(JSON.stringify({ type: 'req', id, method, params }));
    });
  }

  close(): void {
    this.#fail(new OpenClawGatewayError('CLOSED', null, 'connection closed by this client', false));
    this.ws.terminate();
  }
}

/** Opens a socket, answers the challenge and returns the connection once hello-ok arrives. */
export function connectGateway(options: ConnectOptions): Promise<GatewayConnection> {
  const { clock } = options;
  const started = clock.now();
  const clientId = options.clientId ?? 'cli';
  const clientMode = options.clientMode ?? 'cli';
  const platform = 'linux';
  return new Promise((resolve, reject) => {
    let opened = started;
    let settled = false;
    const ws = new WebSocket(options.url, { handshakeTimeout: Math.max(1, options.deadline - started) });
    const resolveConnection = (connection: GatewayConnection) => resolve(connection);
    const finish = (error: Error | null) => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(timer);
      ws.off('message', onHandshakeFrame);
      ws.off('close', onHandshakeClose);
      if (error !== null) {
        ws.on('error', () => undefined);
        ws.terminate();
        reject(error);
      }
    };
    const timer = clock.setTimeout(() => finish(new OpenClawGatewayError('TIMEOUT', null, `no hello-ok from ${options.url} before the deadline`, true)), Math.max(0, options.deadline - started));
    ws.on('open', () => {
      opened = clock.now();
    });
    ws.on('error', (error) => finish(new OpenClawGatewayError('UNREACHABLE', null, `cannot reach the gateway at ${options.url}: ${error.message}`, true)));
    const onHandshakeClose = (code: number, reason: Buffer) => finish(new OpenClawGatewayError('CLOSED', null, `gateway at ${options.url} closed the connection during the handshake (${code} ${reason.toString()})`, true));
    ws.on('close', onHandshakeClose);
    const onHandshakeFrame = (data: WebSocket.RawData) => {
      const parsed = Frame.safeParse(JSON.parse(data.toString()));
      if (!parsed.success) return;
      const frame: Frame = parsed.data;
      if (frame.type === 'event' && frame.event === 'connect.challenge') {
        const challenge = Challenge.safeParse(frame.payload);
        if (!challenge.success) return finish(new OpenClawGatewayError('PROTOCOL', null, 'connect.challenge without nonce and ts', false));
        const deviceToken = options.identity?.deviceToken(options.url);
        // A device token, where the gateway issued one, proves this device without the shared token.
        const authToken = options.token ?? deviceToken ?? '';
        const auth = options.token !== undefined ? { token: options.token } : deviceToken !== undefined ? { deviceToken } : undefined;
        const { nonce, ts } = challenge.data;
        const device =
          options.identity === null
            ? undefined
            : {
                id: options.identity.deviceId,
                publicKey: options.identity.publicKey,
                signature: options.identity.sign(deviceAuthPayload({ deviceId: options.identity.deviceId, clientId, clientMode, role: options.role, scopes: options.scopes, signedAt: ts, token: authToken, nonce, platform, deviceFamily: '' })),
                signedAt: ts,
                nonce,
              };
        ws.send(
          JSON.stringify({
            type: 'req',
            id: 'connect',
            method: 'connect',
            params: {
              minProtocol: PROTOCOL_VERSION,
              maxProtocol: PROTOCOL_VERSION,
              client: { id: clientId, version: '0.1.0', platform, mode: clientMode, ...(options.displayName ? { displayName: options.displayName } : {}) },
              role: options.role,
              scopes: [...options.scopes],
              caps: [],
              ...(auth ? { auth } : {}),
              ...(device ? { device } : {}),
            },
          }),
        );
        return;
      }
      if (frame.type === 'res' && frame.id === 'connect') {
        if (!frame.ok) return finish(OpenClawGatewayError.fromShape(frame.error, 'connect refused'));
        const hello = HelloOk.safeParse(frame.payload);
        if (!hello.success) return finish(new OpenClawGatewayError('PROTOCOL', null, `connect answered without hello-ok: ${hello.error.issues[0]?.message}`, false));
        const deviceToken = hello.data.auth?.deviceToken;
        if (deviceToken !== undefined) options.identity?.rememberDeviceToken(options.url, deviceToken);
        const timings = { open_ms: opened - started, hello_ok_ms: clock.now() - opened };
        finish(null);
        resolveConnection(new GatewayConnection(ws, clock, hello.data, timings));
      }
    };
    ws.on('message', onHandshakeFrame);
  });
}
