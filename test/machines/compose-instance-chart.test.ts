import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ChartConfig, StateConfig } from '../../machines/chart-config.ts';
import { checkChartVocabulary, ChartVocabularyError } from '../../machines/check-chart-vocabulary.ts';
import { ChartCompositionError, composeInstanceChart, fullOptions } from '../../machines/compose-instance-chart.ts';
import { chartGraph } from '../../machines/render-chart.ts';
import type { RoleManifest } from '../../src/schemas/role-manifest.ts';
import { GOLDEN_DIR, goldenText } from '../tools/write-golden-charts.ts';
import { builtinCatalog } from '../helpers/fixtures.ts';

async function role(name: string): Promise<RoleManifest> {
  return structuredClone((await builtinCatalog()).roles.get(name)!.manifest);
}

function statePaths(chart: ChartConfig): string[] {
  return chartGraph(chart).states.map((s) => s.path);
}

function node(chart: ChartConfig, dotted: string): StateConfig | undefined {
  return dotted.split('.').reduce<StateConfig | undefined>((n, key) => n?.states?.[key], chart);
}

describe('golden charts', () => {
  it('machines/golden holds exactly the built-in roles, each as the composer generates it (run `npm run charts`)', async () => {
    const catalog = await builtinCatalog();
    expect((await readdir(GOLDEN_DIR)).sort()).toEqual([...catalog.roles.keys()].map((n) => `${n}.json`).sort());
    for (const [name, loaded] of catalog.roles) {
      const golden = await readFile(path.join(GOLDEN_DIR, `${name}.json`), 'utf8');
      expect(golden, `machines/golden/${name}.json`).toBe(goldenText(composeInstanceChart(loaded.manifest, fullOptions(loaded.manifest))));
    }
  });
});

describe('the role decides which parts of the lifecycle exist', () => {
  it('a role that may not sleep has no sleep or warm states at all', async () => {
    const builder = await role('builder');
    const paths = statePaths(composeInstanceChart(builder, fullOptions(builder)));
    for (const absent of ['warming', 'warm', 'resuming', 'draining', 'snapshotting', 'sleeping', 'waking']) expect(paths).not.toContain(absent);
    expect(paths).toEqual(expect.arrayContaining(['pending', 'preflight', 'refused', 'launching', 'running', 'stopping', 'stopped', 'failed', 'destroying', 'destroyed']));
  });

  it('a disposable role runs to completion and is destroyed', async () => {
    const builder = await role('builder');
    const chart = composeInstanceChart(builder, fullOptions(builder));
    expect(chartGraph(chart).edges).toContainEqual({ from: 'running', to: 'destroying', label: 'obs.exited' });
    expect(node(chart, 'stopped')!.always).toEqual([{ target: '#vm.destroying' }]);
  });

  it('draining exists only where the role enables the drain handler', async () => {
    const gateway = await role('gateway');
    expect(statePaths(composeInstanceChart(gateway, fullOptions(gateway)))).toContain('draining');
    gateway.vsock.handlers = gateway.vsock.handlers.filter((h) => h !== 'drain');
    const chart = composeInstanceChart(gateway, fullOptions(gateway));
    expect(statePaths(chart)).not.toContain('draining');
    expect(chartGraph(chart).edges).toContainEqual({ from: 'running.lifecycle.sleep-deferred', to: 'snapshotting', label: 'deadline.min-runtime' });
  });

  it('a role with startup dependencies waits for them; one without starts with preflight', async () => {
    const worker = await role('worker');
    const gateway = await role('gateway');
    expect(chartGraph(composeInstanceChart(worker, fullOptions(worker))).edges).toContainEqual({ from: 'pending', to: 'waiting', label: 'cmd.start' });
    const gatewayChart = composeInstanceChart(gateway, fullOptions(gateway));
    expect(statePaths(gatewayChart)).not.toContain('waiting');
    expect(chartGraph(gatewayChart).edges).toContainEqual({ from: 'pending', to: 'preflight', label: 'cmd.start' });
  });

  it('has one readiness region per declared service', async () => {
    const gateway = await role('gateway');
    gateway.services.push({ ...gateway.services[0]!, name: 'sidecar', ports: [], readiness: { kind: 'agent', timeout_s: 5, interval_s: 1 } });
    const chart = composeInstanceChart(gateway, fullOptions(gateway));
    expect(node(chart, 'launching.starting')!.type).toBe('parallel');
    expect(Object.keys(node(chart, 'launching.starting')!.states!)).toEqual(['openclaw-gateway', 'sidecar']);
    expect(Object.keys(node(chart, 'waking.starting')!.states!)).toEqual(['openclaw-gateway', 'sidecar']);
  });

  it('a role with no services is running as soon as it boots', async () => {
    const imessage = await role('capability-imessage');
    const chart = composeInstanceChart(imessage, fullOptions(imessage));
    expect(node(chart, 'launching.starting')!.always).toEqual([{ target: '#vm.running', actions: [{ type: 'markRunning' }] }]);
  });

  it('has a connector region, disabled unless its secrets are present, only for connectors the pool enables', async () => {
    const gateway = await role('gateway');
    const chart = composeInstanceChart(gateway, { ingress: false, connectors: ['telegram'], min_runtime_s: gateway.sleep.min_runtime_s });
    const telegram = node(chart, 'running.connector-telegram')!;
    expect(telegram.states!.checking!.always![0]!.guard).toEqual({ type: 'secretsPresent', params: { secrets: ['telegram-bot-token'] } });
    expect(Object.keys(node(chart, 'running')!.states!)).toEqual(['lifecycle', 'connector-telegram', 'reload']);
  });

  it('has a live-reload region only where the role enables config-reload or secrets-reload, guarded for exactly those', async () => {
    const gateway = await role('gateway');
    const both = composeInstanceChart(gateway, fullOptions(gateway));
    const reloading = node(both, 'running.reload.reloading')!;
    expect(reloading.invoke).toEqual([expect.objectContaining({ id: 'reload', src: 'reload', input: { config: true, secrets: true } })]);
    expect(node(both, 'running.reload.idle')!.on!['cmd.revise']).toEqual([
      { guard: { type: 'revisionReloadable', params: { config: true, secrets: true } }, target: 'reloading', actions: [{ type: 'recordRevision' }] },
      { actions: [{ type: 'recordRevision' }] },
    ]);
    // The drives prepared for a boot or a wake carry the desired revision: what the VM applies.
    expect(node(both, 'launching.provisioning')!.invoke![0]!.onDone).toEqual({ target: 'booting', actions: [{ type: 'recordMounted' }] });
    expect(node(both, 'waking.provisioning')!.invoke![0]!.onDone).toEqual({ target: 'restoring', actions: [{ type: 'recordMounted' }] });

    const secretsOnly = await role('gateway');
    secretsOnly.vsock.handlers = secretsOnly.vsock.handlers.filter((h) => h !== 'config-reload');
    expect(node(composeInstanceChart(secretsOnly, fullOptions(secretsOnly)), 'running.reload.reloading')!.invoke![0]!.input).toEqual({ config: false, secrets: true });

    const none = await role('gateway');
    none.vsock.handlers = none.vsock.handlers.filter((h) => h !== 'config-reload' && h !== 'secrets-reload');
    const chart = composeInstanceChart(none, fullOptions(none));
    expect(node(chart, 'running.reload')).toBeUndefined();
    // Without the region, the root records a revision for the next boot or wake.
    expect(chart.on!['cmd.revise']).toEqual({ actions: [{ type: 'recordRevision' }] });
  });

  it('has an ingress region only where the role allows it and the pool turns it on', async () => {
    const gateway = await role('gateway');
    expect(node(composeInstanceChart(gateway, { ingress: true, connectors: [], min_runtime_s: gateway.sleep.min_runtime_s }), 'running.ingress')).toBeDefined();
    expect(node(composeInstanceChart(gateway, { ingress: false, connectors: [], min_runtime_s: gateway.sleep.min_runtime_s }), 'running.ingress')).toBeUndefined();
    const worker = await role('worker');
    expect(() => composeInstanceChart(worker, { ingress: true, connectors: [], min_runtime_s: worker.sleep.min_runtime_s })).toThrow(/role "worker", ingress.allowed/);
  });
});

describe('the composer refuses what it cannot honour, naming the role and field', () => {
  it.each<[string, (r: RoleManifest) => void, RegExp]>([
    ['a sleeping role without post-restore', (r) => (r.vsock.handlers = r.vsock.handlers.filter((h) => h !== 'post-restore')), /role "gateway", vsock.handlers: a role that may sleep needs the "post-restore" handler/],
    ['agent readiness without the readiness handler', (r) => {
      r.services[0]!.readiness = { kind: 'agent', timeout_s: 5, interval_s: 1 };
      r.vsock.handlers = r.vsock.handlers.filter((h) => h !== 'readiness');
    }, /services\[0\].readiness: an "agent" readiness check needs/],
    ['connectors without connector-status', (r) => (r.vsock.handlers = r.vsock.handlers.filter((h) => h !== 'connector-status')), /needs the "connector-status" handler/],
  ])('%s', async (_what, edit, message) => {
    const gateway = await role('gateway');
    edit(gateway);
    expect(() => composeInstanceChart(gateway, fullOptions(gateway))).toThrow(ChartCompositionError);
    expect(() => composeInstanceChart(gateway, fullOptions(gateway))).toThrow(message);
  });

  it('refuses a connector the role does not declare', async () => {
    const gateway = await role('gateway');
    expect(() => composeInstanceChart(gateway, { ingress: false, connectors: ['signal'], min_runtime_s: gateway.sleep.min_runtime_s })).toThrow(/connector "signal", which the role does not declare/);
  });
});

describe('chart vocabulary', () => {
  const chartWith = (state: StateConfig): ChartConfig => ({ id: 'vm', initial: 'a', states: { a: state } });

  it.each<[string, StateConfig, RegExp]>([
    ['an unknown action', { entry: [{ type: 'launchMissiles' as never }] }, /unknown action "launchMissiles"/],
    ['an unknown guard', { on: { 'cmd.start': { guard: { type: 'isFriday' as never }, target: 'a' } } }, /unknown guard "isFriday"/],
    ['an unknown actor', { invoke: [{ id: 'x', src: 'ssh' as never }] }, /unknown actor "ssh"/],
    ['an unknown event', { on: { 'cmd.reboot': { target: 'a' } } }, /unknown event "cmd.reboot"/],
    ['an after delay', { after: { soon: { target: 'a' } } } as StateConfig, /delays are not restored/],
    ['an inline function', { entry: (() => undefined) as never }, /a function; charts hold names only/],
  ])('rejects %s', (_what, state, message) => {
    expect(() => checkChartVocabulary(chartWith(state), 'test-role')).toThrow(ChartVocabularyError);
    expect(() => checkChartVocabulary(chartWith(state), 'test-role')).toThrow(message);
  });

  it('every generated chart is pure data: it survives a JSON round trip unchanged', async () => {
    for (const loaded of (await builtinCatalog()).roles.values()) {
      const chart = composeInstanceChart(loaded.manifest, fullOptions(loaded.manifest));
      expect(JSON.parse(JSON.stringify(chart))).toEqual(chart);
    }
  });
});

describe('pool options', () => {
  it('a pool raises the minimum runtime the deferrals wait for, and may not lower it', async () => {
    const worker = await role('worker');
    const chart = composeInstanceChart(worker, { ...fullOptions(worker), min_runtime_s: 600 });
    expect(node(chart, 'running.lifecycle.sleep-deferred')!.entry).toEqual([{ type: 'armDeadline', params: { name: 'min-runtime', seconds: 600, from: 'running_since' } }]);
    expect(() => composeInstanceChart(worker, { ...fullOptions(worker), min_runtime_s: 10 })).toThrow(/role "worker", sleep.min_runtime_s: the pool asks for 10s, below the role's 300s/);
  });
});
