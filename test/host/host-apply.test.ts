import { afterEach, describe, expect, it } from 'vitest';
import { aDesiredState } from '../helpers/fixtures.ts';
import { aTestHost, type TestHost } from './helpers.ts';

let current: TestHost | undefined;
afterEach(async () => {
  await current?.host.close();
  current = undefined;
});

async function started(): Promise<TestHost> {
  current = await aTestHost();
  return current;
}

const statusesOf = (t: TestHost) => Object.fromEntries(t.host.instances().map((i) => [i.instance_id, i.status]));
const MINUTE = 60_000;

describe('host: applying a desired state', () => {
  it('brings every instance up, keeping warm and sleep targets deferred until the minimum runtime', async () => {
    const t = await started();
    const result = await t.host.apply(aDesiredState());
    expect(result).toMatchObject({ applied: true, generation: 7, refusal: null });
    await t.settle();
    expect(statusesOf(t)).toEqual({
      'acme-builds-0': 'running',
      'acme-gateway-0': 'running',
      'acme-workers-0': 'running',
      'acme-workers-1': 'running',
      'acme-workers-2': 'running',
      'acme-workers-3': 'running',
      'acme-workers-4': 'running',
      'globex-gateway-0': 'running',
      'globex-imessage-0': 'refused',
    });
    expect(t.host.instance('acme-workers-2')!.deferred).toMatchObject({ command: 'cmd.warm' });
    expect(t.host.instance('acme-workers-3')!.deferred).toMatchObject({ command: 'cmd.sleep' });
    expect(t.host.journal().filter((e) => e.kind === 'deferral').map((e) => [e.instance_id, e.event])).toEqual([
      ['acme-workers-2', 'cmd.warm'],
      ['acme-workers-3', 'cmd.sleep'],
      ['acme-workers-4', 'cmd.sleep'],
    ]);
  });

  it('warms and sleeps the deferred instances once the pool minimum runtime (600 s) has passed', async () => {
    const t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    await t.advance(9 * MINUTE);
    expect(t.host.instance('acme-workers-3')!.status).toBe('running');
    await t.advance(1 * MINUTE);
    expect(statusesOf(t)).toMatchObject({ 'acme-workers-2': 'warm', 'acme-workers-3': 'sleeping', 'acme-workers-4': 'sleeping', 'acme-workers-0': 'running' });
    expect(t.driver.vm('acme-workers-3').state).toBe('stopped');
    expect(t.driver.vm('acme-workers-3').snapshot).not.toBeNull();
    expect(t.driver.vm('acme-workers-3').drives).not.toContain('secrets');
    expect(t.driver.vm('acme-workers-2').state).toBe('paused');
  });

  it('boots no worker before its tenant gateway is ready', async () => {
    const t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    const journal = t.host.journal();
    const gatewayRunning = journal.find((e) => e.instance_id === 'acme-gateway-0' && e.to === 'running')!.seq;
    const workerBoots = journal.filter((e) => e.instance_id.startsWith('acme-workers-') && e.to === 'booting').map((e) => e.seq);
    expect(workerBoots).toHaveLength(5);
    for (const seq of workerBoots) expect(seq).toBeGreaterThan(gatewayRunning);
    const firstWorkerBootCall = t.driver.calls.findIndex((c) => c.op === 'boot' && c.instanceId?.startsWith('acme-workers-'));
    const gatewayReady = t.driver.calls.findIndex((c) => c.op === 'checkReadiness' && c.instanceId === 'acme-gateway-0');
    expect(firstWorkerBootCall).toBeGreaterThan(gatewayReady);
  });

  it('refuses a stale generation and applies nothing', async () => {
    const t = await started();
    await t.host.apply(aDesiredState());
    const older = aDesiredState();
    older.generation = 6;
    const result = await t.host.apply(older);
    expect(result).toMatchObject({ applied: false, refusal: 'stale-generation:6<7', generation: 7 });
  });

  it('applies the valid part of a document and reports the rest', async () => {
    const t = await started();
    const doc = aDesiredState();
    doc.tenants[1].pools[1].role = 'pager';
    const result = await t.host.apply(doc);
    expect(result.applied).toBe(true);
    expect(result.rejected.pools).toEqual(['tenants[1].pools[1]']);
    await t.settle();
    expect(t.host.instance('globex-imessage-0')).toBeUndefined();
    expect(t.host.instance('globex-gateway-0')!.status).toBe('running');
  });

  it('plans without doing anything: ordered steps, gateways first', async () => {
    const t = await started();
    const callsAtStart = t.driver.calls.length; // restore's describe()
    const { plan } = t.host.plan(aDesiredState());
    expect(plan!.steps.slice(0, 3).map((s) => [s.op, s.instance_id])).toEqual([
      ['create', 'acme-builds-0'],
      ['create', 'acme-gateway-0'],
      ['create', 'globex-gateway-0'],
    ]);
    expect(plan!.steps.findIndex((s) => s.role === 'worker')).toBeGreaterThan(plan!.steps.findIndex((s) => s.role === 'gateway'));
    expect(t.host.instances()).toEqual([]);
    expect(t.driver.calls.length).toBe(callsAtStart);
  });

  it('destroys through the driver the instances of a removed pool, and scales down after the minimum runtime', async () => {
    const t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    const next = aDesiredState();
    next.generation = 8;
    next.tenants[0].pools.splice(2, 1); // builds removed
    next.tenants[0].pools[1].desired_counts = { running: 1, warm: 0, sleeping: 0 }; // workers 5 -> 1
    await t.host.apply(next);
    await t.settle();
    expect(t.host.instance('acme-builds-0')).toBeUndefined();
    expect(t.driver.vm('acme-builds-0').state).toBe('absent');
    expect(t.host.instance('acme-workers-1')!.deferred).toMatchObject({ command: 'cmd.retire' });
    await t.advance(10 * MINUTE);
    expect(t.host.instances({ pool: 'workers' }).map((i) => i.instance_id)).toEqual(['acme-workers-0']);
    for (const id of ['acme-workers-1', 'acme-workers-2', 'acme-workers-3', 'acme-workers-4']) expect(t.driver.vm(id).state).toBe('absent');
  });
});

describe('host: refusals and connectors', () => {
  it('refuses an instance whose operator-supplied secret is missing, and starts it once the secret is put', async () => {
    const t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    expect(t.host.instance('globex-imessage-0')).toMatchObject({ status: 'refused', status_reason: 'missing-drive:secrets:missing-secret:imessage-credentials' });
    expect(t.driver.calls.some((c) => c.instanceId === 'globex-imessage-0')).toBe(false);
    t.host.secrets.put('globex', 'imessage-credentials', 'apple-id:secret');
    await t.settle();
    // Its target is sleeping, so once running it waits out its 60 s minimum runtime and sleeps.
    expect(t.host.instance('globex-imessage-0')!.status).toBe('running');
    await t.advance(MINUTE);
    expect(t.host.instance('globex-imessage-0')!.status).toBe('sleeping');
  });

  it('never starts a gateway whose secrets drive is missing (its token revoked)', async () => {
    const t = await started();
    t.host.secrets.revoke('acme', 'gateway-token');
    await t.host.apply(aDesiredState());
    await t.settle();
    expect(t.host.instance('acme-gateway-0')).toMatchObject({ status: 'refused', status_reason: 'missing-drive:secrets:missing-secret:gateway-token' });
    expect(t.driver.vm('acme-gateway-0').state).toBe('absent');
    // Workers wait for a gateway that never comes.
    expect(t.host.instances({ pool: 'workers' }).map((i) => i.status)).toEqual(['waiting', 'waiting', 'waiting', 'waiting', 'waiting']);
  });

  it('never starts a gateway whose config drive is missing (its config version withdrawn)', async () => {
    const t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    expect(t.host.stop('globex-gateway-0')).toEqual({ accepted: true, reason: null });
    await t.settle();
    expect(t.host.instance('globex-gateway-0')!.status).toBe('stopped');
    expect(t.driver.vm('globex-gateway-0').state).toBe('stopped');
    expect(t.host.configs.versions('globex', 'gateway')).toEqual([1]);
    expect(t.host.configs.withdraw('globex', 'gateway', 1)).toBe(true);
    expect(t.host.start('globex-gateway-0').accepted).toBe(true);
    await t.settle();
    expect(t.host.instance('globex-gateway-0')).toMatchObject({ status: 'refused', status_reason: 'missing-drive:config:config_version-1-not-published' });
  });

  it('runs the gateway with the telegram connector disabled, naming the missing secret, and enables it when the secret arrives', async () => {
    const t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    const gateway = t.host.instance('acme-gateway-0')!;
    expect(gateway.status).toBe('running');
    expect(gateway.connectors).toEqual({ telegram: { enabled: false, missing: ['telegram-bot-token'] }, whatsapp: { enabled: true, missing: [] } });
    expect(gateway.state).toMatchObject({ running: { 'connector-telegram': 'disabled', 'connector-whatsapp': 'enabled' } });
    t.host.secrets.put('acme', 'telegram-bot-token', '123:abc');
    await t.settle();
    expect(t.host.instance('acme-gateway-0')!.connectors.telegram).toEqual({ enabled: true, missing: [] });
  });

  it('refuses to sleep the tenant last running gateway (the floor), with the reason, and journals it', async () => {
    const t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    expect(t.host.sleep('acme-gateway-0')).toEqual({ accepted: false, reason: 'sleep-floor:gateway:1' });
    await t.settle();
    expect(t.host.instance('acme-gateway-0')!.status).toBe('running');
    expect(t.host.journal().filter((e) => e.kind === 'refusal' && e.instance_id === 'acme-gateway-0')).toEqual([
      expect.objectContaining({ event: 'cmd.sleep', detail: { reason: 'sleep-floor:gateway:1' } }),
    ]);
  });

  it('never writes a secret value into snapshots or the journal', async () => {
    const t = await started();
    t.host.secrets.put('acme', 'telegram-bot-token', 'tg-secret-value-123');
    await t.host.apply(aDesiredState());
    await t.settle();
    const gatewaySecrets = t.driver.drive('acme-gateway-0', 'secrets')!.files;
    expect(gatewaySecrets['telegram-bot-token']).toBe('tg-secret-value-123');
    const token = gatewaySecrets['gateway-token']!;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const dump = JSON.stringify(t.host.journal()) + JSON.stringify(t.host.instances());
    expect(dump).not.toContain('tg-secret-value-123');
    expect(dump).not.toContain(token);
    expect(t.host.secrets.list('acme').map((s) => s.name)).toEqual(['gateway-token', 'telegram-bot-token']);
  });
});

describe('host: failures and restarts', () => {
  it('restarts a crashed worker by its restart policy', async () => {
    const t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    t.driver.crash('acme-workers-0', 'SIGSEGV');
    await t.settle();
    expect(t.host.instance('acme-workers-0')!.status).toBe('running');
    expect(t.driver.vm('acme-workers-0').bootCount).toBe(2);
    expect(t.host.journal({ instanceId: 'acme-workers-0' }).some((e) => e.detail.reason === 'exited: SIGSEGV')).toBe(true);
  });

  it('a disposable builder whose job ends is destroyed', async () => {
    const t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    t.driver.crash('acme-builds-0', 'exit 0');
    await t.settle();
    expect(t.driver.vm('acme-builds-0').state).toBe('absent');
  });

  it('fails an instance whose boot keeps failing, with the reason', async () => {
    const t = await started();
    t.driver.failNext('boot', { instanceId: 'globex-gateway-0', code: 'kvm-missing', retryable: false });
    await t.host.apply(aDesiredState());
    await t.settle();
    expect(t.host.instance('globex-gateway-0')).toMatchObject({ status: 'failed', status_reason: 'boot' });
  });

  it('a new apply gives a failed instance one more start', async () => {
    const t = await started();
    t.driver.failNext('boot', { instanceId: 'globex-gateway-0', code: 'kvm-missing', retryable: false });
    await t.host.apply(aDesiredState());
    await t.settle();
    expect(t.host.instance('globex-gateway-0')!.status).toBe('failed');
    const again = aDesiredState();
    again.generation = 8;
    await t.host.apply(again);
    await t.settle();
    expect(t.host.instance('globex-gateway-0')!.status).toBe('running');
  });

  it('journals each instance from its creation, one entry per status change', async () => {
    const t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    const entries = t.host.journal({ instanceId: 'globex-gateway-0' });
    expect(entries.map((e) => [e.from, e.to])).toEqual([
      [null, 'pending'],
      ['pending', 'preflight'],
      ['preflight', 'provisioning'],
      ['provisioning', 'booting'],
      ['booting', 'starting-services'],
      ['starting-services', 'running'],
    ]);
    expect(entries[0]!.event).toBe('created');
  });

  it('restores every actor after a restart without touching running VMs', async () => {
    let t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    const before = statusesOf(t);
    const callsBefore = t.driver.calls.length;
    t = current = await t.restart();
    await t.settle();
    expect(statusesOf(t)).toEqual(before);
    expect(t.host.generation).toBe(7);
    expect(t.driver.calls.slice(callsBefore).map((c) => c.op)).toEqual(['describe']);
  });

  it('carries a deferred sleep across a restart and sleeps when the deadline passes', async () => {
    let t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    await t.advance(5 * MINUTE);
    t = current = await t.restart();
    await t.settle();
    expect(t.host.instance('acme-workers-3')!.deferred).toMatchObject({ command: 'cmd.sleep' });
    await t.advance(4 * MINUTE);
    expect(t.host.instance('acme-workers-3')!.status).toBe('running');
    await t.advance(1 * MINUTE);
    expect(t.host.instance('acme-workers-3')!.status).toBe('sleeping');
  });

  it('after a restart, an instance recorded running whose VM is gone is restarted by policy', async () => {
    let t = await started();
    await t.host.apply(aDesiredState());
    await t.settle();
    await t.host.close();
    // The VM disappears while the control plane is down.
    t.driver.crash('globex-gateway-0', 'host reboot');
    t = current = await aTestHost({ dataDir: t.dataDir, driver: t.driver, clock: t.clock });
    await t.settle();
    expect(t.host.instance('globex-gateway-0')!.status).toBe('running');
    expect(t.driver.vm('globex-gateway-0').bootCount).toBe(2);
  });
});

describe('host: a rejected part is "not changed", never "removed"', () => {
  it('keeps running what a rejected tenant and a rejected pool already run, and journals nothing again after a restart', async () => {
    let t = (current = await aTestHost());
    await t.host.apply(aDesiredState());
    await t.settle();
    const next = aDesiredState();
    next.generation = 8;
    next.tenants[1].tenant_net_id = next.tenants[0].tenant_net_id; // globex rejected
    next.tenants[0].pools[1].profile = 'nope'; // acme/workers rejected
    const result = await t.host.apply(next);
    expect(result.rejected).toEqual({ tenants: ['tenants[1]'], pools: ['tenants[0].pools[1]'] });
    await t.settle();
    expect(t.host.instance('globex-gateway-0')!.status).toBe('running');
    expect(t.host.instances({ pool: 'workers' }).map((i) => i.status)).toEqual(['running', 'running', 'running', 'running', 'running']);
    expect(t.driver.vm('globex-gateway-0').state).toBe('running');
    expect(t.host.plan(next).plan!.steps.filter((s) => s.op === 'destroy' || s.op === 'retire')).toEqual([]);

    t.host.sleep('acme-gateway-0'); // refused by the floor: journaled once
    await t.settle();
    const before = t.host.journal().length;
    t = current = await t.restart();
    await t.settle();
    expect(t.host.journal().length).toBe(before);
  });

  it('still removes tenants and pools the new document leaves out', async () => {
    const t = (current = await aTestHost());
    await t.host.apply(aDesiredState());
    await t.settle();
    const next = aDesiredState();
    next.generation = 8;
    next.tenants.splice(1, 1);
    await t.host.apply(next);
    await t.settle();
    expect(t.host.instance('globex-gateway-0')).toBeUndefined();
  });
});
