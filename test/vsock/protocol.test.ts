import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VSOCK_HANDLERS } from '../../src/schemas/role-manifest.ts';
import { VsockError } from '../../src/vsock/errors.ts';
import { connectFirecrackerVsock, connectFirecrackerVsockWithRetry } from '../../src/vsock/firecracker-uds.ts';
import { FrameDecoder, FrameTooLargeError, encodeFrame, rawFrame } from '../../src/vsock/frame-codec.ts';
import { type VsockHostClient, connectGuestAgent } from '../../src/vsock/host-client.ts';
import {
  FATAL_ERROR_CODES,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  Request,
  VERBS,
  VerbArgs,
  VerbResults,
  WIRE_ERROR_CODES,
  protocolJsonSchema,
} from '../../src/vsock/protocol.ts';
import { FakeVmmSocket } from './fake-vmm-socket.ts';
import { RawPeer } from './raw-peer.ts';
import { GUEST_INSTANCE, GUEST_PORT, GUEST_TENANT, type ScriptedGuest, aHello, startScriptedGuest } from './scripted-guest.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function aDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mvm-proto-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A Unix socket server whose connections the test handles. */
async function aServer(file: string, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(file, resolve));
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return server;
}

const messages = (decoder: FrameDecoder, chunk: Uint8Array) => decoder.push(chunk).map((d) => (d.kind === 'message' ? d.value : d));

describe('frame codec', () => {
  it('round-trips a message as a 4-byte big-endian length and UTF-8 JSON', () => {
    const frame = encodeFrame({ type: 'request', id: 1, verb: 'ping', args: { note: 'grüße' } });
    const body = Buffer.from(JSON.stringify({ type: 'request', id: 1, verb: 'ping', args: { note: 'grüße' } }), 'utf8');
    expect(frame.readUInt32BE(0)).toBe(body.length);
    expect(frame.subarray(4).equals(body)).toBe(true);
    expect(messages(new FrameDecoder(), frame)).toEqual([{ type: 'request', id: 1, verb: 'ping', args: { note: 'grüße' } }]);
  });

  it('splits coalesced frames: three frames in one chunk give three messages, in order', () => {
    const chunk = Buffer.concat([encodeFrame({ n: 1 }), encodeFrame({ n: 2 }), encodeFrame({ n: 3 })]);
    const decoder = new FrameDecoder();
    expect(messages(decoder, chunk)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('reassembles partial frames fed one byte at a time, header split included', () => {
    const stream = Buffer.concat([encodeFrame({ first: 'x'.repeat(300) }), encodeFrame({ second: true })]);
    const decoder = new FrameDecoder();
    const out: unknown[] = [];
    const firstEnd = 4 + stream.readUInt32BE(0);
    for (let i = 0; i < stream.length; i++) {
      out.push(...messages(decoder, stream.subarray(i, i + 1)));
      if (i < firstEnd - 1) expect(out).toEqual([]);
      if (i === firstEnd - 1) expect(out).toEqual([{ first: 'x'.repeat(300) }]);
    }
    expect(out).toEqual([{ first: 'x'.repeat(300) }, { second: true }]);
  });

  it('handles a chunk that ends one frame and starts the next', () => {
    const a = encodeFrame({ a: 1 });
    const b = encodeFrame({ b: 2 });
    const decoder = new FrameDecoder();
    expect(messages(decoder, Buffer.concat([a, b.subarray(0, 2)]))).toEqual([{ a: 1 }]);
    expect(decoder.bufferedBytes).toBe(2);
    expect(messages(decoder, b.subarray(2))).toEqual([{ b: 2 }]);
  });

  it('refuses an oversized frame from its length prefix alone, before buffering any body, and then stays failed', () => {
    const decoder = new FrameDecoder();
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
    expect(decoder.push(header)).toEqual([{ kind: 'error', code: 'frame-too-large', message: expect.stringContaining(String(MAX_FRAME_BYTES + 1)) }]);
    expect(decoder.bufferedBytes).toBe(0);
    expect(decoder.failed).toBe(true);
    expect(decoder.push(Buffer.alloc(1024, 0x61))).toEqual([]);
    expect(decoder.push(encodeFrame({ after: true }))).toEqual([]);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('refuses the oversized header even when body bytes come in the same chunk', () => {
    const decoder = new FrameDecoder(16);
    expect(decoder.push(rawFrame(Buffer.from('{"a":"0123456789abcdef"}')))).toEqual([expect.objectContaining({ kind: 'error', code: 'frame-too-large' })]);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('accepts a frame of exactly the maximum size; the encoder refuses one byte more', () => {
    const exact = { s: 'y'.repeat(MAX_FRAME_BYTES - JSON.stringify({ s: '' }).length) };
    const frame = encodeFrame(exact);
    expect(frame.length).toBe(4 + MAX_FRAME_BYTES);
    expect(messages(new FrameDecoder(), frame)).toEqual([exact]);
    expect(() => encodeFrame({ s: `${exact.s}y` })).toThrow(FrameTooLargeError);
  });

  it.each([
    ['an empty frame', rawFrame(Buffer.alloc(0))],
    ['invalid UTF-8', rawFrame(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))],
    ['text that is not JSON', rawFrame(Buffer.from('{"type": "hello",'))],
  ])('reports %s as bad-frame', (_name, frame) => {
    const decoder = new FrameDecoder();
    expect(decoder.push(frame)).toEqual([expect.objectContaining({ kind: 'error', code: 'bad-frame' })]);
    expect(decoder.push(encodeFrame({ later: 1 }))).toEqual([]);
  });
});

describe('protocol definition', () => {
  it('has exactly one verb per role handler, each with an args and a result schema', () => {
    expect([...VERBS]).toEqual([...VSOCK_HANDLERS]);
    expect(Object.keys(VerbArgs).sort()).toEqual([...VSOCK_HANDLERS].sort());
    expect(Object.keys(VerbResults).sort()).toEqual([...VSOCK_HANDLERS].sort());
  });

  it('marks the frame- and identity-level errors fatal and the per-request ones not', () => {
    expect([...FATAL_ERROR_CODES].sort()).toEqual(['bad-frame', 'frame-too-large', 'out-of-order', 'version-mismatch', 'wrong-instance']);
    expect(WIRE_ERROR_CODES).toEqual(expect.arrayContaining(['unsupported', 'bad-args']));
    expect(FATAL_ERROR_CODES.has('unsupported')).toBe(false);
    expect(FATAL_ERROR_CODES.has('bad-args')).toBe(false);
  });

  it('checks each verb\'s args strictly', () => {
    const seed = Buffer.alloc(32, 7).toString('base64');
    const valid = {
      ping: {},
      readiness: { service: 'openclaw-gateway' },
      'service-status': {},
      drain: { deadline_ms: 30_000 },
      'post-restore': { secrets_epoch: 4, entropy_seed: seed },
      'config-reload': { config_version: 5 },
      'secrets-reload': { secrets_epoch: 4 },
      'connector-status': { connector: 'telegram' },
      'job-status': { instance_id: 'acme-builds-0', tenant_id: 'acme' },
      'openclaw-setup-code': {},
    };
    for (const verb of VERBS) expect(Request.safeParse({ type: 'request', id: 1, verb, args: valid[verb] }).success, verb).toBe(true);
    expect(VerbArgs.drain.safeParse({}).success).toBe(false);
    expect(VerbArgs.drain.safeParse({ deadline_ms: -1 }).success).toBe(false);
    expect(VerbArgs.ping.safeParse({ reboot: true }).success).toBe(false);
    expect(VerbArgs['post-restore'].safeParse({ secrets_epoch: 1, entropy_seed: 'short' }).success).toBe(false);
    expect(VerbArgs.ping.safeParse({ instance_id: '../other' }).success).toBe(false);
    expect(Request.safeParse({ type: 'request', id: 0, verb: 'ping', args: {} }).success).toBe(false);
  });

  it('exports JSON Schema for every message, verb and error code (for the docs)', () => {
    const schema = protocolJsonSchema() as any;
    expect(schema.protocol_version).toBe(PROTOCOL_VERSION);
    expect(schema.max_frame_bytes).toBe(MAX_FRAME_BYTES);
    expect(Object.keys(schema.messages)).toEqual(['hello', 'hello-ack', 'request', 'response', 'error']);
    expect(Object.keys(schema.args)).toEqual([...VSOCK_HANDLERS]);
    expect(Object.keys(schema.results)).toEqual([...VSOCK_HANDLERS]);
    expect(schema.args.drain.required).toEqual(['deadline_ms']);
    expect(schema.messages.hello.$defs.VsockHello.required).toEqual(expect.arrayContaining(['protocol_version', 'instance_id', 'handlers', 'config_version', 'secrets_epoch']));
    expect(schema.errors['wrong-instance']).toEqual({ fatal: true, meaning: expect.any(String) });
    expect(schema.errors.unsupported.fatal).toBe(false);
    expect(() => JSON.stringify(schema)).not.toThrow();
  });
});

describe('Firecracker vsock handshake (host side)', () => {
  it('sends CONNECT <port>, accepts OK <assigned port>, then carries bytes both ways', async () => {
    const dir = await aDir();
    const received: Buffer[] = [];
    await aServer(path.join(dir, 'guest.sock'), (socket) => {
      socket.on('data', (chunk) => received.push(chunk));
      socket.write('from-guest');
    });
    const vmm = await FakeVmmSocket.start({ udsPath: path.join(dir, 'v.sock'), guestPorts: { 1024: path.join(dir, 'guest.sock') } });
    cleanups.push(() => vmm.close());
    const { socket, hostPort } = await connectFirecrackerVsock({ udsPath: vmm.udsPath, port: 1024 });
    cleanups.push(() => void socket.destroy());
    expect(vmm.connectRequests).toEqual([1024]);
    expect(hostPort).toBeGreaterThanOrEqual(1_073_741_824);
    const fromGuest = await new Promise<string>((resolve) => {
      socket.once('data', (chunk: Buffer) => resolve(chunk.toString()));
      socket.resume();
    });
    expect(fromGuest).toBe('from-guest');
    socket.write('from-host');
    await expect.poll(() => Buffer.concat(received).toString()).toBe('from-host');
  });

  it('keeps bytes that arrive in the same chunk as the OK line', async () => {
    const dir = await aDir();
    await aServer(path.join(dir, 'v.sock'), (socket) => {
      socket.once('data', () => socket.write(Buffer.concat([Buffer.from('OK 77\n'), encodeFrame({ type: 'hello', early: true })])));
    });
    const { socket, hostPort } = await connectFirecrackerVsock({ udsPath: path.join(dir, 'v.sock'), port: 1024 });
    expect(hostPort).toBe(77);
    const peer = new RawPeer(socket);
    cleanups.push(() => peer.destroy());
    expect(await peer.next()).toEqual({ type: 'hello', early: true });
  });

  it('reports a missing VM socket as connect-refused', async () => {
    const dir = await aDir();
    await expect(connectFirecrackerVsock({ udsPath: path.join(dir, 'nothing.sock'), port: 1024 })).rejects.toMatchObject({ code: 'connect-refused' });
  });

  it('reports a port nothing listens on (the VMM closes) as connect-closed', async () => {
    const dir = await aDir();
    const vmm = await FakeVmmSocket.start({ udsPath: path.join(dir, 'v.sock') });
    cleanups.push(() => vmm.close());
    await expect(connectFirecrackerVsock({ udsPath: vmm.udsPath, port: 1024 })).rejects.toMatchObject({ code: 'connect-closed' });
    expect(vmm.connectRequests).toEqual([1024]);
  });

  it('gives up with connect-timeout when the VMM never answers', async () => {
    const dir = await aDir();
    await aServer(path.join(dir, 'v.sock'), () => {});
    const started = performance.now();
    await expect(connectFirecrackerVsock({ udsPath: path.join(dir, 'v.sock'), port: 1024, deadlineMs: 150 })).rejects.toMatchObject({ code: 'connect-timeout' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
  });

  it.each([
    ['a refusal line', 'NO\n'],
    ['an OK without a port', 'OK\n'],
    ['a line with no end', 'x'.repeat(64)],
  ])('reports %s as connect-bad-reply', async (_name, reply) => {
    const dir = await aDir();
    await aServer(path.join(dir, 'v.sock'), (socket) => socket.once('data', () => socket.write(reply)));
    await expect(connectFirecrackerVsock({ udsPath: path.join(dir, 'v.sock'), port: 1024 })).rejects.toMatchObject({ code: 'connect-bad-reply' });
  });

  it('retries while the guest is not listening yet, then connects', async () => {
    const dir = await aDir();
    const vmm = await FakeVmmSocket.start({ udsPath: path.join(dir, 'v.sock') });
    cleanups.push(() => vmm.close());
    const connecting = connectFirecrackerVsockWithRetry({ udsPath: vmm.udsPath, port: 1024, deadlineMs: 5000, retryIntervalMs: 50 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    await aServer(path.join(dir, 'guest.sock'), () => {});
    vmm.setGuestPort(1024, path.join(dir, 'guest.sock'));
    const { socket } = await connecting;
    cleanups.push(() => void socket.destroy());
    expect(vmm.connectRequests.length).toBeGreaterThan(1);
  });

  it('routes a guest-initiated connection to <uds_path>_<port>', async () => {
    const dir = await aDir();
    const vmm = await FakeVmmSocket.start({ udsPath: path.join(dir, 'v.sock') });
    cleanups.push(() => vmm.close());
    const arrived = new Promise<string>((resolve) => {
      void aServer(`${vmm.udsPath}_52`, (socket) => socket.once('data', (chunk) => resolve(chunk.toString())));
    });
    await expect.poll(async () => vmm.connectFromGuest(52).then((s) => (s.write('guest says hi'), true), () => false)).toBe(true);
    expect(await arrived).toBe('guest says hi');
    await expect(vmm.connectFromGuest(53)).rejects.toThrow();
  });
});

describe('host client against a scripted guest', () => {
  async function aGuest(script?: Parameters<typeof startScriptedGuest>[0]): Promise<ScriptedGuest> {
    const guest = await startScriptedGuest(script);
    cleanups.push(() => guest.close());
    return guest;
  }
  const connect = (guest: ScriptedGuest, extra: Record<string, unknown> = {}) =>
    connectGuestAgent({ udsPath: guest.vmm.udsPath, port: GUEST_PORT, instanceId: GUEST_INSTANCE, tenantId: GUEST_TENANT, ...extra });
  async function connected(guest: ScriptedGuest): Promise<{ client: VsockHostClient; peer: RawPeer }> {
    const client = await connect(guest);
    cleanups.push(() => client.close());
    const peer = guest.peers.at(-1)!;
    expect(await peer.next()).toEqual({ type: 'hello-ack', protocol_version: PROTOCOL_VERSION, instance_id: GUEST_INSTANCE });
    return { client, peer };
  }

  it('completes the hello, remembers the handlers and answers hello-ack with the socket\'s instance', async () => {
    const guest = await aGuest((peer) => peer.send(aHello()));
    const { client } = await connected(guest);
    expect(client.hello).toMatchObject({ instance_id: GUEST_INSTANCE, role: 'worker', config_version: 1 });
    expect([...client.handlers]).toEqual(['ping', 'readiness', 'drain']);
  });

  it('refuses another protocol version: version-mismatch, an error frame to the guest, and a closed connection', async () => {
    const guest = await aGuest((peer) => peer.send(aHello({ protocol_version: PROTOCOL_VERSION + 1, something_new: true })));
    await expect(connect(guest)).rejects.toMatchObject({ code: 'version-mismatch', remote: false });
    const peer = guest.peers[0]!;
    expect(await peer.next()).toMatchObject({ type: 'error', error: { code: 'version-mismatch' } });
    await peer.waitClosed();
  });

  it('refuses a guest that speaks before its hello (out-of-order)', async () => {
    const guest = await aGuest((peer) => peer.send({ type: 'response', id: 1, ok: true, result: {} }));
    await expect(connect(guest)).rejects.toMatchObject({ code: 'out-of-order' });
    expect(await guest.peers[0]!.next()).toMatchObject({ type: 'error', error: { code: 'out-of-order' } });
    await guest.peers[0]!.waitClosed();
  });

  it('refuses a hello that claims another instance or tenant on this socket (wrong-instance)', async () => {
    const other = await aGuest((peer) => peer.send(aHello({ instance_id: 'acme-workers-1' })));
    await expect(connect(other)).rejects.toMatchObject({ code: 'wrong-instance' });
    expect(await other.peers[0]!.next()).toMatchObject({ type: 'error', error: { code: 'wrong-instance', message: expect.stringContaining('acme-workers-1') } });
    const otherTenant = await aGuest((peer) => peer.send(aHello({ tenant_id: 'globex' })));
    await expect(connect(otherTenant)).rejects.toMatchObject({ code: 'wrong-instance' });
  });

  it.each([
    ['invalid JSON', 'bad-frame', rawFrame(Buffer.from('{nope'))],
    ['a hello missing fields', 'bad-frame', encodeFrame({ type: 'hello', protocol_version: PROTOCOL_VERSION })],
    ['an oversized frame', 'frame-too-large', rawFrame(Buffer.alloc(0), MAX_FRAME_BYTES + 1)],
  ])('refuses %s as %s', async (_name, code, bytes) => {
    const guest = await aGuest((peer) => peer.sendBytes(bytes));
    await expect(connect(guest)).rejects.toMatchObject({ code });
    expect(await guest.peers[0]!.next()).toMatchObject({ type: 'error', error: { code } });
  });

  it('gives up when no hello comes', async () => {
    const guest = await aGuest();
    await expect(connect(guest, { helloDeadlineMs: 100 })).rejects.toMatchObject({ code: 'timeout' });
  });

  it('sends requests with fresh ids and the socket\'s identity, and checks each result against its verb', async () => {
    const guest = await aGuest((peer) => peer.send(aHello()));
    const { client, peer } = await connected(guest);
    const first = client.request('ping', {});
    const request1 = await peer.next();
    expect(request1).toEqual({ type: 'request', id: 1, verb: 'ping', args: { instance_id: GUEST_INSTANCE, tenant_id: GUEST_TENANT } });
    const second = client.request('drain', { deadline_ms: 10 });
    const request2 = await peer.next();
    expect(request2).toMatchObject({ id: 2, verb: 'drain', args: { deadline_ms: 10 } });
    // Answers may come in any order.
    peer.send({ type: 'response', id: 2, ok: true, result: { drained: true, in_flight: 0, waited_ms: 1 } });
    peer.send({ type: 'response', id: 1, ok: true, result: { pong: true, instance_id: GUEST_INSTANCE, uptime_ms: 5 } });
    expect(await second).toEqual({ drained: true, in_flight: 0, waited_ms: 1 });
    expect(await first).toEqual({ pong: true, instance_id: GUEST_INSTANCE, uptime_ms: 5 });

    const bad = client.request('ping', {});
    const request3 = await peer.next();
    peer.send({ type: 'response', id: request3.id, ok: true, result: { pong: 'yes' } });
    await expect(bad).rejects.toMatchObject({ code: 'bad-frame' });
    expect(await peer.next()).toMatchObject({ type: 'error', error: { code: 'bad-frame' } });
    expect(client.closed).toBe(true);
  });

  it('refuses locally, without sending: a verb the guest did not enable, bad args, another instance or tenant', async () => {
    const guest = await aGuest((peer) => peer.send(aHello()));
    const { client, peer } = await connected(guest);
    await expect(client.request('connector-status', {})).rejects.toMatchObject({ code: 'unsupported', remote: false });
    await expect(client.request('drain', { deadline_ms: -5 })).rejects.toMatchObject({ code: 'bad-args', remote: false });
    await expect(client.request('ping', { instance_id: 'acme-workers-9' })).rejects.toMatchObject({ code: 'wrong-instance', remote: false });
    await expect(client.request('ping', { tenant_id: 'globex' })).rejects.toMatchObject({ code: 'wrong-instance', remote: false });
    const ok = client.request('ping', { instance_id: GUEST_INSTANCE });
    // The first frame the guest sees is this ping: nothing was sent for the refused ones.
    const request = await peer.next();
    expect(request).toMatchObject({ id: 1, verb: 'ping' });
    peer.send({ type: 'response', id: 1, ok: true, result: { pong: true, instance_id: GUEST_INSTANCE, uptime_ms: 1 } });
    await expect(ok).resolves.toMatchObject({ pong: true });
  });

  it('times a request out, drops its late answer, and keeps the connection', async () => {
    const guest = await aGuest((peer) => peer.send(aHello()));
    const { client, peer } = await connected(guest);
    await expect(client.request('ping', {}, { deadlineMs: 50 })).rejects.toMatchObject({ code: 'timeout' });
    const late = await peer.next();
    peer.send({ type: 'response', id: late.id, ok: true, result: { pong: true, instance_id: GUEST_INSTANCE, uptime_ms: 1 } });
    const next = client.request('ping', {});
    const request = await peer.next();
    expect(request.id).toBe(late.id + 1);
    peer.send({ type: 'response', id: request.id, ok: true, result: { pong: true, instance_id: GUEST_INSTANCE, uptime_ms: 2 } });
    await expect(next).resolves.toMatchObject({ uptime_ms: 2 });
    expect(client.closed).toBe(false);
  });

  it('closes on an answer to a request it never sent (out-of-order)', async () => {
    const guest = await aGuest((peer) => peer.send(aHello()));
    const { client, peer } = await connected(guest);
    const pending = client.request('ping', {});
    await peer.next();
    peer.send({ type: 'response', id: 99, ok: true, result: {} });
    await expect(pending).rejects.toMatchObject({ code: 'out-of-order' });
    expect(await peer.next()).toMatchObject({ type: 'error', error: { code: 'out-of-order' } });
    expect(client.closeReason).toMatchObject({ code: 'out-of-order' });
  });

  it('passes on the guest\'s typed refusals; a fatal one closes the connection', async () => {
    const guest = await aGuest((peer) => peer.send(aHello()));
    const { client, peer } = await connected(guest);
    const refused = client.request('readiness', {});
    const r1 = await peer.next();
    peer.send({ type: 'response', id: r1.id, ok: false, error: { code: 'bad-args', message: 'no service "x"' } });
    await expect(refused).rejects.toMatchObject({ code: 'bad-args', remote: true });
    expect(client.closed).toBe(false);
    const fatal = client.request('ping', {});
    const r2 = await peer.next();
    peer.send({ type: 'response', id: r2.id, ok: false, error: { code: 'wrong-instance', message: 'not me' } });
    await expect(fatal).rejects.toMatchObject({ code: 'wrong-instance', remote: true });
    expect(client.closed).toBe(true);
    await expect(client.request('ping', {})).rejects.toMatchObject({ code: 'closed' });
  });

  it('rejects pending requests with closed when the guest goes away', async () => {
    const guest = await aGuest((peer) => peer.send(aHello()));
    const { client, peer } = await connected(guest);
    const pending = client.request('drain', { deadline_ms: 1000 });
    await peer.next();
    const closed = new Promise<VsockError>((resolve) => client.onClose(resolve));
    peer.destroy();
    await expect(pending).rejects.toMatchObject({ code: 'closed' });
    expect(await closed).toBeInstanceOf(VsockError);
  });
});
