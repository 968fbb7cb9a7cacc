import { describe, expect, it } from 'vitest';
import { createActor, getNextSnapshot, SimulatedClock, type AnyMachineSnapshot, type AnyStateMachine } from 'xstate';
import type { ChartConfig } from '../../machines/chart-config.ts';
import { composeInstanceChart, fullOptions, type ComposeOptions } from '../../machines/compose-instance-chart.ts';
import { newInstanceContext, type InstanceContext } from '../../machines/instance-context.ts';
import { rootOnlyEvents } from '../../machines/root-only-events.ts';
import { createInstanceLogic, INSTANCE_SYSTEM_ID, persistedSnapshotOf } from '../../src/actors/instance-logic.ts';
import { createFakeDriver } from '../../src/driver/fake-driver.ts';
import { builtinCatalog } from '../helpers/fixtures.ts';

/**
 * Root-level observations applied without XState's macrostep (rootOnlyEvents + the shortcut in
 * instance-logic) must give exactly what XState gives: for every built-in role, with all and with
 * no connectors, in every top-level state, each root-level event is sent through the machine with
 * shortcuts and through the one without, and the snapshots compared.
 */

const T0 = 1_764_000_000_000;
const catalog = await builtinCatalog();

function context(role: string): InstanceContext {
  return newInstanceContext(
    {
      instance_id: 'vm-1',
      tenant_id: 'acme',
      pool_id: 'p',
      role,
      profile: 'default',
      revision: { artifacts: 'a-1', config_version: 1, secrets_epoch: 1 },
      network: { ipv4: '10.0.0.2', mac: '06:00:0a:00:00:02', tap: 'mv1-2', vsock_cid: 3 },
      desired_manifest_hash: `sha256:${'a'.repeat(64)}`,
    },
    T0,
  );
}

function logics() {
  const clock = new SimulatedClock();
  clock.set(T0);
  const effects = {
    driver: createFakeDriver({ clock }),
    clock,
    specFor: () => {
      throw new Error('no effects run in these tests');
    },
    preflight: () => ({ passed: true, reason: null, secrets_present: [], drives_missing: [] }),
  };
  return { fast: createInstanceLogic(effects), full: createInstanceLogic(effects, { rootShortcuts: false }) };
}

const EVENTS = [
  { type: 'obs.secrets-changed', secrets: ['gateway-token', 'extra'] },
  { type: 'obs.secrets-changed', secrets: [] },
  { type: 'cmd.revise', revision: { artifacts: 'a-2', config_version: 2, secrets_epoch: 3 }, manifest_hash: `sha256:${'b'.repeat(64)}` },
];

const comparable = (s: AnyMachineSnapshot) => ({ status: s.status, value: s.value, context: s.context, children: Object.keys(s.children), historyValue: s.historyValue, output: s.output, error: s.error });

describe('root-level observations without the macrostep', () => {
  const cases: { role: string; options: ComposeOptions }[] = [];
  for (const [name, loaded] of catalog.roles) {
    cases.push({ role: name, options: fullOptions(loaded.manifest) });
    cases.push({ role: name, options: { ...fullOptions(loaded.manifest), connectors: [], ingress: false } });
  }

  it.each(cases)('$role ($options.connectors): every top-level state and root event gives the snapshot XState gives', ({ role, options }) => {
    const manifest = catalog.roles.get(role)!.manifest;
    const { fast, full } = logics();
    const a = fast.machineFor(manifest, options).machine;
    const b = full.machineFor(manifest, options).machine;
    const chart = composeInstanceChart(manifest, options);
    const shortcuts = rootOnlyEvents(chart);
    let shortcutCases = 0;
    for (const top of Object.keys(chart.states)) {
      const start = b.resolveState({ value: top, context: context(role) } as never) as AnyMachineSnapshot;
      for (const event of EVENTS) {
        const viaShortcut = getNextSnapshot(a, start, event) as AnyMachineSnapshot;
        const viaXState = getNextSnapshot(b, start, event) as AnyMachineSnapshot;
        expect(comparable(viaShortcut), `${role} in ${top} on ${event.type}`).toStrictEqual(comparable(viaXState));
        if (shortcuts.get(top)?.has(event.type)) shortcutCases++;
      }
    }
    // The shortcut is taken somewhere (running, at least), or this test compares nothing new.
    expect(shortcutCases).toBeGreaterThan(0);
  });

  it('persistedSnapshotOf equals XState getPersistedSnapshot, fields and order, with and without invoked children', () => {
    const { full } = logics();
    for (const [name, loaded] of catalog.roles) {
      const { machine } = full.machineFor(loaded.manifest, fullOptions(loaded.manifest));
      const chart: ChartConfig = composeInstanceChart(loaded.manifest, fullOptions(loaded.manifest));
      for (const top of Object.keys(chart.states)) {
        const snapshot = (machine as AnyStateMachine).resolveState({ value: top, context: context(name) } as never);
        const actor = createActor(machine, { snapshot: snapshot as never, systemId: INSTANCE_SYSTEM_ID });
        const ours = persistedSnapshotOf(actor);
        const theirs = actor.getPersistedSnapshot();
        expect(ours, `${name} in ${top}`).toStrictEqual(theirs);
        expect(Object.keys(ours as object)).toEqual(Object.keys(theirs));
      }
    }
  });
});

describe('rootOnlyEvents', () => {
  const base = (states: ChartConfig['states'], extra: Partial<ChartConfig> = {}): ChartConfig => ({
    id: 'vm',
    initial: 'a',
    on: { 'obs.secrets-changed': { actions: [{ type: 'recordSecrets' }] }, 'cmd.revise': { actions: [{ type: 'recordRevision' }] }, 'cmd.stop': { target: '#vm.a' } },
    states,
    ...extra,
  });

  it('offers a root event only where no state below handles it, no eventless transition exists and the state is not final', () => {
    const chart = base({
      a: {},
      b: { states: { x: { on: { 'obs.secrets-changed': { target: 'y', actions: [{ type: 'recordSecrets' }] } } }, y: {} }, initial: 'x' },
      c: { initial: 'x', states: { x: { always: [{ target: 'y' }] }, y: {} } },
      d: { type: 'final' },
      e: { type: 'parallel', states: { r1: { on: { 'cmd.revise': {} } }, r2: {} } },
    });
    const result = rootOnlyEvents(chart);
    expect([...result.keys()]).toEqual(['a', 'b', 'e']);
    expect([...result.get('a')!.keys()]).toEqual(['obs.secrets-changed', 'cmd.revise']);
    // b handles secrets itself (a deeper handler wins), e's region handles cmd.revise.
    expect([...result.get('b')!.keys()]).toEqual(['cmd.revise']);
    expect([...result.get('e')!.keys()]).toEqual(['obs.secrets-changed']);
    expect(result.get('a')!.get('obs.secrets-changed')).toEqual([{ type: 'recordSecrets' }]);
  });

  it('offers nothing for guarded, targeted or several root transitions, or when the root has eventless transitions', () => {
    expect(rootOnlyEvents(base({ a: {} }, { on: { 'obs.secrets-changed': { guard: { type: 'secretsPresent' }, actions: [] } } })).size).toBe(0);
    expect(rootOnlyEvents(base({ a: {} }, { on: { 'obs.secrets-changed': [{ actions: [] }, { actions: [] }] } })).size).toBe(0);
    expect(rootOnlyEvents(base({ a: {} }, { always: [{ target: '#vm.a' }] })).size).toBe(0);
    expect(rootOnlyEvents(base({ a: { on: { 'obs.*': {} } } as never })).get('a')?.has('obs.secrets-changed') ?? false).toBe(false);
  });

  it('covers the running state of the built-in worker, where the bench sends its secrets-changed transitions', () => {
    const worker = catalog.roles.get('worker')!.manifest;
    const chart = composeInstanceChart(worker, { ...fullOptions(worker), connectors: [] });
    expect(rootOnlyEvents(chart).get('running')?.has('obs.secrets-changed')).toBe(true);
  });
});
