import { randomBytes } from 'node:crypto';
import { execa, type ResultPromise } from 'execa';

/**
 * Network namespaces for the isolation tests, as root. Every name carries a per-run random tag so
 * parallel runs never collide, and `cleanup()` deletes every namespace and process it made.
 */

export function requireRootAndTools(): void {
  if (process.getuid?.() !== 0) throw new Error('the network isolation tests need root (network namespaces, nft); run them as root, as CI does');
}

export async function assertTools(): Promise<void> {
  requireRootAndTools();
  for (const tool of ['ip', 'nft', 'ping', 'unshare']) {
    const found = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
    if (found.exitCode !== 0) throw new Error(`${tool} is not installed; the network isolation tests need it (apt-get install iproute2 nftables iputils-ping util-linux)`);
  }
}

export async function sh(command: string, args: string[], input?: string): Promise<string> {
  const result = await execa(command, args, { input: input ?? '', reject: false });
  if (result.exitCode !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.exitCode}: ${String(result.stderr)}`);
  return String(result.stdout);
}

/** A Node script run with `node -e` inside a namespace: a TCP server answering its name on each port. */
const SERVER = `
const net = require('node:net');
const [name, ...ports] = process.argv.slice(1);
let open = 0;
for (const port of ports) {
  net.createServer((s) => { s.end(name + ':' + port + '\\n'); }).listen(Number(port), '0.0.0.0', () => { if (++open === ports.length) console.log('ready'); });
}
`;

/** Connects once and prints what the server says, or fails with exit 1 within timeoutMs. */
const CLIENT = `
const net = require('node:net');
const [host, port, ms] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) });
const t = setTimeout(() => { console.log('timeout'); process.exit(1); }, Number(ms));
let got = '';
s.on('data', (d) => { got += d; });
s.on('end', () => { clearTimeout(t); console.log(got.trim()); process.exit(0); });
s.on('error', (e) => { clearTimeout(t); console.log(e.code); process.exit(1); });
`;

export class Lab {
  readonly tag = randomBytes(3).toString('hex');
  readonly namespaces: string[] = [];
  readonly #servers: ResultPromise[] = [];

  name(role: string): string {
    return `mvmt-${this.tag}-${role}`;
  }

  async addNamespace(role: string): Promise<string> {
    const ns = this.name(role);
    await sh('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Starts the TCP server in `ns`; resolves once it listens on every port. */
  async serve(ns: string, name: string, ports: number[]): Promise<void> {
    const child = execa('ip', ['netns', 'exec', ns, 'node', '-e', SERVER, name, ...ports.map(String)], { reject: false, buffer: false });
    this.#servers.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        if (String(d).includes('ready')) resolve();
      });
      void child.then((r) => reject(new Error(`server ${name} in ${ns} exited early: ${String(r.stderr ?? '')}`)));
    });
  }

  /** What the server at host:port answered, or null when the connection failed or timed out. */
  async connect(ns: string, host: string, port: number, timeoutMs = 1500): Promise<string | null> {
    const result = await execa('ip', ['netns', 'exec', ns, 'node', '-e', CLIENT, host, String(port), String(timeoutMs)], { reject: false });
    return result.exitCode === 0 ? String(result.stdout).trim() : null;
  }

  async ping(ns: string, host: string): Promise<boolean> {
    const result = await execa('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '1', '-n', '-q', host], { reject: false });
    return result.exitCode === 0;
  }

  async cleanup(): Promise<void> {
    for (const child of this.#servers) child.kill('SIGKILL');
    await Promise.allSettled(this.#servers);
    for (const ns of this.namespaces.reverse()) await execa('ip', ['netns', 'del', ns], { reject: false });
    this.namespaces.length = 0;
  }
}
