import type { Duplex } from 'node:stream';
import { type Clock, systemClock } from '../common/clock.ts';
import { type DecodeErrorCode, FrameDecoder, encodeFrame } from './frame-codec.ts';
import { type ErrorFrame, MAX_FRAME_BYTES } from './protocol.ts';

/**
 * A byte stream carrying frames, used by both sides. It decodes incoming frames, encodes outgoing
 * ones, and closes the way the protocol wants: an error frame, then end, then destroy if the peer
 * has not closed within a grace period. Socket errors (resets, broken pipes) only close it.
 */
export interface FramedSocketHandlers {
  onMessage(value: unknown): void;
  onDecodeError(code: DecodeErrorCode, message: string): void;
  onClose(): void;
}

export interface FramedSocketOptions {
  clock?: Clock;
  maxFrameBytes?: number;
  /** After an error frame or close(), destroy the socket if the peer has not closed by then. */
  closeGraceMs?: number;
}

export class FramedSocket {
  readonly #socket: Duplex;
  readonly #decoder: FrameDecoder;
  readonly #clock: Clock;
  readonly #graceMs: number;
  readonly maxFrameBytes: number;
  #closing = false;
  #closed = false;
  #graceTimer: unknown = null;

  constructor(socket: Duplex, handlers: FramedSocketHandlers, options: FramedSocketOptions = {}) {
    this.#socket = socket;
    this.#clock = options.clock ?? systemClock;
    this.#graceMs = options.closeGraceMs ?? 1000;
    this.maxFrameBytes = options.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.#decoder = new FrameDecoder(this.maxFrameBytes);
    socket.on('error', () => {
      // A reset or broken pipe ends this connection and nothing else; 'close' follows.
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#closing = true;
      if (this.#graceTimer !== null) this.#clock.clearTimeout(this.#graceTimer);
      handlers.onClose();
    });
    socket.on('data', (chunk: Buffer) => {
      for (const item of this.#decoder.push(chunk)) {
        if (this.#closing) return;
        if (item.kind === 'message') handlers.onMessage(item.value);
        else handlers.onDecodeError(item.code, item.message);
      }
    });
    // A socket handed over paused (firecracker-uds.ts pauses it to keep bytes after `OK`) flows again.
    socket.resume();
  }

  /** True once close, fail or the peer has begun closing: no more messages are delivered or sent. */
  get closing(): boolean {
    return this.#closing;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends one message; false when the connection is closing. Throws FrameTooLargeError. */
  send(message: unknown): boolean {
    if (this.#closing) return false;
    const frame = encodeFrame(message, this.maxFrameBytes);
    this.#socket.write(frame);
    return true;
  }

  /** Sends a fatal error frame, then closes. */
  fail(frame: ErrorFrame): void {
    if (this.#closing) return;
    this.#socket.write(encodeFrame(frame, this.maxFrameBytes));
    this.close();
  }

  /** Ends the connection; destroys it if the peer does not close within the grace period. */
  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#socket.end();
    this.#graceTimer = this.#clock.setTimeout(() => this.#socket.destroy(), this.#graceMs);
  }

  destroy(): void {
    this.#closing = true;
    this.#socket.destroy();
  }
}
