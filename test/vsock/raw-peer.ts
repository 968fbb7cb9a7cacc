import type net from 'node:net';
import { connectFirecrackerVsock } from '../../src/vsock/firecracker-uds.ts';
import { FrameDecoder, encodeFrame } from '../../src/vsock/frame-codec.ts';

/**
 * One end of a vsock connection driven by hand, frame by frame: the test plays a misbehaving host
 * (against the real agent) or a misbehaving guest (against the host client).
 */
export class RawPeer {
  readonly socket: net.Socket;
  readonly #decoder = new FrameDecoder(Number.MAX_SAFE_INTEGER);
  readonly #queue: unknown[] = [];
  readonly #waiters: { resolve(value: unknown): void; reject(error: Error): void }[] = [];
  #closed = false;
  readonly closed: Promise<void>;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('error', () => {});
    this.closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => {
      this.#closed = true;
      for (const waiter of this.#waiters.splice(0)) waiter.reject(new Error('connection closed before the next frame'));
    });
    socket.on('data', (chunk: Buffer) => {
      for (const item of this.#decoder.push(chunk)) {
        const value = item.kind === 'message' ? item.value : { undecodable: item.code };
        const waiter = this.#waiters.shift();
        if (waiter) waiter.resolve(value);
        else this.#queue.push(value);
      }
    });
    socket.resume();
  }

  /** Through a (fake) VMM's vsock socket: `CONNECT <port>`, then raw frames. */
  static async connect(udsPath: string, port: number): Promise<RawPeer> {
    const { socket } = await connectFirecrackerVsock({ udsPath, port, deadlineMs: 2000 });
    return new RawPeer(socket);
  }

  send(message: unknown): void {
    this.socket.write(encodeFrame(message, Number.MAX_SAFE_INTEGER));
  }

  sendBytes(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The next frame from the other side (rejects if the connection closes first, or after `timeoutMs`). */
  next(timeoutMs = 3000): Promise<any> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#closed) return Promise.reject(new Error('connection closed before the next frame'));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (value: unknown) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`no frame within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** Resolves when the other side has closed the connection; rejects after `timeoutMs`. */
  async waitClosed(timeoutMs = 3000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.closed,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
