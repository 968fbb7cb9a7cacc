import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuestConfig, type GuestService } from '../../src/guest/config.ts';
import { OpenClawGuest } from '../../src/guest/openclaw-guest.ts';
import type { ServiceProbeResult } from '../../src/guest/service-probe.ts';
import { loadDeviceIdentity } from '../../src/openclaw/device-identity.ts';
import { connectOperator, gatewayArgs, mintNodeSetupCode, nodeHostArgs } from '../../src/openclaw/enrolment.ts';
import { waitForGatewayReady } from '../../src/openclaw/gateway-handshake.ts';
import { serviceOutputPath } from '../../src/openclaw/openclaw-layout.ts';
import type { OpenClawProcess } from '../../src/openclaw/openclaw-process.ts';
import { lastConnectionEvent, tcpEstablishedTo } from '../../src/openclaw/node-connection.ts';
import { openclawServiceSpec } from '../../src/openclaw/service-spec.ts';
import { clock, freePort, Harness, instanceDirs, ourListeners, putSecret, sleep, writeConfig, type InstanceDirs } from './openclaw-harness.ts';

/**
 * Worker readiness = connected, against the real openclaw@2026.9.6: the guest agent's
 * `openclaw-node-connected` probe (src/guest/openclaw-guest.ts) on a real node host. It is not
 * ready while its process merely runs, becomes ready once the node host is connected to its
 * gateway, is not ready while the gateway is down, and is ready again after the gateway returns.
 */

const TOKEN = 'node-readiness-gateway-token-0123456789';
const harness = new Harness();
let port = 0;
let gwDirs: InstanceDirs;
let workerDirs: InstanceDirs;
let gateway: OpenClawProcess;
const figures: Record<string, number> = {};

const NODE_SERVICE: GuestService = { name: 'openclaw-node', program: 'openclaw', ports: [], args: ['node', 'run'], readiness: { kind: 'openclaw-node-connected', timeout_s: 120, interval_s: 2 }, config: { format: 'openclaw-node', file: 'openclaw.json' } };

function workerConfig(gatewayPort: number): GuestConfig {
  return GuestConfig.parse({
    schema_version: 1,
    instance_id: 'acme-workers-0',
    tenant_id: 'acme',
    role: 'worker',
    config_version: 1,
    services: [NODE_SERVICE],
    ports: [],
    vsock: { agent_port: 1024, handlers: ['ping', 'readiness'] },
    depends_on: [{ role: 'gateway', instance_id: 'acme-gateway-0', ipv4: '127.0.0.1', ports: { 'gateway-ws': gatewayPort } }],
    secrets: [{ name: 'gateway-token', generate: 'token' }, { name: 'node-setup-code', generate: 'openclaw-setup-code' }],
  });
}

function startGateway(): OpenClawProcess {
  return harness.start(gwDirs, gatewayArgs(), 'gateway');
}

async function gatewayReady(): Promise<void> {
  await waitForGatewayReady({ host: '127.0.0.1', port, token: TOKEN, role: 'operator', scopes: ['operator.read'], identity: null }, { clock, deadline: clock.now() + 150_000, intervalMs: 200 });
}

async function probeUntil(guest: OpenClawGuest, config: GuestConfig, want: ServiceProbeResult['state'], timeoutMs: number): Promise<ServiceProbeResult> {
  const deadline = clock.now() + timeoutMs;
  for (;;) {
    const result = (await guest.probe(NODE_SERVICE, config))!;
    if (result.state === want) return result;
    if (clock.now() > deadline) throw new Error(`the node host did not become ${want} within ${timeoutMs} ms; last: ${JSON.stringify(result)}`);
    await sleep(250);
  }
}

beforeAll(async () => {
  port = await freePort();
  gwDirs = instanceDirs(harness.parent, 'acme-gateway-0');
  workerDirs = instanceDirs(harness.parent, 'acme-workers-0');
  putSecret(gwDirs, 'gateway-token', TOKEN);
  putSecret(workerDirs, 'gateway-token', TOKEN);
  writeConfig(gwDirs, { format: 'openclaw-gateway', tenant_id: 'acme', instance_id: 'acme-gateway-0', listen: { address: '127.0.0.1', port }, token_secret: 'gateway-token', connectors: [], secrets_present: ['gateway-token'], plugins_available: [] });
  gateway = startGateway();
  await gatewayReady();
  figures.gateway_launch_to_ready_ms = clock.now() - gateway.startedAt;
  // The leftover check in afterAll can see our gateway: while it runs, it is found.
  expect(await ourListeners(port, harness.parent)).not.toEqual([]);
}, 180_000);

afterAll(async () => {
  await harness.stopAll();
  const left = await ourListeners(port, harness.parent);
  harness.cleanup();
  console.log(`node readiness figures: ${JSON.stringify(figures)}`);
  expect(left, `processes of this test still listen on ${port}`).toEqual([]);
}, 60_000);

describe('worker readiness is "connected to its gateway", not "process runs" (real OpenClaw)', () => {
  it('is not ready while the node host only runs, ready once connected, not ready while the gateway is down, ready again when it returns', async () => {
    const identity = loadDeviceIdentity(join(harness.parent, 'control-plane', 'operator-identity.json'));
    const operator = await connectOperator({ host: '127.0.0.1', port, token: TOKEN, identity }, clock, clock.now() + 15_000);
    const code = await mintNodeSetupCode(operator, clock, clock.now() + 10_000).finally(() => operator.close());
    const guest = new OpenClawGuest({ clock, secretsDir: workerDirs.mounts.secrets, dataDir: workerDirs.mounts.data });
    const config = workerConfig(port);

    const node = harness.startService(workerDirs, nodeHostArgs({ gatewayHost: '127.0.0.1', gatewayPort: port, displayName: 'acme-workers-0', setupCode: code.setupCode }), 'openclaw-node', { OPENCLAW_GATEWAY_TOKEN: TOKEN });
    // The process runs (its group is alive) but has not said hello yet: not ready.
    const early = (await guest.probe(NODE_SERVICE, config))!;
    expect(node.groupPids().length).toBeGreaterThan(0);
    expect(early).toMatchObject({ state: 'not-ready', probe: 'openclaw-node-connected' });

    await probeUntil(guest, config, 'ready', 120_000);
    figures.node_start_to_connected_ms = clock.now() - node.startedAt;
    const output = readFileSync(serviceOutputPath(workerDirs.mounts.data, 'openclaw-node'), 'utf8');
    expect(output.startsWith(openclawServiceSpec.start_marker)).toBe(true);
    expect(output).toContain(`node host gateway connected: ws://127.0.0.1:${port}`);
    // Connected, but to another endpoint than the one its config drive names: not ready.
    const elsewhere = (await guest.probe(NODE_SERVICE, workerConfig(port + 1)))!;
    expect(elsewhere.state).toBe('not-ready');
    expect(elsewhere.detail).toContain(`not to its gateway ws://127.0.0.1:${port + 1}`);

    // The gateway goes away; the node host keeps running and retrying, and is not ready.
    const stoppedAt = clock.now();
    await gateway.stop(10_000);
    const down = await probeUntil(guest, config, 'not-ready', 30_000);
    figures.gateway_down_to_node_not_ready_ms = clock.now() - stoppedAt;
    expect(down.detail).toMatch(/closed|connect failed|no TCP connection/);
    for (let i = 0; i < 8; i++) {
      await sleep(500);
      expect(node.groupPids().length, 'the node host keeps running while its gateway is down').toBeGreaterThan(0);
      expect((await guest.probe(NODE_SERVICE, config))!.state).toBe('not-ready');
    }

    // The gateway returns on the same data and port: the node host reconnects with its stored device token.
    gateway = startGateway();
    await gatewayReady();
    const back = clock.now();
    await probeUntil(guest, config, 'ready', 120_000);
    figures.gateway_ready_to_node_ready_ms = clock.now() - back;
  }, 360_000);
});

describe('the two local signals', () => {
  it('reads only the connection events after the last start marker', () => {
    const marker = openclawServiceSpec.start_marker;
    expect(lastConnectionEvent(`${marker}\nnode host gateway connected: ws://10.0.0.2:18789\n${marker}\nsome log line\n`)).toBeNull();
    expect(lastConnectionEvent(`${marker}\nnode host gateway connected: ws://10.0.0.2:18789\nnode host gateway closed (1006): \n`)).toEqual({ event: 'closed', rest: '(1006):' });
    expect(lastConnectionEvent(`${marker}\nnode host gateway connect failed: ECONNREFUSED\nnode host gateway connected: ws://10.0.0.2:18789\n`)).toEqual({ event: 'connected', rest: ': ws://10.0.0.2:18789' });
  });

  it('sees an established TCP connection to an endpoint, and none once it is closed', async () => {
    const server = net.createServer((socket) => socket.on('error', () => undefined));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const serverPort = (server.address() as net.AddressInfo).port;
    expect(await tcpEstablishedTo({ host: '127.0.0.1', port: serverPort })).toBe(false);
    const client = net.connect(serverPort, '127.0.0.1');
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    expect(await tcpEstablishedTo({ host: '127.0.0.1', port: serverPort })).toBe(true);
    expect(await tcpEstablishedTo({ host: '127.0.0.2', port: serverPort })).toBe(false);
    client.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await sleep(100);
    expect(await tcpEstablishedTo({ host: '127.0.0.1', port: serverPort })).toBe(false);
  });
});
