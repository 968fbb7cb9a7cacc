import { FRAME_HEADER_BYTES, MAX_FRAME_BYTES } from './protocol.ts';

/**
 * Length-prefixed JSON frames: a 4-byte big-endian body length, then the body, UTF-8 JSON.
 * The decoder is incremental (a chunk may hold part of a frame or several frames) and judges a
 * frame's size from its length prefix alone, so an oversized frame is refused before any of its
 * body is buffered. After its first error the decoder is failed and ignores further input: the
 * connection is to be closed.
 */

export type DecodeErrorCode = 'bad-frame' | 'frame-too-large';
export type Decoded = { kind: 'message'; value: unknown } | { kind: 'error'; code: DecodeErrorCode; message: string };

export class FrameTooLargeError extends Error {
  readonly code = 'frame-too-large';
  constructor(
    readonly size: number,
    readonly max: number,
  ) {
    super(`frame of ${size} bytes exceeds the maximum of ${max} bytes`);
    this.name = 'FrameTooLargeError';
  }
}

/** One message as a frame. Throws FrameTooLargeError when its JSON is larger than `maxFrameBytes`. */
export function encodeFrame(message: unknown, maxFrameBytes = MAX_FRAME_BYTES): Buffer {
  const json = JSON.stringify(message);
  if (json === undefined) throw new TypeError('frame message is not JSON-serializable');
  const body = Buffer.from(json, 'utf8');
  if (body.length > maxFrameBytes) throw new FrameTooLargeError(body.length, maxFrameBytes);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

/** A raw frame around arbitrary bytes (tests use it to send what encodeFrame would refuse). */
export function rawFrame(body: Uint8Array, declaredLength = body.length): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(declaredLength, 0);
  return Buffer.concat([header, body]);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export class FrameDecoder {
  #chunks: Buffer[] = [];
  #length = 0;
  #expected: number | null = null;
  #failed = false;

  constructor(readonly maxFrameBytes = MAX_FRAME_BYTES) {}

  /** Bytes held while waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.#length;
  }

  get failed(): boolean {
    return this.#failed;
  }

  push(chunk: Uint8Array): Decoded[] {
    if (this.#failed || chunk.length === 0) return [];
    this.#chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.#length += chunk.length;
    const out: Decoded[] = [];
    for (;;) {
      if (this.#expected === null) {
        if (this.#length < FRAME_HEADER_BYTES) break;
        const size = this.#take(FRAME_HEADER_BYTES).readUInt32BE(0);
        if (size > this.maxFrameBytes) {
          out.push(this.#fail('frame-too-large', `frame length ${size} exceeds the maximum of ${this.maxFrameBytes} bytes`));
          break;
        }
        if (size === 0) {
          out.push(this.#fail('bad-frame', 'empty frame'));
          break;
        }
        this.#expected = size;
      }
      if (this.#length < this.#expected) break;
      const body = this.#take(this.#expected);
      this.#expected = null;
      let value: unknown;
      try {
        value = JSON.parse(utf8.decode(body));
      } catch (error) {
        out.push(this.#fail('bad-frame', `frame is not UTF-8 JSON: ${(error as Error).message}`));
        break;
      }
      out.push({ kind: 'message', value });
    }
    return out;
  }

  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#length);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#length = rest.length;
    return all.subarray(0, n);
  }

  #fail(code: DecodeErrorCode, message: string): Decoded {
    this.#failed = true;
    this.#chunks = [];
    this.#length = 0;
    this.#expected = null;
    return { kind: 'error', code, message };
  }
}
