import net from 'node:net';
import { type Clock, systemClock } from '../common/clock.ts';
import { VsockError } from './errors.ts';

/**
 * Host-initiated vsock connections, Firecracker's way (docs/vsock.md): connect to the VM's vsock
 * Unix socket, send `CONNECT <port>\n`, and read one line. `OK <assigned_host_port>\n` means a
 * guest process listening on <port> accepted; from then on the socket is a plain byte stream.
 * If nothing listens on <port>, the VMM closes the connection. The dev-mode simulator serves the
 * same behaviour, so this code runs unchanged against real Firecracker.
 */

export interface VsockConnectOptions {
  /** The VM's vsock `uds_path`. */
  udsPath: string;
  /** The guest port (the role's `vsock.agent_port`). */
  port: number;
  /** Give up after this long (connect and the `OK` line together). */
  deadlineMs?: number;
  clock?: Clock;
}

export interface VsockConnection {
  /** Paused, positioned just after the `OK` line (bytes that came with it are kept). */
  socket: net.Socket;
  /** The port the VMM reported in `OK <port>`; Firecracker assigns it on the host side. */
  hostPort: number;
}

/** Longest acceptable reply line, newline included ("OK 4294967295\n" is 14 bytes). */
const MAX_REPLY_BYTES = 32;
const MAX_PORT = 0xffff_ffff;

export function connectFirecrackerVsock(options: VsockConnectOptions): Promise<VsockConnection> {
  const { udsPath, port } = options;
  const clock = options.clock ?? systemClock;
  const deadlineMs = options.deadlineMs ?? 2000;
  if (!Number.isInteger(port) || port < 1 || port > MAX_PORT) {
    return Promise.reject(new VsockError('connect-refused', `vsock port must be an integer 1..${MAX_PORT}, got ${port}`));
  }
  return new Promise<VsockConnection>((resolve, reject) => {
    const socket = net.createConnection({ path: udsPath });
    let reply = Buffer.alloc(0);
    let settled = false;
    const timer = clock.setTimeout(() => finish(new VsockError('connect-timeout', `no "OK" from ${udsPath} for port ${port} within ${deadlineMs} ms`)), deadlineMs);

    function finish(outcome: VsockError | VsockConnection) {
      if (settled) return;
      settled = true;
      clock.clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      // Keep an error listener: a reset between here and the consumer attaching its own must not
      // become an unhandled 'error' event. 'close' still tells the consumer the connection ended.
      socket.on('error', () => {});
      if (outcome instanceof VsockError) {
        socket.destroy();
        reject(outcome);
      } else {
        resolve(outcome);
      }
    }
    function onError(error: NodeJS.ErrnoException) {
      const refused = error.code === 'ENOENT' || error.code === 'ECONNREFUSED' || error.code === 'ENOTSOCK';
      finish(new VsockError(refused ? 'connect-refused' : 'connect-closed', `vsock socket ${udsPath}: ${error.message}`));
    }
    function onClose() {
      finish(new VsockError('connect-closed', `the VMM closed ${udsPath} after CONNECT ${port}: nothing listens on guest port ${port}`));
    }
    function onData(chunk: Buffer) {
      reply = Buffer.concat([reply, chunk]);
      const newline = reply.indexOf(0x0a);
      if (newline === -1) {
        if (reply.length >= MAX_REPLY_BYTES) finish(new VsockError('connect-bad-reply', `no newline in the first ${reply.length} bytes of the VMM's reply`));
        return;
      }
      if (newline + 1 > MAX_REPLY_BYTES) {
        finish(new VsockError('connect-bad-reply', `the VMM's reply line is longer than ${MAX_REPLY_BYTES} bytes`));
        return;
      }
      const line = reply.subarray(0, newline).toString('latin1');
      const match = /^OK ([0-9]{1,10})$/.exec(line);
      const hostPort = match ? Number(match[1]) : NaN;
      if (!match || hostPort > MAX_PORT) {
        finish(new VsockError('connect-bad-reply', `expected "OK <port>" from the VMM, got ${JSON.stringify(line.slice(0, MAX_REPLY_BYTES))}`));
        return;
      }
      // Keep whatever followed the line (the guest's hello may arrive in the same chunk).
      socket.pause();
      const rest = reply.subarray(newline + 1);
      if (rest.length > 0) socket.unshift(rest);
      finish({ socket, hostPort });
    }

    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('data', onData);
    socket.once('connect', () => socket.write(`CONNECT ${port}\n`));
  });
}

export interface VsockRetryOptions extends VsockConnectOptions {
  /** Pause between attempts. */
  retryIntervalMs?: number;
}

/**
 * Connects, retrying while the VMM is not there yet (`connect-refused`) or the guest agent does not
 * listen yet (`connect-closed`), until `deadlineMs` has passed in total. Other errors are final.
 */
export async function connectFirecrackerVsockWithRetry(options: VsockRetryOptions): Promise<VsockConnection> {
  const clock = options.clock ?? systemClock;
  const deadlineMs = options.deadlineMs ?? 10_000;
  const interval = options.retryIntervalMs ?? 100;
  const giveUpAt = clock.now() + deadlineMs;
  for (;;) {
    const remaining = giveUpAt - clock.now();
    try {
      return await connectFirecrackerVsock({ ...options, clock, deadlineMs: Math.max(1, remaining) });
    } catch (error) {
      const retriable = error instanceof VsockError && (error.code === 'connect-refused' || error.code === 'connect-closed');
      if (!retriable || clock.now() + interval >= giveUpAt) throw error;
      await new Promise<void>((resolve) => clock.setTimeout(resolve, interval));
    }
  }
}
