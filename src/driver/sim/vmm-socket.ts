import { lstat, unlink } from 'node:fs/promises';
import net from 'node:net';

/**
 * Firecracker's vsock device as the host sees it, for the simulation driver's VMs and for tests:
 * - the VM's vsock Unix socket (`uds_path`) accepts host connections; the host sends
 *   `CONNECT <port>\n`; if a guest process listens on <port> the VMM answers
 *   `OK <assigned_host_port>\n` and the connection becomes a byte pipe to it; if not, it closes;
 * - a guest-initiated connection to host port P lands on the Unix socket `<uds_path>_<P>`.
 * The "guest" listeners here are Unix sockets (the guest agent's --listen path).
 */
export interface VmmSocketOptions {
  /** The VM's vsock uds_path. */
  udsPath: string;
  /** Guest listeners by vsock port: where a host's `CONNECT <port>` is forwarded. */
  guestPorts?: Record<number, string>;
  /** What `OK` reports: a Firecracker-style assigned host port (default) or the requested port. */
  okPort?: 'assigned' | 'requested';
}

const MAX_CONNECT_LINE = 32;

export class VmmSocket {
  readonly udsPath: string;
  readonly #guestPorts = new Map<number, string>();
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #okPort: 'assigned' | 'requested';
  #nextHostPort = 1_073_741_824;
  /** Every CONNECT line received, in order (for assertions). */
  readonly connectRequests: number[] = [];

  private constructor(options: VmmSocketOptions) {
    this.udsPath = options.udsPath;
    this.#okPort = options.okPort ?? 'assigned';
    for (const [port, path] of Object.entries(options.guestPorts ?? {})) this.#guestPorts.set(Number(port), path);
    this.#server = net.createServer((host) => this.#onHost(host));
  }

  /** Listens on `udsPath`, replacing a leftover socket file from a VM process that died. */
  static async start(options: VmmSocketOptions): Promise<VmmSocket> {
    const leftover = await lstat(options.udsPath).catch(() => null);
    if (leftover) {
      if (!leftover.isSocket()) throw new Error(`${options.udsPath} exists and is not a socket`);
      await unlink(options.udsPath);
    }
    const vmm = new VmmSocket(options);
    await new Promise<void>((resolve, reject) => {
      vmm.#server.once('error', reject);
      vmm.#server.listen(options.udsPath, () => resolve());
    });
    // After listening, a failing accept must not take the VM's process down with it.
    vmm.#server.on('error', () => undefined);
    return vmm;
  }

  /** A guest process starts (or stops, with null) listening on a vsock port. */
  setGuestPort(port: number, guestSocketPath: string | null): void {
    if (guestSocketPath === null) this.#guestPorts.delete(port);
    else this.#guestPorts.set(port, guestSocketPath);
  }

  /** Live piped connections. */
  get openConnections(): number {
    return [...this.#sockets].filter((s) => !s.destroyed).length;
  }

  /** A guest-initiated connection to host port `port`: lands on `<uds_path>_<port>`. */
  connectFromGuest(port: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path: `${this.udsPath}_${port}` });
      socket.once('connect', () => {
        socket.off('error', reject);
        this.#track(socket);
        resolve(socket);
      });
      // Firecracker answers the guest with VIRTIO_VSOCK_OP_RST; here the connect fails.
      socket.once('error', reject);
    });
  }

  /** Closes the socket and every connection through it. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
    await unlink(this.udsPath).catch(() => {});
  }

  #track(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => this.#sockets.delete(socket));
  }

  #onHost(host: net.Socket): void {
    this.#track(host);
    let line = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      line = Buffer.concat([line, chunk]);
      const newline = line.indexOf(0x0a);
      if (newline === -1) {
        if (line.length > MAX_CONNECT_LINE) host.destroy();
        return;
      }
      host.off('data', onData);
      host.pause();
      const match = /^CONNECT ([0-9]{1,10})$/.exec(line.subarray(0, newline).toString('latin1'));
      if (!match) return void host.destroy();
      const port = Number(match[1]);
      this.connectRequests.push(port);
      const rest = line.subarray(newline + 1);
      const guestPath = this.#guestPorts.get(port);
      if (guestPath === undefined) return void host.destroy();
      const guest = net.createConnection({ path: guestPath });
      this.#track(guest);
      guest.once('error', () => host.destroy());
      guest.once('connect', () => {
        const hostPort = this.#okPort === 'assigned' ? this.#nextHostPort++ : port;
        host.write(`OK ${hostPort}\n`);
        if (rest.length > 0) guest.write(rest);
        host.pipe(guest);
        guest.pipe(host);
        host.resume();
        // One side gone: the other gets its remaining bytes, then an end (or a reset on error).
        guest.once('close', () => host.end());
        host.once('close', () => guest.end());
        guest.once('error', () => host.destroy());
        host.once('error', () => guest.destroy());
      });
    };
    host.on('data', onData);
  }
}
