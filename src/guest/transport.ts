import { chmod, lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Where the agent listens for the host: always a Unix socket. Node has no AF_VSOCK sockets, so in a
 * real guest the NixOS module (nix/modules/guest.nix) runs the agent with `--listen /run/mvm/agent.sock`
 * next to a socat unit (mvm-vsock-bridge) that listens on the role's vsock agent port and pipes each
 * host connection to that socket. In dev mode the simulator's VMM socket (vmm-socket.ts) does the
 * same for the host's `CONNECT <port>`. A native AF_VSOCK transport could slot in behind this
 * interface later; until then a numeric `--listen` is refused with that explanation.
 */
export interface GuestListener {
  /** Printable address, e.g. `unix:/run/mvm/agent.sock`. */
  readonly address: string;
  /** Stops accepting and closes open connections. */
  close(): Promise<void>;
}

export interface GuestTransport {
  listen(onConnection: (stream: Duplex) => void): Promise<GuestListener>;
}

export type ListenTarget = { kind: 'unix'; path: string } | { kind: 'vsock'; port: number };

/** `--listen` value: a decimal port means AF_VSOCK on that port; anything else is a Unix socket path. */
export function parseListenTarget(value: string): ListenTarget {
  if (/^[0-9]+$/.test(value)) {
    const port = Number(value);
    if (port < 1 || port > 0xffff_ffff) throw new Error(`vsock port ${value} is out of range`);
    return { kind: 'vsock', port };
  }
  if (value.length === 0) throw new Error('--listen needs a Unix socket path or a vsock port');
  // sun_path holds 108 bytes including the terminating NUL.
  if (Buffer.byteLength(value) > 107) throw new Error(`Unix socket path is longer than 107 bytes: ${value}`);
  return { kind: 'unix', path: value };
}

export function transportFor(target: ListenTarget): GuestTransport {
  if (target.kind === 'unix') return unixSocketTransport(target.path);
  throw new Error(`AF_VSOCK (port ${target.port}) is not available in this build of the agent (Node has no vsock sockets); listen on a Unix socket path and bridge vsock to it, as nix/modules/guest.nix does with socat`);
}

/** Removes a leftover socket file from an earlier run, but never a live socket or any other file. */
async function clearStaleSocket(file: string): Promise<void> {
  let stat;
  try {
    stat = await lstat(file);
  } catch {
    return;
  }
  if (!stat.isSocket()) throw new Error(`${file} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection({ path: file });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`another process is listening on ${file}`);
  await unlink(file);
}

export function unixSocketTransport(file: string): GuestTransport {
  return {
    async listen(onConnection) {
      await clearStaleSocket(file);
      const connections = new Set<net.Socket>();
      const server = net.createServer((socket) => {
        connections.add(socket);
        socket.once('close', () => connections.delete(socket));
        onConnection(socket);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(file, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', () => {
        // Accept errors (EMFILE and the like) must not end the agent; the host retries.
      });
      await chmod(file, 0o600);
      return {
        address: `unix:${file}`,
        async close() {
          const closed = new Promise<void>((resolve) => server.close(() => resolve()));
          for (const socket of connections) socket.destroy();
          await closed;
          await unlink(file).catch(() => {});
        },
      };
    },
  };
}
