import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PROTOCOL_VERSION } from '../../src/vsock/protocol.ts';
import { FakeVmmSocket } from './fake-vmm-socket.ts';
import { RawPeer } from './raw-peer.ts';

/**
 * A guest whose side of the conversation the test writes by hand, behind a fake VMM socket: for
 * testing the host client against guests that misbehave in exact ways.
 */
export const GUEST_PORT = 1024;
export const GUEST_INSTANCE = 'acme-workers-0';
export const GUEST_TENANT = 'acme';

export function aHello(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'hello',
    protocol_version: PROTOCOL_VERSION,
    agent: { name: 'scripted-guest', version: '0' },
    instance_id: GUEST_INSTANCE,
    tenant_id: GUEST_TENANT,
    role: 'worker',
    handlers: ['ping', 'readiness', 'drain'],
    config_version: 1,
    secrets_epoch: 0,
    config_error: null,
    ...overrides,
  };
}

export interface ScriptedGuest {
  dir: string;
  vmm: FakeVmmSocket;
  guestSocket: string;
  /** The guest ends of connections, in the order the host opened them. */
  peers: RawPeer[];
  /** The guest end of the next connection not yet handed out (waits for it if need be). */
  nextPeer(): Promise<RawPeer>;
  close(): Promise<void>;
}

export async function startScriptedGuest(script: (peer: RawPeer) => void | Promise<void> = () => {}): Promise<ScriptedGuest> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mvm-guest-'));
  const guestSocket = path.join(dir, 'guest.sock');
  const peers: RawPeer[] = [];
  const waiting: ((peer: RawPeer) => void)[] = [];
  let handedOut = 0;
  const server = net.createServer((socket) => {
    const peer = new RawPeer(socket);
    peers.push(peer);
    const waiter = waiting.shift();
    if (waiter) {
      handedOut += 1;
      waiter(peer);
    }
    void Promise.resolve(script(peer)).catch(() => peer.destroy());
  });
  await new Promise<void>((resolve) => server.listen(guestSocket, resolve));
  const vmm = await FakeVmmSocket.start({ udsPath: path.join(dir, 'v.sock'), guestPorts: { [GUEST_PORT]: guestSocket } });
  return {
    dir,
    vmm,
    guestSocket,
    peers,
    nextPeer: () => (handedOut < peers.length ? Promise.resolve(peers[handedOut++]!) : new Promise((resolve) => waiting.push(resolve))),
    close: async () => {
      for (const peer of peers) peer.destroy();
      await vmm.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
