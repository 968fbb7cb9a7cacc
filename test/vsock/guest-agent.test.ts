import { access, mkdir, unlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { VSOCK_HANDLERS } from '../../src/schemas/role-manifest.ts';
import { rawFrame } from '../../src/vsock/frame-codec.ts';
import { MAX_FRAME_BYTES, PROTOCOL_VERSION } from '../../src/vsock/protocol.ts';
import { REPO_ROOT, aDesiredState } from '../helpers/fixtures.ts';
import { aTestHost } from '../host/helpers.ts';
import { AGENT_MAIN, AGENT_PORT, INSTANCE, TENANT, aConfig, freePort, startAgent, stopAllAgents } from './agent-harness.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  await stopAllAgents();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const SEED = Buffer.alloc(32, 9).toString('base64');
const WORKER_HANDLERS = ['ping', 'readiness', 'service-status', 'drain', 'post-restore', 'config-reload', 'secrets-reload'];

async function listenOn(port: number): Promise<void> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
}

describe('guest agent: the hello', () => {
  it('speaks first, naming its instance, tenant, role, handlers and versions from the config drive', async () => {
    const agent = await startAgent({ args: ['--secrets-epoch', '2'] });
    const client = await agent.connect();
    expect(client.hello).toEqual({
      type: 'hello',
      protocol_version: PROTOCOL_VERSION,
      agent: { name: 'mvm-guest-agent', version: expect.any(String) },
      instance_id: INSTANCE,
      tenant_id: TENANT,
      role: 'gateway',
      handlers: [...VSOCK_HANDLERS],
      config_version: 3,
      secrets_epoch: 2,
      config_error: null,
    });
    expect(agent.vmm.connectRequests).toEqual([AGENT_PORT]);
    expect(await client.request('ping', {})).toEqual({ pong: true, instance_id: INSTANCE, uptime_ms: expect.any(Number) });
    client.close();
  });

  it('refuses a host that speaks another protocol version: version-mismatch, then close', async () => {
    const agent = await startAgent();
    const peer = await agent.raw();
    expect(await peer.next()).toMatchObject({ type: 'hello', protocol_version: PROTOCOL_VERSION });
    peer.send({ type: 'hello-ack', protocol_version: PROTOCOL_VERSION + 1, instance_id: INSTANCE, future_field: 1 });
    expect(await peer.next()).toMatchObject({ type: 'error', id: null, error: { code: 'version-mismatch', message: expect.stringContaining(String(PROTOCOL_VERSION + 1)) } });
    await peer.waitClosed();
  });

  it('refuses a hello-ack that binds its socket to another instance (wrong-instance), then close', async () => {
    const agent = await startAgent();
    const peer = await agent.raw();
    await peer.next();
    peer.send({ type: 'hello-ack', protocol_version: PROTOCOL_VERSION, instance_id: 'acme-gateway-1' });
    expect(await peer.next()).toMatchObject({ type: 'error', error: { code: 'wrong-instance' } });
    await peer.waitClosed();
  });

  it('is refused by a host that expects another instance or tenant on this socket', async () => {
    const agent = await startAgent();
    await expect(agent.connect({ instanceId: 'acme-gateway-1' })).rejects.toMatchObject({ code: 'wrong-instance', remote: false });
    await expect(agent.connect({ tenantId: 'globex' })).rejects.toMatchObject({ code: 'wrong-instance', remote: false });
    await expect((await agent.connect()).request('ping', {})).resolves.toMatchObject({ pong: true });
  });

  it('with an unreadable config drive, says why and answers ping only; a config drive that appears later is used', async () => {
    const agent = await startAgent({ config: null });
    const client = await agent.connect();
    expect(client.hello).toMatchObject({ instance_id: null, tenant_id: null, role: null, handlers: ['ping'], config_version: null, config_error: expect.stringContaining('mvm.json') });
    expect(await client.request('ping', {})).toMatchObject({ pong: true, instance_id: null });
    await expect(client.request('readiness', {})).rejects.toMatchObject({ code: 'unsupported', remote: false });
    const { peer } = await agent.rawReady();
    peer.send({ type: 'request', id: 1, verb: 'readiness', args: {} });
    expect(await peer.next()).toMatchObject({ id: 1, ok: false, error: { code: 'unsupported' } });

    await writeFile(agent.configPath, JSON.stringify(aConfig(await freePort())));
    const later = await agent.connect();
    expect(later.hello).toMatchObject({ instance_id: INSTANCE, config_error: null, handlers: [...VSOCK_HANDLERS] });
  });

  it('reads the config drive exactly as the host writes it (drive plan contract)', async () => {
    const t = await aTestHost();
    cleanups.push(() => t.host.close());
    const specs: any[] = [];
    const prepare = t.driver.prepareDrives.bind(t.driver);
    t.driver.prepareDrives = (spec, ctx) => {
      specs.push(spec);
      return prepare(spec, ctx);
    };
    await t.host.apply(aDesiredState());
    await t.settle();
    const spec = specs.find((s) => s.instance_id === 'acme-gateway-0');
    expect(spec).toBeDefined();
    const file = (persistence: string) => spec.drives.find((d: any) => d.persistence === persistence).files;
    const mvmJson = file('versioned')['mvm.json'];
    const secrets = file('ephemeral');

    const agent = await startAgent({ config: mvmJson, secrets });
    const client = await agent.connect({ instanceId: 'acme-gateway-0', tenantId: 'acme' });
    expect(client.hello).toMatchObject({ instance_id: 'acme-gateway-0', tenant_id: 'acme', role: 'gateway', config_version: spec.revision.config_version, config_error: null });
    expect(client.hello.handlers).toEqual(spec.vsock.handlers);
    // The config drive names each connector's secrets, so the agent agrees with the host's chart:
    // telegram is disabled for want of its token, whatsapp needs none.
    const { connectors } = await client.request('connector-status', {});
    expect(connectors.map((c) => [c.name, c.state])).toEqual([
      ['telegram', 'disabled'],
      ['whatsapp', 'enabled'],
    ]);
    expect(JSON.stringify(connectors[0])).toContain('telegram-bot-token');
    expect(t.host.instance('acme-gateway-0')!.connectors.telegram).toEqual({ enabled: false, missing: ['telegram-bot-token'] });
    const status = await client.request('service-status', {});
    expect(status.services.map((s) => [s.name, s.ports.map((p) => p.port)])).toEqual([['openclaw-gateway', [18789]]]);
  });
});

describe('guest agent: verbs', () => {
  it('readiness and service-status: TCP services by their declared port, port-less ones by their pid file, one service or all', async () => {
    const port = await freePort();
    const agent = await startAgent({ config: aConfig(port), args: (dir) => ['--pid-dir', path.join(dir, 'pids')] });
    const pidDir = path.join(agent.dir, 'pids');
    const client = await agent.connect();
    expect(await client.request('readiness', {})).toEqual({
      ready: false,
      services: [
        { name: 'openclaw-gateway', state: 'not-ready', probe: 'tcp', detail: expect.stringContaining(`tcp/${port}`) },
        { name: 'channel-bridge', state: 'not-ready', probe: 'process', detail: 'no pid file for channel-bridge' },
      ],
    });

    await listenOn(port);
    await mkdir(pidDir);
    await writeFile(path.join(pidDir, 'channel-bridge.pid'), `${process.pid}\n`);
    expect(await client.request('readiness', {})).toEqual({
      ready: true,
      services: [
        { name: 'openclaw-gateway', state: 'ready', probe: 'tcp', detail: null },
        { name: 'channel-bridge', state: 'ready', probe: 'process', detail: null },
      ],
    });
    expect(await client.request('service-status', { service: 'openclaw-gateway' })).toEqual({
      services: [{ name: 'openclaw-gateway', state: 'ready', probe: 'tcp', detail: null, program: 'openclaw', ports: [{ name: 'gateway-ws', port, protocol: 'tcp' }] }],
      depends_on: [], // a gateway depends on nothing; a worker's lists its gateway (test/driver/sim-host.test.ts)
    });

    // A pid that no longer runs: a finished child's.
    const child = execa('node', ['-e', ''], { reject: false });
    const gone = { pid: child.pid! };
    await child;
    await writeFile(path.join(pidDir, 'channel-bridge.pid'), String(gone.pid));
    expect(await client.request('readiness', { service: 'channel-bridge' })).toEqual({
      ready: false,
      services: [{ name: 'channel-bridge', state: 'not-ready', probe: 'process', detail: `process ${gone.pid} is not running` }],
    });
    await expect(client.request('readiness', { service: 'nginx' })).rejects.toMatchObject({ code: 'bad-args', remote: true });
    expect(client.closed).toBe(false);
  });

  it('drain answers at once when nothing is in flight', async () => {
    const agent = await startAgent();
    const client = await agent.connect();
    const result = await client.request('drain', { deadline_ms: 10_000 });
    expect(result).toEqual({ drained: true, in_flight: 0, waited_ms: expect.any(Number) });
    expect(result.waited_ms).toBeLessThan(1000);
  });

  it('drain waits for in-flight work up to its deadline, and other verbs are answered meanwhile', async () => {
    const agent = await startAgent({ args: ['--simulate-in-flight-ms', '400'] });
    const client = await agent.connect();
    const order: string[] = [];
    const draining = client.request('drain', { deadline_ms: 5000 }).then((r) => (order.push('drain'), r));
    const pinged = client.request('ping', {}).then((r) => (order.push('ping'), r));
    const [drained] = await Promise.all([draining, pinged]);
    expect(order).toEqual(['ping', 'drain']);
    expect(drained).toMatchObject({ drained: true, in_flight: 0 });
    expect(drained.waited_ms).toBeGreaterThanOrEqual(350);

    const cut = await client.request('drain', { deadline_ms: 50 });
    expect(cut).toMatchObject({ drained: false, in_flight: 1 });
    expect(cut.waited_ms).toBeLessThan(350);
  });

  it('post-restore re-reads config and secrets, records the epoch and the seed, and reports readiness', async () => {
    const port = await freePort();
    await listenOn(port);
    const agent = await startAgent({ config: aConfig(port, { services: [{ name: 'openclaw-gateway', program: 'openclaw', args: [], ports: ['gateway-ws'] }] }), secrets: { 'gateway-token': 'old' }, args: ['--secrets-epoch', '1'] });
    const client = await agent.connect();
    await writeFile(path.join(agent.secretsDir, 'telegram-bot-token'), 'tg');
    await writeFile(agent.configPath, JSON.stringify(aConfig(port, { config_version: 4, services: [{ name: 'openclaw-gateway', program: 'openclaw', args: [], ports: ['gateway-ws'] }] })));
    expect(await client.request('post-restore', { secrets_epoch: 5, entropy_seed: SEED })).toEqual({
      secrets_epoch: 5,
      previous_secrets_epoch: 1,
      config_version: 4,
      secrets: ['gateway-token', 'telegram-bot-token'],
      reseeded: true,
      restores: 1,
      ready: true,
    });
    expect(await client.request('post-restore', { secrets_epoch: 6, entropy_seed: SEED })).toMatchObject({ previous_secrets_epoch: 5, restores: 2 });
    await expect(client.request('post-restore', { secrets_epoch: 7, entropy_seed: 'not base64!' })).rejects.toMatchObject({ code: 'bad-args' });
    const again = await agent.connect();
    expect(again.hello).toMatchObject({ secrets_epoch: 6, config_version: 4 });
  });

  it('config-reload reports the version now on the config drive, and keeps its identity if the drive names another', async () => {
    const port = await freePort();
    const agent = await startAgent({ config: aConfig(port) });
    const client = await agent.connect();
    await writeFile(agent.configPath, JSON.stringify(aConfig(port, { config_version: 4 })));
    expect(await client.request('config-reload', { config_version: 4 })).toEqual({ config_version: 4, previous_config_version: 3, applied: true, config_changed: [] });
    expect(await client.request('config-reload', { config_version: 5 })).toEqual({ config_version: 4, previous_config_version: 4, applied: false, config_changed: [] });

    await writeFile(agent.configPath, JSON.stringify(aConfig(port, { config_version: 9, instance_id: 'acme-gateway-7' })));
    await expect(client.request('config-reload', { config_version: 9 })).rejects.toMatchObject({ code: 'config-unavailable', remote: true });
    await writeFile(agent.configPath, '{ torn');
    await expect(client.request('config-reload', { config_version: 9 })).rejects.toMatchObject({ code: 'config-unavailable', remote: true });
    expect(client.closed).toBe(false);
    expect((await agent.connect()).hello).toMatchObject({ instance_id: INSTANCE, config_version: 4 });
  });

  it('config-reload names only the services whose generated config file changed: a new config_version alone changes none', async () => {
    const port = await freePort();
    const withConfig = (version: number) => {
      const config = aConfig(port, { config_version: version });
      config.services[0].config = { format: 'openclaw-gateway', file: 'openclaw.json' };
      return config;
    };
    const openclawJson = JSON.stringify({ gateway: { port } });
    const agent = await startAgent({ config: withConfig(3), configFiles: { 'openclaw.json': openclawJson } });
    const client = await agent.connect();

    // The version moves on; the gateway's own file is rewritten with the same bytes.
    await writeFile(agent.configPath, JSON.stringify(withConfig(4)));
    await writeFile(path.join(agent.dir, 'openclaw.json'), openclawJson);
    expect(await client.request('config-reload', { config_version: 4 })).toEqual({ config_version: 4, previous_config_version: 3, applied: true, config_changed: [] });

    // A real change to the gateway's settings names that service, and only it.
    await writeFile(agent.configPath, JSON.stringify(withConfig(5)));
    await writeFile(path.join(agent.dir, 'openclaw.json'), JSON.stringify({ gateway: { port, bind: 'custom' } }));
    expect(await client.request('config-reload', { config_version: 5 })).toEqual({ config_version: 5, previous_config_version: 4, applied: true, config_changed: ['openclaw-gateway'] });
  });

  it('secrets-reload after a secrets file changes: reports what changed by name only, and connectors follow', async () => {
    const agent = await startAgent({ secrets: { 'telegram-bot-token': 'tg-secret-value-1', 'gateway-token': 'gw-secret-value', stale: 'x' } });
    const client = await agent.connect();
    expect((await client.request('connector-status', { connector: 'telegram' })).connectors).toEqual([
      { name: 'telegram', state: 'enabled', reason: null, secrets_required: ['telegram-bot-token'], secrets_missing: [] },
    ]);

    await writeFile(path.join(agent.secretsDir, 'telegram-bot-token'), 'tg-secret-value-2');
    await writeFile(path.join(agent.secretsDir, 'new-token'), 'n');
    await unlink(path.join(agent.secretsDir, 'stale'));
    expect(await client.request('secrets-reload', { secrets_epoch: 3 })).toEqual({
      secrets_epoch: 3,
      previous_secrets_epoch: null,
      secrets: ['gateway-token', 'new-token', 'telegram-bot-token'],
      added: ['new-token'],
      changed: ['telegram-bot-token'],
      removed: ['stale'],
    });

    await unlink(path.join(agent.secretsDir, 'telegram-bot-token'));
    // A raw host sees the frames themselves: names, never values.
    const { peer } = await agent.rawReady();
    peer.send({ type: 'request', id: 1, verb: 'secrets-reload', args: { secrets_epoch: 4 } });
    const reply = await peer.next();
    expect(reply).toMatchObject({ id: 1, ok: true, result: { secrets_epoch: 4, previous_secrets_epoch: 3, removed: ['telegram-bot-token'] } });
    expect(JSON.stringify(reply)).not.toMatch(/secret-value/);
    expect((await client.request('connector-status', {})).connectors).toEqual([
      { name: 'telegram', state: 'disabled', reason: 'missing-secret:telegram-bot-token', secrets_required: ['telegram-bot-token'], secrets_missing: ['telegram-bot-token'] },
      { name: 'whatsapp', state: 'enabled', reason: null, secrets_required: null, secrets_missing: [] },
    ]);
    await expect(client.request('connector-status', { connector: 'slack' })).rejects.toMatchObject({ code: 'bad-args', remote: true });
  });

  it('job-status reads the job runner\'s status file: none without one, the job with one, internal for a broken one', async () => {
    const builder = aConfig(await freePort(), { role: 'builder', services: [], ports: [], connectors: [], vsock: { agent_port: AGENT_PORT, handlers: ['ping', 'readiness', 'job-status'] } });
    const agent = await startAgent({ config: builder, args: (dir) => ['--job-status-file', path.join(dir, 'job.json')] });
    const jobFile = path.join(agent.dir, 'job.json');
    const client = await agent.connect();
    expect(await client.request('job-status', {})).toEqual({ job_id: null, state: 'none', progress: null, message: null });
    expect(await client.request('readiness', {})).toEqual({ ready: true, services: [] });
    await writeFile(jobFile, JSON.stringify({ job_id: 'build-42', state: 'running', progress: 0.5, message: 'building closure' }));
    expect(await client.request('job-status', {})).toEqual({ job_id: 'build-42', state: 'running', progress: 0.5, message: 'building closure' });
    await writeFile(jobFile, JSON.stringify({ job_id: 'build-42', state: 'exploded' }));
    await expect(client.request('job-status', {})).rejects.toMatchObject({ code: 'internal', remote: true });
    expect(await client.request('ping', {})).toMatchObject({ pong: true });
  });
});

describe('guest agent: refusals and bad input', () => {
  it('answers unsupported for a verb its role does not enable (and for non-verbs), and stays connected', async () => {
    const agent = await startAgent({ config: aConfig(await freePort(), { role: 'worker', connectors: [], vsock: { agent_port: AGENT_PORT, handlers: WORKER_HANDLERS } }) });
    const client = await agent.connect();
    expect([...client.handlers]).toEqual(WORKER_HANDLERS);
    await expect(client.request('connector-status', {})).rejects.toMatchObject({ code: 'unsupported', remote: false });

    const { peer } = await agent.rawReady();
    peer.send({ type: 'request', id: 1, verb: 'connector-status', args: {} });
    expect(await peer.next()).toMatchObject({ type: 'response', id: 1, ok: false, error: { code: 'unsupported', message: expect.stringContaining('connector-status') } });
    peer.send({ type: 'request', id: 2, verb: 'reboot', args: {} });
    expect(await peer.next()).toMatchObject({ id: 2, ok: false, error: { code: 'unsupported' } });
    peer.send({ type: 'request', id: 3, verb: 'drain', args: { deadline_ms: -1 } });
    expect(await peer.next()).toMatchObject({ id: 3, ok: false, error: { code: 'bad-args', message: expect.stringContaining('deadline_ms') } });
    peer.send({ type: 'request', id: 4, verb: 'ping', args: { extra: true } });
    expect(await peer.next()).toMatchObject({ id: 4, ok: false, error: { code: 'bad-args' } });
    peer.send({ type: 'request', id: 5, verb: 'ping', args: {} });
    expect(await peer.next()).toMatchObject({ id: 5, ok: true, result: { pong: true } });
    expect(peer.isClosed).toBe(false);
  });

  it.each([
    ['invalid JSON', rawFrame(Buffer.from('{"type":"request",')), 'bad-frame'],
    ['JSON that is not a message', rawFrame(Buffer.from('[1,2,3]')), 'bad-frame'],
    ['an unknown message type', rawFrame(Buffer.from('{"type":"reboot"}')), 'bad-frame'],
    ['a request without an id', rawFrame(Buffer.from('{"type":"request","verb":"ping","args":{}}')), 'bad-frame'],
    ['an oversized frame (length prefix only)', rawFrame(Buffer.alloc(0), MAX_FRAME_BYTES + 1), 'frame-too-large'],
    ['a guest-only message', rawFrame(Buffer.from('{"type":"response","id":1,"ok":true,"result":{}}')), 'out-of-order'],
  ])('answers %s with a typed error, then closes', async (_name, bytes, code) => {
    const agent = await startAgent();
    const { peer } = await agent.rawReady();
    peer.sendBytes(bytes);
    expect(await peer.next()).toMatchObject({ type: 'error', error: { code } });
    await peer.waitClosed();
    expect(await (await agent.connect()).request('ping', {})).toMatchObject({ pong: true });
  });

  it('refuses a request before the handshake (out-of-order), then closes', async () => {
    const agent = await startAgent();
    const peer = await agent.raw();
    expect(await peer.next()).toMatchObject({ type: 'hello' });
    peer.send({ type: 'request', id: 7, verb: 'ping', args: {} });
    expect(await peer.next()).toMatchObject({ type: 'error', id: 7, error: { code: 'out-of-order' } });
    await peer.waitClosed();
  });

  it('refuses a request naming another instance or tenant on this socket (wrong-instance), then closes', async () => {
    const agent = await startAgent();
    const { peer } = await agent.rawReady();
    peer.send({ type: 'request', id: 1, verb: 'ping', args: { instance_id: INSTANCE } });
    expect(await peer.next()).toMatchObject({ id: 1, ok: true });
    peer.send({ type: 'request', id: 2, verb: 'drain', args: { instance_id: 'globex-gateway-0', deadline_ms: 10 } });
    expect(await peer.next()).toMatchObject({ id: 2, ok: false, error: { code: 'wrong-instance', message: expect.stringContaining('globex-gateway-0') } });
    await peer.waitClosed();

    const second = await agent.rawReady();
    second.peer.send({ type: 'request', id: 1, verb: 'ping', args: { tenant_id: 'globex' } });
    expect(await second.peer.next()).toMatchObject({ id: 1, ok: false, error: { code: 'wrong-instance' } });
    await second.peer.waitClosed();
  });

  it('survives every kind of bad input and still answers ping on a new connection', async () => {
    const agent = await startAgent();
    const hostile: Buffer[] = [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      rawFrame(Buffer.from('{"type":"hello-ack"')).subarray(0, 10),
      Buffer.from([0, 0]),
      rawFrame(Buffer.alloc(0), 0xffff_ffff),
      rawFrame(Buffer.from([0xc3, 0x28])),
      rawFrame(Buffer.from('null')),
      rawFrame(Buffer.from(JSON.stringify({ type: 'hello-ack', protocol_version: 'one', instance_id: INSTANCE }))),
      rawFrame(Buffer.from(JSON.stringify({ type: 'hello-ack', protocol_version: PROTOCOL_VERSION, instance_id: 'BAD ID' }))),
    ];
    for (const bytes of hostile) {
      const peer = await agent.raw();
      peer.sendBytes(bytes);
      peer.destroy();
    }
    // Hang up at every point of the handshake, many at once.
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const peer = await agent.raw();
        if (i % 2) await peer.next();
        peer.destroy();
      }),
    );
    // Requests in flight when the host disappears.
    const { peer } = await agent.rawReady();
    for (let id = 1; id <= 20; id++) peer.send({ type: 'request', id, verb: 'readiness', args: {} });
    peer.destroy();

    const client = await agent.connect();
    expect(await client.request('ping', {})).toMatchObject({ pong: true, instance_id: INSTANCE });
    expect(agent.proc.exitCode).toBeNull();
    expect(agent.stderr()).not.toMatch(/Uncaught|TypeError|RangeError/);
  });
});

describe('guest agent: the process', () => {
  it('exits 0 on SIGTERM and removes its socket', async () => {
    const agent = await startAgent();
    await (await agent.connect()).request('ping', {});
    agent.proc.kill('SIGTERM');
    const result = await agent.proc;
    expect(result.exitCode).toBe(0);
    await expect(access(agent.agentSocket)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.each([
    [['--config', '/nonexistent/mvm.json'], /--listen is required/],
    [['--listen', '1024'], /AF_VSOCK/],
    [['--listen', '/tmp/x.sock', '--bogus'], /Unknown option/],
    [['--listen', '/tmp/x.sock', '--simulate-in-flight-ms', 'soon'], /non-negative integer/],
  ])('refuses bad usage %j with exit code 2', async (args, message) => {
    const result = await execa('node', ['--import', 'tsx', AGENT_MAIN, ...args], { cwd: REPO_ROOT, reject: false });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it('will not take over a socket path another agent is listening on', async () => {
    const agent = await startAgent();
    const result = await execa('node', ['--import', 'tsx', AGENT_MAIN, '--config', agent.configPath, '--listen', agent.agentSocket], { cwd: REPO_ROOT, reject: false });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/another process is listening/);
    expect(await (await agent.connect()).request('ping', {})).toMatchObject({ pong: true });

    // Killed outright, the agent leaves its socket file behind; a restarted agent replaces it.
    agent.proc.kill('SIGKILL');
    await agent.proc;
    await access(agent.agentSocket);
    const restarted = execa('node', ['--import', 'tsx', AGENT_MAIN, '--config', agent.configPath, '--listen', agent.agentSocket], { cwd: REPO_ROOT, reject: false });
    cleanups.push(async () => {
      restarted.kill('SIGKILL');
      await restarted;
    });
    await new Promise<void>((resolve) => restarted.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('listening on') && resolve()));
    expect(await (await agent.connect()).request('ping', {})).toMatchObject({ pong: true, instance_id: INSTANCE });
  });
});
