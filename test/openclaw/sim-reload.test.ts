import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.ts';
import { createSimDriver, type SimDriver } from '../../src/driver/sim/sim-driver.ts';
import { vmNetwork } from '../../src/driver/sim/vm-netns.ts';
import { createHost, type Host } from '../../src/host/host.ts';
import { killSimRunners } from '../driver/kill-sim-runners.ts';
import { listeningPorts } from './openclaw-harness.ts';

/**
 * A rotated gateway token reaches a running real OpenClaw gateway (openclaw@2026.9.6 in the
 * simulator) through the host's live reload: the secret is rotated in the store, the pool's
 * secrets_epoch raised, the host sends cmd.revise, the driver rewrites the secrets drive in place
 * and sends secrets-reload, and the guest agent calls OpenClaw's secrets.reload. One gateway
 * (~20 s to start); afterAll stops it and checks nothing is left listening.
 */

const GATEWAY_PORT = 18789;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const CALL = path.join(HERE, 'gateway-call.ts');
const PACKAGE_ROOT = path.resolve(HERE, '../..');
const ID = 'ocr-gateway-0';
const figures: Record<string, number> = {};

const root = mkdtempSync(path.join(os.tmpdir(), 'ocreload-'));
const stateDir = path.join(root, 'sim');
let driver: SimDriver;
let host: Host;

function document(generation: number, secrets_epoch: number, config_version = 1) {
  return {
    schema_version: 1,
    node_id: 'oc-reload-test',
    generation,
    tenants: [
      {
        tenant_id: 'ocr',
        tenant_net_id: 3301,
        ipv4_subnet: '10.244.1.0/24',
        pools: [
          {
            pool_id: 'gateway',
            role: 'gateway',
            profile: 'openclaw-gateway',
            revision: { artifacts: 'gateway-dev', config_version, secrets_epoch },
            resources: { vcpus: 2, mem_mib: 2048, data_disk_mib: 1024 },
            desired_counts: { running: 1, warm: 0, sleeping: 0 },
          },
        ],
      },
    ],
  };
}

async function until<T>(what: string, probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs: number): Promise<T> {
  const start = systemClock.now();
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (systemClock.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => systemClock.setTimeout(() => resolve(), 250));
  }
}

/** An operator connect inside the gateway's VM with the given token: hello-ok, or OpenClaw's refusal code. */
function connect(token: string): { ok: boolean; detailsCode?: string | null; message?: string } {
  const view = host.instance(ID)!;
  const net = vmNetwork(driver.stateDir, { instance_id: ID, tenant_id: view.tenant_id, network: view.network });
  const out = execFileSync('ip', ['netns', 'exec', net.netns, process.execPath, '--import', 'tsx', CALL, String(GATEWAY_PORT), `token:${token}`, path.join(root, `operator-${token.slice(0, 6)}.json`), 'connect', '{}'], {
    cwd: PACKAGE_ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

const gatewayPid = () => Number(readFileSync(path.join(driver.vmDir(ID), 'run', 'pids', 'openclaw-gateway.pid'), 'utf8'));
const reloadState = () => (host.instance(ID)?.state as { running?: { reload?: string } } | undefined)?.running?.reload;

beforeAll(async () => {
  driver = createSimDriver({ stateDir, clock: systemClock, stopGraceMs: 3000, adoptedPollMs: 200, openclaw: 'require' });
  host = await createHost({ dataDir: path.join(root, 'data'), driver, clock: systemClock });
  const started = systemClock.now();
  expect((await host.apply(document(1, 1))).refusal).toBeNull();
  await until(`the gateway running (${host.instance(ID)?.status}: ${host.instance(ID)?.status_reason})`, () => host.instance(ID)?.status === 'running', 240_000);
  figures.gateway_apply_to_running_ms = systemClock.now() - started;
}, 300_000);

afterAll(async () => {
  try {
    if (host?.instance(ID)) host.stop(ID);
    await until('the gateway stopped', () => ['stopped', 'failed'].includes(host.instance(ID)?.status ?? 'stopped'), 90_000).catch(() => undefined);
    await host?.close();
  } finally {
    driver?.close();
    await killSimRunners(stateDir);
    console.log(`openclaw reload figures: ${JSON.stringify(figures)}`);
    const left = await listeningPorts();
    await rm(root, { recursive: true, force: true });
    expect(left.has(GATEWAY_PORT), 'a gateway still listens after the test').toBe(false);
  }
}, 180_000);

describe('a new secrets_epoch reaches the running real OpenClaw gateway', () => {
  /**
   * OpenClaw takes a rotated token without a restart: `secrets.reload` from an operator that still
   * holds the old token makes the new one get hello-ok and the old one AUTH_TOKEN_MISMATCH. By the
   * time the verb arrives the drive already carries the new token, so the guest agent logs in for
   * that call with the token the gateway last accepted from it.
   */
  it('a rotated gateway token reaches the running gateway through secrets-reload: the new token gets hello-ok, the old one is refused, same pid', async () => {
    const tokenFile = path.join(driver.vmDir(ID), 'drives', 'secrets', 'gateway-token');
    const oldToken = readFileSync(tokenFile, 'utf8').trim();
    expect(connect(oldToken)).toMatchObject({ ok: true });
    const pid = gatewayPid();
    const newToken = `rotated-${'x'.repeat(40)}`;
    host.secrets.put('ocr', 'gateway-token', newToken);
    // Until a reload the gateway knows only the old token.
    expect(connect(newToken)).toMatchObject({ ok: false, detailsCode: 'AUTH_TOKEN_MISMATCH' });

    const started = systemClock.now();
    await host.apply(document(2, 2));
    await until(`the reload finished (${reloadState()}: ${host.instance(ID)?.status_reason})`, () => reloadState() === 'idle' || reloadState() === 'failed', 60_000);
    figures.secrets_reload_ms = systemClock.now() - started;
    // The drive was rewritten in place (the bind mount in the VM sees it) and secrets-reload applied.
    expect(readFileSync(tokenFile, 'utf8').trim()).toBe(newToken);
    expect(reloadState()).toBe('idle');
    expect(host.instance(ID)).toMatchObject({ status: 'running', status_reason: null, secrets_epoch: 2, config_version: 1 });
    expect(connect(newToken)).toMatchObject({ ok: true });
    expect(connect(oldToken)).toMatchObject({ ok: false, detailsCode: 'AUTH_TOKEN_MISMATCH' });
    expect(gatewayPid()).toBe(pid);
    expect(host.journal({ instanceId: ID }).filter((e) => e.event.startsWith('reload')).map((e) => e.event)).toEqual(['reload', 'reload.applied']);
  }, 180_000);
});

describe('a new config_version reaches the running real OpenClaw gateway', () => {
  /**
   * openclaw.json does not carry config_version (mvm.json does), so a version that changes nothing
   * the gateway reads leaves its file byte for byte the same, and config-reload restarts nothing:
   * the same gateway process keeps serving, with no handshake outage.
   */
  it('a config_version that changes none of the gateway\'s settings is applied by config-reload without restarting the gateway: same pid, hello-ok throughout', async () => {
    const configDir = path.join(driver.vmDir(ID), 'drives', 'config');
    const settings = readFileSync(path.join(configDir, 'openclaw.json'), 'utf8');
    const token = readFileSync(path.join(driver.vmDir(ID), 'drives', 'secrets', 'gateway-token'), 'utf8').trim();
    const pid = gatewayPid();
    const reloadsBefore = host.journal({ instanceId: ID }).filter((e) => e.event === 'reload.applied').length;

    const started = systemClock.now();
    await host.apply(document(3, 2, 2));
    await until(`the config reload finished (${reloadState()}: ${host.instance(ID)?.status_reason})`, () => host.journal({ instanceId: ID }).filter((e) => e.event === 'reload.applied').length > reloadsBefore || reloadState() === 'failed', 60_000);
    figures.config_reload_ms = systemClock.now() - started;

    expect(reloadState()).toBe('idle');
    expect(host.instance(ID)).toMatchObject({ status: 'running', status_reason: null, config_version: 2, secrets_epoch: 2 });
    expect(JSON.parse(readFileSync(path.join(configDir, 'mvm.json'), 'utf8')).config_version).toBe(2);
    expect(readFileSync(path.join(configDir, 'openclaw.json'), 'utf8')).toBe(settings);
    expect(gatewayPid()).toBe(pid);
    expect(connect(token)).toMatchObject({ ok: true });
  }, 180_000);
});
