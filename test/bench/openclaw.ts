import { holdProcessOpen } from '../../src/common/clock.ts';
import { loadDeviceIdentity } from '../../src/openclaw/device-identity.ts';
import { connectOperator, gatewayArgs, listNodes, mintNodeSetupCode, nodeHostArgs } from '../../src/openclaw/enrolment.ts';
import { probeGatewayOnce, waitForGatewayReady } from '../../src/openclaw/gateway-handshake.ts';
import { findOpenClaw } from '../../src/openclaw/install-location.ts';
import { clock, freePort, Harness, instanceDirs, putSecret, sleep, writeConfig } from '../openclaw/openclaw-harness.ts';
import { join } from 'node:path';

/**
 * The real OpenClaw on this machine: gateway launch to ready (through the handshake), hello-ok
 * latency, node host launch to enrolled, and resident memory of each (from /proc, whole process
 * groups). Null when OpenClaw is not installed (`npm run openclaw:install`).
 */
export async function benchOpenClaw(): Promise<{ rows: { label: string; figure: string }[]; json: Record<string, number> } | null> {
  if (findOpenClaw() === null) return null;
  const harness = new Harness();
  const json: Record<string, number> = {};
  // The clock's timers and the children are unref'd; keep the bench process alive while it waits on them.
  const release = holdProcessOpen();
  try {
    const port = await freePort();
    const gw = instanceDirs(harness.parent, 'bench-gateway-0');
    putSecret(gw, 'gateway-token', 'bench-gateway-token');
    writeConfig(gw, { format: 'openclaw-gateway', config_version: 1, tenant_id: 'bench', instance_id: 'bench-gateway-0', listen: { address: '127.0.0.1', port }, token_secret: 'gateway-token', connectors: [], secrets_present: ['gateway-token'], plugins_available: [] });
    const identity = loadDeviceIdentity(join(harness.parent, 'operator.json'));
    const target = { host: '127.0.0.1', port, token: 'bench-gateway-token', role: 'operator' as const, scopes: ['operator.read'], identity };
    const gateway = harness.start(gw, gatewayArgs(), 'gateway');
    const ready = await waitForGatewayReady(target, { clock, deadline: clock.now() + 180_000, intervalMs: 100 });
    json.gateway_launch_to_ready_ms = clock.now() - gateway.startedAt;
    const hellos: number[] = [ready.hello_ok_ms];
    for (let i = 0; i < 9; i += 1) hellos.push((await probeGatewayOnce(target, clock, clock.now() + 10_000)).hello_ok_ms);
    hellos.sort((a, b) => a - b);
    json.hello_ok_median_ms = hellos[Math.floor(hellos.length / 2)]!;
    json.hello_ok_max_ms = hellos[hellos.length - 1]!;

    const operator = await connectOperator(target, clock, clock.now() + 15_000);
    const code = await mintNodeSetupCode(operator, clock, clock.now() + 10_000);
    const worker = instanceDirs(harness.parent, 'bench-worker-0');
    writeConfig(worker, { format: 'openclaw-node', config_version: 1, tenant_id: 'bench', instance_id: 'bench-worker-0', listen: null, token_secret: null, connectors: [], secrets_present: [], plugins_available: [] });
    const node = harness.start(worker, nodeHostArgs({ gatewayHost: '127.0.0.1', gatewayPort: port, displayName: 'bench-worker-0', setupCode: code.setupCode }), 'node');
    const deadline = clock.now() + 120_000;
    while (clock.now() < deadline) {
      const listed = (await listNodes(operator, clock, clock.now() + 5_000)).find((n) => n.displayName === 'bench-worker-0');
      if (listed?.connected === true && listed.approvalState === 'approved') break;
      await sleep(100);
    }
    json.node_launch_to_enrolled_ms = clock.now() - node.startedAt;
    // Memory after a short settle: the figures that size a VM.
    await sleep(5_000);
    json.gateway_rss_mib = Math.round(gateway.memory().reduce((s, p) => s + p.rss_bytes, 0) / 2 ** 20);
    json.node_rss_mib = Math.round(node.memory().reduce((s, p) => s + p.rss_bytes, 0) / 2 ** 20);
    operator.close();
    json.node_stop_ms = (await node.stop(10_000)).stop_ms;
    json.gateway_stop_ms = (await gateway.stop(10_000)).stop_ms;
  } finally {
    await harness.stopAll(2_000);
    harness.cleanup();
    release();
  }
  return {
    rows: [
      { label: 'OpenClaw gateway launch -> ready (/readyz + hello-ok)', figure: `${(json.gateway_launch_to_ready_ms! / 1000).toFixed(1)} s` },
      { label: 'OpenClaw hello-ok after socket open (median / max of 10)', figure: `${json.hello_ok_median_ms} / ${json.hello_ok_max_ms} ms` },
      { label: 'OpenClaw node host launch -> enrolled and connected', figure: `${(json.node_launch_to_enrolled_ms! / 1000).toFixed(1)} s` },
      { label: 'OpenClaw gateway RSS (process group)', figure: `${json.gateway_rss_mib} MiB` },
      { label: 'OpenClaw node host RSS (process group)', figure: `${json.node_rss_mib} MiB` },
      { label: 'OpenClaw stop (SIGTERM -> gone): node host / gateway', figure: `${json.node_stop_ms} / ${json.gateway_stop_ms} ms` },
    ],
    json,
  };
}
