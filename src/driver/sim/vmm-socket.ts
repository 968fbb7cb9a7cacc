import { lstat, unlink } from 'node:fs/promises';
import net from 'node:net';

/**
 * The simulation driver's stand-in for Firecracker's vsock device, host side (docs/vsock.md),
 * ported from test/vsock/fake-vmm-socket.ts: the VM's vsock Unix socket (`uds_path`) accepts host
 * connections; the host sends `CONNECT <port>\n`; when a guest listener is registered for <port>
 * the VMM answers `OK <assigned_host_port>\n` and the connection becomes a byte pipe to it,
 * otherwise it closes.
 */
const MAX_CONNECT_LINE = 32;

export class SimVmmSocket {
  readonly udsPath: string;
  readonly #guestPorts: Map<number, string>;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #nextHostPort = 1_073_741_824;

  private constructor(udsPath: string, guestPorts: Map<number, string>) {
    this.udsPath = udsPath;
    this.#guestPorts = guestPorts;
    this.#server = net.createServer((host) => this.#onHost(host));
    this.#server.on('error', () => {});
  }

  /** Listens on `udsPath`, replacing a leftover socket file from a VM process that died. */
  static async start(udsPath: string, guestPorts: Record<number, string>): Promise<SimVmmSocket> {
    const stat = await lstat(udsPath).catch(() => null);
    if (stat) {
      if (!stat.isSocket()) throw new Error(`${udsPath} exists and is not a socket`);
      await unlink(udsPath);
    }
    const vmm = new SimVmmSocket(udsPath, new Map(Object.entries(guestPorts).map(([port, path]) => [Number(port), path])));
    await new Promise<void>((resolve, reject) => {
      vmm.#server.once('error', reject);
      vmm.#server.listen(udsPath, () => {
        vmm.#server.off('error', reject);
        resolve();
      });
    });
    return vmm;
  }

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
      const rest = line.subarray(newline + 1);
      const guestPath = this.#guestPorts.get(Number(match[1]));
      if (guestPath === undefined) return void host.destroy();
      const guest = net.createConnection({ path: guestPath });
      this.#track(guest);
      guest.once('error', () => host.destroy());
      guest.once('connect', () => {
        host.write(`OK ${this.#nextHostPort++}\n`);
        if (rest.length > 0) guest.write(rest);
        host.pipe(guest);
        guest.pipe(host);
        host.resume();
        guest.once('close', () => host.end());
        host.once('close', () => guest.end());
        guest.once('error', () => host.destroy());
        host.once('error', () => guest.destroy());
      });
    };
    host.on('data', onData);
  }
}
