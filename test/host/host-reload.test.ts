import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { aDesiredState, REPO_ROOT, tempDir } from '../helpers/fixtures.ts';
import { aTestHost, type TestHost } from './helpers.ts';

/**
 * Live reloads through the host (issue 7 §1): a pool revision that changes only config_version
 * or secrets_epoch reaches running instances over the reload verbs, with no reboot; a role that
 * does not enable them, or a new bundle, waits for the next boot. Fake driver, real LMDB.
 */

let current: TestHost | undefined;
afterEach(async () => {
  await current?.host.close();
  current = undefined;
});

const GATEWAY = 'acme-gateway-0';
const WORKER = 'acme-workers-0';

async function fleet(roles?: string): Promise<{ t: TestHost; doc: any }> {
  const t = await aTestHost(roles ? { roles } : {});
  current = t;
  const doc = aDesiredState();
  expect((await t.host.apply(doc)).applied).toBe(true);
  await t.settle();
  return { t, doc };
}

/** The same document, one generation later, with a pool's revision changed. */
function revised(doc: any, pool: string, change: Record<string, unknown>): any {
  const next = structuredClone(doc);
  next.generation += 1;
  const p = next.tenants.find((t: any) => t.tenant_id === 'acme').pools.find((x: any) => x.pool_id === pool);
  p.revision = { ...p.revision, ...change };
  return next;
}

const reloadCalls = (t: TestHost, id: string) => t.driver.calls.filter((c) => c.op === 'reload' && c.instanceId === id).length;
const openclawJson = (t: TestHost, id: string) => t.driver.drive(id, 'config')!.files['openclaw.json'];
const mvmJson = (t: TestHost, id: string) => JSON.parse(t.driver.drive(id, 'config')!.files['mvm.json']!) as { config_version: number; secrets_epoch: number };
const journalOf = (t: TestHost, id: string) => t.host.journal({ instanceId: id }).filter((e) => e.event.startsWith('reload')).map((e) => ({ kind: e.kind, event: e.event, detail: e.detail }));

describe('host: a new config_version or secrets_epoch reaches running instances live', () => {
  it('a running gateway gets config-reload with the new version and no reboot; the view and the journal show it', async () => {
    const { t, doc } = await fleet();
    expect(t.host.instance(GATEWAY)).toMatchObject({ status: 'running', config_version: 3, secrets_epoch: 2 });
    const gatewaySettings = openclawJson(t, GATEWAY);
    expect(gatewaySettings).toContain('"gateway"');
    await t.host.apply(revised(doc, 'gateway', { config_version: 4 }));
    await t.settle();
    // Only mvm.json carries the version: the gateway's own file is byte for byte the same, so its service is not restarted.
    expect(openclawJson(t, GATEWAY)).toBe(gatewaySettings);

    expect(reloadCalls(t, GATEWAY)).toBe(1);
    expect(t.driver.vm(GATEWAY)).toMatchObject({ state: 'running', bootCount: 1, restoreCount: 0, reloadCount: 1, applied: { config_version: 4, secrets_epoch: 2 } });
    expect(mvmJson(t, GATEWAY).config_version).toBe(4);
    expect(t.host.instance(GATEWAY)).toMatchObject({ status: 'running', status_reason: null, config_version: 4, secrets_epoch: 2, revision: { config_version: 4 } });
    expect((t.host.instance(GATEWAY)!.state as { running: { reload: string } }).running.reload).toBe('idle');
    expect(journalOf(t, GATEWAY)).toEqual([
      { kind: 'command', event: 'reload', detail: { applied: { config_version: 3, secrets_epoch: 2 }, revision: { config_version: 4, secrets_epoch: 2 } } },
      { kind: 'observation', event: 'reload.applied', detail: { applied: { config_version: 4, secrets_epoch: 2 } } },
    ]);
    // Another pool's instances are not touched.
    expect(reloadCalls(t, WORKER)).toBe(0);
    // No transition out of running was journaled.
    expect(t.host.journal({ instanceId: GATEWAY }).filter((e) => e.kind === 'transition').map((e) => e.to).at(-1)).toBe('running');
  });

  it('a new secrets_epoch reaches every running worker with secrets-reload and the store\'s current secrets, with no reboot', async () => {
    const { t, doc } = await fleet();
    const running = t.host.instances({ pool: 'workers', status: 'running' }).map((i) => i.instance_id);
    expect(running.length).toBeGreaterThan(1);
    await t.host.apply(revised(doc, 'workers', { secrets_epoch: 3 }));
    await t.settle();
    for (const id of running) {
      expect(reloadCalls(t, id)).toBe(1);
      expect(t.driver.vm(id)).toMatchObject({ bootCount: 1, applied: { config_version: 3, secrets_epoch: 3 } });
      expect(t.host.instance(id)).toMatchObject({ status: 'running', config_version: 3, secrets_epoch: 3 });
    }
    // The same document again changes nothing: nothing lags.
    await t.host.apply(revised(doc, 'workers', { secrets_epoch: 3 }));
    await t.settle();
    for (const id of running) expect(reloadCalls(t, id)).toBe(1);
  });

  it('a failed reload leaves the VM running with what it had and the reason visible; the next apply tries again', async () => {
    const { t, doc } = await fleet();
    t.driver.failNext('reload', { instanceId: GATEWAY, code: 'agent' });
    const next = revised(doc, 'gateway', { config_version: 4, secrets_epoch: 5 });
    await t.host.apply(next);
    await t.settle();
    expect(t.host.instance(GATEWAY)).toMatchObject({ status: 'running', status_reason: 'reload: agent: reload acme-gateway-0: injected fault', config_version: 3, secrets_epoch: 2 });
    expect((t.host.instance(GATEWAY)!.state as { running: { reload: string } }).running.reload).toBe('failed');
    expect(t.driver.vm(GATEWAY)).toMatchObject({ bootCount: 1, applied: { config_version: 3, secrets_epoch: 2 } });
    expect(journalOf(t, GATEWAY).map((e) => [e.kind, e.event])).toEqual([
      ['command', 'reload'],
      ['error', 'reload.failed'],
    ]);
    expect(journalOf(t, GATEWAY)[1]!.detail).toMatchObject({ reason: 'reload: agent: reload acme-gateway-0: injected fault' });

    await t.host.apply(next);
    await t.settle();
    expect(t.host.instance(GATEWAY)).toMatchObject({ status: 'running', status_reason: null, config_version: 4, secrets_epoch: 5 });
    expect(t.driver.vm(GATEWAY)).toMatchObject({ bootCount: 1, reloadCount: 1, applied: { config_version: 4, secrets_epoch: 5 } });
  });

  it('a new bundle is not reloaded: it takes effect at the next boot', async () => {
    const { t, doc } = await fleet();
    await t.host.apply(revised(doc, 'gateway', { artifacts: 'gateway-2026.12.01', config_version: 4 }));
    await t.settle();
    expect(reloadCalls(t, GATEWAY)).toBe(0);
    expect(t.host.instance(GATEWAY)).toMatchObject({ status: 'running', config_version: 3, revision: { artifacts: 'gateway-2026.12.01', config_version: 4 } });
    t.driver.crash(GATEWAY);
    await t.settle();
    expect(t.host.instance(GATEWAY)).toMatchObject({ status: 'running', config_version: 4 });
    expect(t.driver.vm(GATEWAY)).toMatchObject({ bootCount: 2, applied: { config_version: 4 } });
    expect(mvmJson(t, GATEWAY).config_version).toBe(4);
  });
});

describe('host: a role that does not enable the reload handlers', () => {
  /** The built-in manifests, with the worker's config-reload and secrets-reload handlers taken out. */
  async function rolesWithoutWorkerReloads(): Promise<string> {
    const dir = await tempDir('mvm-roles-');
    await cp(path.join(REPO_ROOT, 'nix/manifests'), dir, { recursive: true });
    const file = path.join(dir, 'roles', 'worker.json');
    const worker = JSON.parse(await readFile(file, 'utf8'));
    worker.vsock.handlers = worker.vsock.handlers.filter((h: string) => h !== 'config-reload' && h !== 'secrets-reload');
    await writeFile(file, `${JSON.stringify(worker, null, 2)}\n`);
    return dir;
  }

  it('gets no reload (its chart has no reloading states) and picks the change up at its next boot', async () => {
    const { t, doc } = await fleet(await rolesWithoutWorkerReloads());
    expect((t.host.instance(WORKER)!.state as { running: Record<string, unknown> }).running.reload).toBeUndefined();
    await t.host.apply(revised(doc, 'workers', { config_version: 4, secrets_epoch: 3 }));
    await t.settle();
    expect(t.driver.calls.filter((c) => c.op === 'reload')).toEqual([]);
    expect(t.host.instance(WORKER)).toMatchObject({ status: 'running', config_version: 3, secrets_epoch: 2, revision: { config_version: 4, secrets_epoch: 3 } });
    expect(mvmJson(t, WORKER)).toMatchObject({ config_version: 3, secrets_epoch: 2 });

    // A crash restarts it (restart: on-failure) from the bundle, with the new config and epoch.
    t.driver.crash(WORKER);
    await t.settle();
    expect(t.host.instance(WORKER)).toMatchObject({ status: 'running', config_version: 4, secrets_epoch: 3 });
    expect(t.driver.vm(WORKER)).toMatchObject({ bootCount: 2, applied: { config_version: 4, secrets_epoch: 3 } });
    expect(mvmJson(t, WORKER)).toMatchObject({ config_version: 4, secrets_epoch: 3 });
    expect(t.driver.calls.filter((c) => c.op === 'reload')).toEqual([]);
  });
});
