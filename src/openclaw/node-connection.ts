import { open, readFile } from 'node:fs/promises';
import { openclawServiceSpec } from './service-spec.ts';

/**
 * Whether an OpenClaw node host is connected to its gateway, judged from inside its own VM. The
 * node host has no local status endpoint (`openclaw node status` reports only the installed
 * service), so two independent local signals must agree:
 *
 * - OpenClaw's own word: since the service's last start marker, the node host's last connection
 *   event on stderr is `node host gateway connected: ws://<host>:<port>` (printed on hello-ok,
 *   i.e. after the gateway accepted its device and token), not a later `... gateway closed` or
 *   `... gateway connect failed`;
 * - the kernel's: a TCP connection to that gateway address and port is ESTABLISHED in this VM's
 *   network namespace (/proc/net/tcp, tcp6), so a gateway that died without a close frame is not
 *   taken for connected.
 */

export interface GatewayEndpoint {
  host: string;
  port: number;
}

export interface NodeConnection {
  connected: boolean;
  /** What is missing, for the instance's status reason; null when connected. */
  detail: string | null;
}

/** Only the tail matters: the last start marker and the connection events after it. */
const TAIL_BYTES = 256 * 1024;

const EVENT = /^node host gateway (connected|closed|connect failed)\b(.*)$/;

async function readTail(file: string): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return buffer.toString('utf8');
  } finally {
    await handle.close();
  }
}

/** The last connection event the node host printed since its latest start, or null if none. */
export function lastConnectionEvent(output: string): { event: 'connected' | 'closed' | 'connect failed'; rest: string } | null {
  const lines = output.split('\n');
  const start = lines.lastIndexOf(openclawServiceSpec.start_marker);
  for (let i = lines.length - 1; i > start; i--) {
    const match = EVENT.exec(lines[i]!.trim());
    if (match) return { event: match[1] as 'connected' | 'closed' | 'connect failed', rest: match[2]!.trim() };
  }
  return null;
}

/** A /proc/net/tcp address ("0100007F:4965", or 32 hex digits for tcp6) as "a.b.c.d" (IPv4 or v4-mapped only) and port. */
function decodeAddress(field: string): { host: string | null; port: number } {
  const [hex, portHex] = field.split(':') as [string, string];
  const port = parseInt(portHex, 16);
  const v4 = hex.length === 8 ? hex : hex.length === 32 && /^0{16}FFFF0{4}/i.test(hex) ? hex.slice(24) : null;
  if (v4 === null) return { host: null, port };
  // The kernel prints the 32-bit address in host byte order (little-endian here).
  const bytes = [6, 4, 2, 0].map((i) => parseInt(v4.slice(i, i + 2), 16));
  return { host: bytes.join('.'), port };
}

/** True when a TCP connection to the endpoint is ESTABLISHED in the caller's network namespace. */
export async function tcpEstablishedTo(endpoint: GatewayEndpoint, tables: readonly string[] = ['/proc/net/tcp', '/proc/net/tcp6']): Promise<boolean> {
  for (const table of tables) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // fields: sl, local_address, rem_address, st (01 = ESTABLISHED)
      if (fields.length < 4 || fields[3] !== '01') continue;
      const remote = decodeAddress(fields[2]!);
      if (remote.host === endpoint.host && remote.port === endpoint.port) return true;
    }
  }
  return false;
}

/** Whether the node host whose output is in `outputFile` is connected to `gateway`. */
export async function nodeConnection(outputFile: string, gateway: GatewayEndpoint): Promise<NodeConnection> {
  const where = `ws://${gateway.host}:${gateway.port}`;
  let output: string;
  try {
    output = await readTail(outputFile);
  } catch (error) {
    return { connected: false, detail: `no node host output to read at ${outputFile} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})` };
  }
  const last = lastConnectionEvent(output);
  if (last === null) return { connected: false, detail: `the node host has not reached its gateway ${where} yet` };
  if (last.event !== 'connected') return { connected: false, detail: `the node host is not connected to ${where}: gateway ${last.event}${last.rest ? ` ${last.rest}` : ''}`.slice(0, 600) };
  if (!new RegExp(`^: ${where.replace(/[.]/g, '\\.')}(/|$)`).test(last.rest)) return { connected: false, detail: `the node host is connected to ${last.rest.slice(2)}, not to its gateway ${where}` };
  if (!(await tcpEstablishedTo(gateway))) return { connected: false, detail: `the node host says connected, but no TCP connection to ${gateway.host}:${gateway.port} is established` };
  return { connected: true, detail: null };
}
