import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDeviceIdentity } from '../../src/openclaw/device-identity.ts';
import { connectOperator, invokeNode, listNodes, mintNodeSetupCode, nodeHostArgs, gatewayArgs, type NodeEntry } from '../../src/openclaw/enrolment.ts';
import { OpenClawGatewayError } from '../../src/openclaw/gateway-error.ts';
import { probeGatewayOnce, waitForGatewayReady, type ReadyResult } from '../../src/openclaw/gateway-handshake.ts';
import type { GatewayConnection } from '../../src/openclaw/gateway-client.ts';
import type { OpenClawProcess } from '../../src/openclaw/openclaw-process.ts';
import { clock, freePort, Harness, instanceDirs, ourListeners, listFiles, putSecret, sleep, writeConfig, type InstanceDirs } from './openclaw-harness.ts';

/**
 * One real gateway (openclaw@2026.9.6 on Node 24, ~20 s to start, ~1 GB) shared by these tests:
 * readiness through the real handshake, refusals with OpenClaw's codes, a worker's node host
 * enrolled with a control-plane-minted code, its reconnect after a restart, and a node host of
 * another tenant that cannot pair.
 */

const TOKEN_A = 'tenant-a-gateway-token-0123456789';
const TOKEN_B = 'tenant-b-gateway-token-9876543210';

const harness = new Harness();
let port = 0;
let gwDirs: InstanceDirs;
let gateway: OpenClawProcess;
let ready: ReadyResult;
let operator: GatewayConnection;
const figures: Record<string, number> = {};

function operatorIdentity() {
  return loadDeviceIdentity(join(harness.parent, 'control-plane', 'operator-identity.json'));
}

/** The last lines of a process's output file, for a failure message. */
function outputTail(file: string, lines = 40): string {
  return existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : `(no ${file})`;
}

async function waitForNode(displayName: string, want: (n: NodeEntry) => boolean, timeoutMs: number): Promise<NodeEntry | undefined> {
  const deadline = clock.now() + timeoutMs;
  while (clock.now() < deadline) {
    const node = (await listNodes(operator, clock, clock.now() + 5_000)).find((n) => n.displayName === displayName);
    if (node !== undefined && want(node)) return node;
    await sleep(250);
  }
  return undefined;
}

beforeAll(async () => {
  port = await freePort();
  gwDirs = instanceDirs(harness.parent, 'acme-gateway-0');
  putSecret(gwDirs, 'gateway-token', TOKEN_A);
  // The pool enables Telegram but its secret is absent: the connector stays out of the config and the gateway still runs.
  const rendered = writeConfig(gwDirs, {
    format: 'openclaw-gateway',
    tenant_id: 'acme',
    instance_id: 'acme-gateway-0',
    listen: { address: '127.0.0.1', port },
    token_secret: 'gateway-token',
    connectors: [{ name: 'telegram', secrets: ['telegram-bot-token'], state_on_data: false }],
    secrets_present: ['gateway-token'],
    plugins_available: [],
  });
  expect(rendered.connectors).toEqual([{ name: 'telegram', enabled: false, reason: 'missing-secret:telegram-bot-token' }]);
  gateway = harness.start(gwDirs, gatewayArgs(), 'gateway');
  ready = await waitForGatewayReady(
    { host: '127.0.0.1', port, token: TOKEN_A, role: 'operator', scopes: ['operator.read'], identity: operatorIdentity() },
    { clock, deadline: clock.now() + 150_000, intervalMs: 200 },
  );
  figures.gateway_launch_to_ready_ms = clock.now() - gateway.startedAt;
  operator = await connectOperator({ host: '127.0.0.1', port, token: TOKEN_A, identity: operatorIdentity() }, clock, clock.now() + 15_000);
}, 180_000);

afterAll(async () => {
  operator?.close();
  await harness.stopAll();
  const left = await ourListeners(port, harness.parent);
  harness.cleanup();
  console.log(`openclaw figures: ${JSON.stringify(figures)}`);
  expect(left, `processes of this test still listen on ${port} after stopping the gateway`).toEqual([]);
}, 60_000);

describe('a real OpenClaw gateway from a generated config', () => {
  it('becomes ready through the handshake: /readyz 200, then connect, then hello-ok with the requested role', () => {
    figures.hello_ok_ms = ready.hello_ok_ms;
    expect(ready.server_version).toBe('2026.9.6');
    expect(ready.hello.type).toBe('hello-ok');
    expect(ready.hello.auth?.role).toBe('operator');
    expect(ready.hello.auth?.scopes).toEqual(['operator.read']);
    // The device identity persists: the gateway issued it a device token, kept in the identity file.
    const saved = JSON.parse(readFileSync(join(harness.parent, 'control-plane', 'operator-identity.json'), 'utf8'));
    expect(Object.keys(saved.device_tokens)).toEqual([`ws://127.0.0.1:${port}`]);
  });

  it('refuses a wrong token with AUTH_TOKEN_MISMATCH as a final (not retryable) error, quickly', async () => {
    const started = clock.now();
    const error = await waitForGatewayReady({ host: '127.0.0.1', port, token: 'not-the-token', role: 'operator', scopes: ['operator.read'], identity: null }, { clock, deadline: clock.now() + 30_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenClawGatewayError);
    expect((error as OpenClawGatewayError).detailsCode).toBe('AUTH_TOKEN_MISMATCH');
    expect((error as OpenClawGatewayError).retryable).toBe(false);
    expect((error as OpenClawGatewayError).toDriverError('checkReadiness', 'acme-gateway-0').code).toBe('openclaw:AUTH_TOKEN_MISMATCH');
    expect(clock.now() - started).toBeLessThan(5_000);
  });

  it('reports a closed port as a retryable failure within the probe deadline', async () => {
    const closed = await freePort();
    const error = await probeGatewayOnce({ host: '127.0.0.1', port: closed, token: TOKEN_A, role: 'operator', scopes: ['operator.read'], identity: null }, clock, clock.now() + 2_000).catch((e: unknown) => e);
    expect((error as OpenClawGatewayError).code).toBe('UNREACHABLE');
    expect((error as OpenClawGatewayError).toDriverError('checkReadiness', 'x').code).toBe('not-ready');
  });

  it('enrols a worker node host with a minted single-use code; it is listed as paired and system.which round-trips', async () => {
    const code = await mintNodeSetupCode(operator, clock, clock.now() + 10_000);
    expect(code.gatewayUrl).toBe(`ws://127.0.0.1:${port}`);
    const worker = instanceDirs(harness.parent, 'acme-worker-0');
    writeConfig(worker, { format: 'openclaw-node', tenant_id: 'acme', instance_id: 'acme-worker-0', listen: null, token_secret: null, connectors: [], secrets_present: [], plugins_available: [] });
    putSecret(worker, 'node-setup-code', code.setupCode);
    const started = clock.now();
    const node = harness.start(worker, nodeHostArgs({ gatewayHost: '127.0.0.1', gatewayPort: port, displayName: 'acme-worker-0', setupCode: readFileSync(join(worker.mounts.secrets, 'node-setup-code'), 'utf8').trim() }), 'node');
    const listed = await waitForNode('acme-worker-0', (n) => n.connected === true && n.approvalState === 'approved', 90_000);
    figures.node_launch_to_connected_ms = clock.now() - started;
    expect(listed, 'the enrolled node host never showed up as connected and approved').toBeDefined();
    expect(listed!.paired).toBe(true);
    expect(listed!.commands).toContain('system.which');
    // The node host's first invocation loads its command handlers; on 2 busy cores (other files run
    // gateways at the same time) that alone has taken over 10 s, so the bounds leave room for it.
    const invoked = await invokeNode(operator, { nodeId: listed!.nodeId, command: 'system.which', params: { bins: ['sh'] }, timeoutMs: 40_000 }, clock, clock.now() + 50_000);
    expect(invoked.ok).toBe(true);
    expect(invoked.payload).toEqual({ bins: { sh: expect.stringMatching(/\/sh$/) } });
    figures.node_rss_bytes = node.memory().reduce((sum, p) => sum + p.rss_bytes, 0);
    figures.gateway_rss_bytes = gateway.memory().reduce((sum, p) => sum + p.rss_bytes, 0);

    // Restart: no code this time; the device token stored on the worker's /data is enough.
    const stopped = await node.stop(10_000);
    figures.node_stop_ms = stopped.stop_ms;
    const gone = await waitForNode('acme-worker-0', (n) => n.connected !== true, 20_000);
    expect(gone, 'the stopped node host still shows as connected').toBeDefined();
    harness.start(worker, nodeHostArgs({ gatewayHost: '127.0.0.1', gatewayPort: port, displayName: 'acme-worker-0', setupCode: null }), 'node-restarted');
    const again = await waitForNode('acme-worker-0', (n) => n.connected === true, 90_000);
    // Once (under a full parallel run) the restarted node host did not come back within 90 s; its own output says why.
    expect(again?.nodeId, `the restarted node host did not reconnect; the end of its output:\n${outputTail(join(worker.root, 'node-restarted.out'))}`).toBe(listed!.nodeId);
    const after = await invokeNode(operator, { nodeId: listed!.nodeId, command: 'system.which', params: { bins: ['sh'] }, timeoutMs: 40_000 }, clock, clock.now() + 50_000);
    expect(after.ok).toBe(true);

    // All of the worker's OpenClaw state is on its data drive; its config drive was never written.
    expect(listFiles(worker.mounts.config)).toEqual(['openclaw.json']);
    expect(listFiles(worker.mounts.data).some((f) => f.startsWith('openclaw/state/'))).toBe(true);
  }, 240_000);

  it('does not pair a node host of another tenant that dials this address with its own token and code', async () => {
    const other = instanceDirs(harness.parent, 'globex-worker-0');
    writeConfig(other, { format: 'openclaw-node', tenant_id: 'globex', instance_id: 'globex-worker-0', listen: null, token_secret: null, connectors: [], secrets_present: [], plugins_available: [] });
    // Tenant B's code: well-formed, but minted for B (its bootstrap token is unknown to A's gateway).
    const foreignCode = Buffer.from(JSON.stringify({ url: `ws://127.0.0.1:${port}`, bootstrapToken: 'globex-bootstrap-token-not-issued-by-acme', expiresAtMs: clock.now() + 600_000 })).toString('base64url');
    const log = join(other.root, 'node.out');
    harness.start(other, nodeHostArgs({ gatewayHost: '127.0.0.1', gatewayPort: port, displayName: 'globex-worker-0', setupCode: foreignCode }), 'node', { OPENCLAW_GATEWAY_TOKEN: TOKEN_B });
    const deadline = clock.now() + 60_000;
    while (clock.now() < deadline && !(existsSync(log) && /unauthorized|mismatch|invalid|expired|refused|closed/i.test(readFileSync(log, 'utf8')))) await sleep(250);
    expect(readFileSync(log, 'utf8')).toMatch(/unauthorized|mismatch|invalid|expired|refused|closed/i);
    const nodes = await listNodes(operator, clock, clock.now() + 5_000);
    expect(nodes.map((n) => n.displayName)).not.toContain('globex-worker-0');
    expect(listFiles(other.mounts.data).join('\n')).not.toMatch(/device-auth|device_auth/);
  }, 120_000);

  it('keeps the gateway state under its data drive and never writes its config drive', () => {
    expect(listFiles(gwDirs.mounts.config)).toEqual(['openclaw.json']);
    expect(listFiles(gwDirs.mounts.secrets)).toEqual(['gateway-token']);
    const data = listFiles(gwDirs.mounts.data);
    expect(data.some((f) => f.startsWith('openclaw/state/state/openclaw.sqlite'))).toBe(true);
    expect(data.some((f) => f === 'openclaw/logs/openclaw.log' || f.startsWith('openclaw/logs/'))).toBe(true);
    expect(data.filter((f) => !f.startsWith('openclaw/'))).toEqual([]);
  });
});
