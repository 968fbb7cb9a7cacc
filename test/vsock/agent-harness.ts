import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ResultPromise, execa } from 'execa';
import { VSOCK_HANDLERS } from '../../src/schemas/role-manifest.ts';
import { type HostConnectOptions, type VsockHostClient, connectGuestAgent } from '../../src/vsock/host-client.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { FakeVmmSocket } from './fake-vmm-socket.ts';
import { RawPeer } from './raw-peer.ts';

/** A real guest agent process behind a fake VMM vsock socket, as the simulator will run it. */
export const AGENT_MAIN = path.join(REPO_ROOT, 'src/guest/main.ts');
export const AGENT_PORT = 1024;
export const INSTANCE = 'acme-gateway-0';
export const TENANT = 'acme';

export interface AgentHarness {
  dir: string;
  configPath: string;
  secretsDir: string;
  agentSocket: string;
  vmm: FakeVmmSocket;
  proc: ResultPromise<{ reject: false; buffer: true }>;
  /** stderr so far (the agent's JSON log lines). */
  stderr(): string;
  /** A host client over the fake VMM, bound to INSTANCE unless told otherwise. */
  connect(options?: Partial<HostConnectOptions>): Promise<VsockHostClient>;
  /** A hand-driven host over the fake VMM. */
  raw(): Promise<RawPeer>;
  /** A hand-driven host that has read the hello and sent a correct hello-ack. */
  rawReady(): Promise<{ peer: RawPeer; hello: any }>;
}

export interface StartOptions {
  /** The config file's content: an object (JSON), a string (written as is), or null for no file. */
  config?: object | string | null;
  secrets?: Record<string, string>;
  /** Other files on the config drive, next to mvm.json (generated service configs such as openclaw.json). */
  configFiles?: Record<string, string>;
  /** Extra agent arguments; a function gets the agent's temp directory (for pid dirs, job files). */
  args?: string[] | ((dir: string) => string[]);
}

/** A gateway-like mvm.json with every handler enabled; `port` is the TCP port its service listens on. */
export function aConfig(port: number, overrides: Record<string, unknown> = {}): Record<string, any> {
  return {
    schema_version: 1,
    config_version: 3,
    tenant_id: TENANT,
    pool_id: 'gateway',
    role: 'gateway',
    profile: 'openclaw-gateway',
    services: [
      { name: 'openclaw-gateway', program: 'openclaw', args: ['gateway', 'run'], ports: ['gateway-ws'] },
      { name: 'channel-bridge', program: 'bridge', args: [], ports: [] },
    ],
    ports: [{ name: 'gateway-ws', port, protocol: 'tcp', exposure: 'tenant' }],
    vsock: { agent_port: AGENT_PORT, handlers: [...VSOCK_HANDLERS] },
    connectors: [{ name: 'telegram', secrets: ['telegram-bot-token'] }, 'whatsapp'],
    ingress: false,
    instance_id: INSTANCE,
    network: { ipv4: '10.101.0.2', mac: '06:00:0a:65:00:02', tap: 'mvm-acme-0', vsock_cid: 3 },
    ...overrides,
  };
}

/** A TCP port nothing listens on (bound, read, released). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const running: { proc: ResultPromise; vmm: FakeVmmSocket; dir: string }[] = [];

export async function startAgent(options: StartOptions = {}): Promise<AgentHarness> {
  // Short paths: sun_path is 108 bytes, and the fake VMM adds `_<port>` for guest-initiated sockets.
  const dir = await mkdtemp(path.join(tmpdir(), 'mvm-vsock-'));
  const configPath = path.join(dir, 'mvm.json');
  const secretsDir = path.join(dir, 'secrets');
  const agentSocket = path.join(dir, 'agent.sock');
  await mkdir(secretsDir, { mode: 0o700 });
  const config = options.config === undefined ? aConfig(await freePort()) : options.config;
  if (config !== null) await writeFile(configPath, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  for (const [name, value] of Object.entries(options.secrets ?? {})) await writeFile(path.join(secretsDir, name), value);
  for (const [name, value] of Object.entries(options.configFiles ?? {})) await writeFile(path.join(dir, name), value);

  const extraArgs = typeof options.args === 'function' ? options.args(dir) : (options.args ?? []);
  const vmm = await FakeVmmSocket.start({ udsPath: path.join(dir, 'v.sock'), guestPorts: { [AGENT_PORT]: agentSocket } });
  const proc = execa('node', ['--import', 'tsx', AGENT_MAIN, '--config', configPath, '--listen', agentSocket, '--secrets-dir', secretsDir, ...extraArgs], {
    cwd: REPO_ROOT,
    reject: false,
    buffer: true,
  });
  running.push({ proc, vmm, dir });
  let stderr = '';
  proc.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the agent did not start within 10 s; stderr:\n${stderr}`)), 10_000);
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('mvm-guest-agent listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void proc.then((result) => {
      clearTimeout(timer);
      reject(new Error(`the agent exited (${result.exitCode}) before listening; stderr:\n${stderr}`));
    });
  });

  const harness: AgentHarness = {
    dir,
    configPath,
    secretsDir,
    agentSocket,
    vmm,
    proc: proc as AgentHarness['proc'],
    stderr: () => stderr,
    connect: (overrides = {}) => connectGuestAgent({ udsPath: vmm.udsPath, port: AGENT_PORT, instanceId: INSTANCE, tenantId: TENANT, ...overrides }),
    raw: () => RawPeer.connect(vmm.udsPath, AGENT_PORT),
    rawReady: async () => {
      const peer = await harness.raw();
      const hello = await peer.next();
      peer.send({ type: 'hello-ack', protocol_version: hello.protocol_version, instance_id: INSTANCE });
      return { peer, hello };
    },
  };
  return harness;
}

/** Kills every agent started by startAgent and removes its directory (call in afterEach). */
export async function stopAllAgents(): Promise<void> {
  await Promise.all(
    running.splice(0).map(async ({ proc, vmm, dir }) => {
      proc.kill('SIGKILL');
      await proc;
      await vmm.close();
      await rm(dir, { recursive: true, force: true });
    }),
  );
}
