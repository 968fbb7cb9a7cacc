import type { WireErrorCode } from './protocol.ts';

/** Failures of the Firecracker `CONNECT <port>` handshake (firecracker-uds.ts). */
export type ConnectErrorCode =
  /** The VM's vsock Unix socket is missing or refuses connections: the VMM is not running. */
  | 'connect-refused'
  /** The VMM closed the connection after CONNECT: nothing in the guest listens on that port (yet). */
  | 'connect-closed'
  /** The VMM answered something other than `OK <port>\n`. */
  | 'connect-bad-reply'
  /** No answer before the deadline. */
  | 'connect-timeout';

/** Host-side outcomes that never cross the wire. */
export type LocalErrorCode = 'timeout' | 'closed';

export type VsockErrorCode = WireErrorCode | ConnectErrorCode | LocalErrorCode;

/**
 * Every failure the host-side vsock code reports. `remote` says whether the guest sent the code
 * (true) or the host decided it (false: a local refusal, a timeout, a protocol error it detected).
 */
export class VsockError extends Error {
  constructor(
    readonly code: VsockErrorCode,
    message: string,
    readonly remote = false,
  ) {
    super(message);
    this.name = 'VsockError';
  }
}

export function isVsockError(error: unknown, code?: VsockErrorCode): error is VsockError {
  return error instanceof VsockError && (code === undefined || error.code === code);
}
