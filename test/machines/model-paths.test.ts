import { describe, expect, it } from 'vitest';
import { assign, createActor, setup, SimulatedClock, type AnyMachineSnapshot, type AnyStateMachine } from 'xstate';
import { getAdjacencyMap, getPathsFromEvents, getShortestPaths, type StatePath } from 'xstate/graph';
import type { ChartConfig, StateConfig, TransitionConfig, Transitions } from '../../machines/chart-config.ts';
import { composeInstanceChart, fullOptions, type ComposeOptions } from '../../machines/compose-instance-chart.ts';
import { newInstanceContext, reloadStateOf, type InstanceContext, type PreflightResult } from '../../machines/instance-context.ts';
import { ACTIONS } from '../../machines/vocabulary.ts';
import { createInstanceLogic, INSTANCE_SYSTEM_ID } from '../../src/actors/instance-logic.ts';
import type { LoadedRole } from '../../src/catalog/catalog.ts';
import { loadCatalogStrict } from '../../src/catalog/load-catalog.ts';
import type { Clock } from '../../src/common/clock.ts';
import { createFakeDriver, type FakeDriver } from '../../src/driver/fake-driver.ts';
import { DriverError, type DriverOp, type InstanceSpec, type ObservedVm, type OpContext, type ReloadRequest, type SnapshotRef, type VmExit, type VmmDriver } from '../../src/driver/vmm-driver.ts';
import type { RoleManifest, ServiceSpec } from '../../src/schemas/role-manifest.ts';

/**
 * Model-based testing of the generated instance charts.
 *
 * For each built-in role, the chart the composer generates is turned into a pure XState model:
 * every invoke becomes explicit `xstate.done.actor.<id>` / `xstate.error.actor.<id>` events,
 * every deadline its `deadline.<name>` event, and the guards read a small finite model context
 * (secrets in the store and as the instance believes them, minimum runtime elapsed, a revision
 * pending, restarts counted, and what the hypervisor holds). xstate/graph enumerates the model:
 * the shortest path to every state (keyed by state value plus that finite context, traversal
 * bounded by LIMIT), each extended by every transition out of that state, prefixes dropped.
 *
 * Every path is then executed against the real instance actor (createInstanceLogic, the setup()
 * implementation) over the real fake driver, behind a gate that holds each driver call until the
 * path says it completes, or fails through the fake driver's failNext. Deadlines are reached by
 * advancing a SimulatedClock to them, crashes come from the fake driver, and preflight passes,
 * refuses or throws as the path says. After every step the real state must equal the model's and
 * the invariants must hold (see `check` in executePath).
 *
 * The model is derived from the same chart, so this checks the implementation and the driver
 * against the chart, and the chart against the invariants; the golden files check the chart
 * itself. Violations that come from known runtime bugs are recognised (KNOWN_BUGS), counted and
 * reproduced by their own tests, which fail once the bug is fixed so the entry gets removed.
 */

const T0 = 1_764_000_000_000;
const INSTANCE = 'model-0';
const REVISED_HASH = `sha256:${'b'.repeat(64)}`;

// ---------------------------------------------------------------------------------------------
// The model: the chart as data, with effects turned into events
// ---------------------------------------------------------------------------------------------

/** What the model needs to remember for guards to be decided without a clock or a driver. Finite. */
interface ModelContext {
  /** The tenant's store holds the role's optional (connector) secrets. */
  store: boolean;
  /** The instance believes the optional secrets present (its secrets_present). */
  known: boolean;
  /** The minimum runtime has passed since running_since. */
  elapsed: boolean;
  /** A revision arrived since the VM last booted cold: its snapshot no longer matches. */
  revised: boolean;
  /** Restarts counted for the restart budget. */
  restarts: number;
  /**
   * What the hypervisor holds, as the fake driver's rules predict it. Not compared with anything:
   * it only splits model states by hidden driver state, so paths reach each chart state with each
   * disk and VM state that can be behind it (a stop after drives were prepared, a failure with the
   * VM still up, ...).
   */
  vm: 'absent' | 'stopped' | 'running' | 'paused';
  secretsOnDisk: boolean;
  snapshot: boolean;
}

/** An external event, an effect's result (`xstate.done.actor.*`, `xstate.error.actor.*`) or time passing. */
interface ModelEvent {
  type: string;
  /** obs.secrets-changed: whether the store now holds the optional secrets. */
  present?: boolean;
  /** Preflight's verdict. */
  output?: { passed: boolean };
  /** cmd.revise: only the config_version and secrets_epoch change (same bundle and manifest): a live reload. */
  live?: boolean;
}

type ModelTransition = Omit<TransitionConfig, 'actions'> & { actions?: { type: string; params?: Record<string, unknown> }[] };

const list = (t: Transitions | undefined): TransitionConfig[] => (t === undefined ? [] : Array.isArray(t) ? t : [t]);
const TIME_MIN_RUNTIME = 'time.min-runtime';
const CRASH_LOOP = /^(obs\.exited|xstate\.done\.actor\.(prepareDrives|boot|checkReadiness\..*))$/;

interface InvokeInfo {
  id: string;
  src: string;
  service?: string;
}

function invokesOf(chart: ChartConfig): InvokeInfo[] {
  const out = new Map<string, InvokeInfo>();
  const visit = (node: StateConfig) => {
    for (const inv of node.invoke ?? []) {
      const service = typeof inv.input?.service === 'string' ? inv.input.service : undefined;
      out.set(inv.id, { id: inv.id, src: inv.src, ...(service ? { service } : {}) });
    }
    for (const child of Object.values(node.states ?? {})) visit(child);
  };
  visit(chart);
  return [...out.values()];
}

/** The chart with invokes replaced by the events their results would be, and model-only additions. */
function toModelConfig(chart: ChartConfig, usesMinRuntime: boolean): Record<string, unknown> {
  const withAction = (t: ModelTransition, type: string): ModelTransition => ({ ...t, actions: [...(t.actions ?? []), { type }] });
  const visit = (node: StateConfig, path: string[]): Record<string, unknown> => {
    const { description: _d, invoke, states, on, ...rest } = node;
    const modelOn: Record<string, unknown> = {};
    for (const [event, ts] of Object.entries(on ?? {})) {
      let transitions: ModelTransition[] = list(ts);
      if (event === 'obs.secrets-changed') transitions = transitions.map((t) => withAction(t, 'setStore'));
      if (event === 'deadline.min-runtime') transitions = transitions.map((t) => withAction(t, 'markElapsed'));
      modelOn[event] = transitions;
    }
    for (const inv of invoke ?? []) {
      if (inv.src === 'deadline') continue; // `deadline.<name>` is already in `on`
      // A driver call that completes changes the hypervisor; one that fails (an injected fault) changes nothing.
      if (inv.onDone) modelOn[`xstate.done.actor.${inv.id}`] = inv.src === 'preflight' ? inv.onDone : list(inv.onDone).map((t) => ({ ...t, actions: [{ type: `drv.${inv.src}` }, ...(t.actions ?? [])] }));
      if (inv.onError) modelOn[`xstate.error.actor.${inv.id}`] = inv.onError;
    }
    if (modelOn['obs.exited']) modelOn['obs.exited'] = list(modelOn['obs.exited'] as Transitions).map((t) => withAction(t, 'drv.crash'));
    // Time passing while nothing waits on a deadline: only in running with no deferral pending.
    if (usesMinRuntime && path.join('.') === 'running.lifecycle.idle') modelOn[TIME_MIN_RUNTIME] = { actions: [{ type: 'markElapsed' }] };
    const out: Record<string, unknown> = { ...rest, on: modelOn };
    if (states) out.states = Object.fromEntries(Object.entries(states).map(([name, child]) => [name, visit(child, [...path, name])]));
    return out;
  };
  const root = visit(chart, []);
  // An observation of changed secrets updates the store wherever the instance ignores it.
  (root.on as Record<string, unknown>)['obs.secrets-changed'] ??= { actions: [{ type: 'setStore' }] };
  return root;
}

function modelMachine(chart: ChartConfig, role: RoleManifest, usesMinRuntime: boolean): AnyStateMachine {
  const required = new Set(role.secrets.map((s) => s.name));
  const noop = Object.fromEntries(Object.keys(ACTIONS).map((name) => [name, () => undefined]));
  const m = setup({
    types: {} as { context: ModelContext; events: ModelEvent },
    actions: {
      ...noop,
      recordPreflight: assign(({ context }) => ({ known: context.store })),
      recordSecrets: assign(({ event }) => ({ known: event.present === true })),
      setStore: assign(({ event }) => ({ store: event.present === true })),
      'drv.prepareDrives': assign(({ context }) => ({ vm: context.vm === 'absent' ? ('stopped' as const) : context.vm, secretsOnDisk: true })),
      // A cold boot discards the snapshot; booting a VM that is up changes nothing (idempotent).
      'drv.boot': assign(({ context }) => (up(context) ? {} : { vm: 'running' as const, snapshot: false, revised: false })),
      'drv.checkReadiness': () => undefined,
      'drv.pause': assign(() => ({ vm: 'paused' as const })),
      'drv.resume': assign(() => ({ vm: 'running' as const })),
      'drv.drain': () => undefined,
      'drv.snapshot': assign(({ context }) => (context.vm === 'stopped' && context.snapshot ? {} : { vm: 'stopped' as const, secretsOnDisk: false, snapshot: true })),
      'drv.restore': assign(({ context }) => (up(context) ? {} : { vm: 'running' as const, snapshot: false })),
      'drv.stop': assign(({ context }) => (up(context) ? { vm: 'stopped' as const, secretsOnDisk: false } : {})),
      'drv.destroy': assign(() => ({ vm: 'absent' as const, secretsOnDisk: false, snapshot: false })),
      'drv.crash': assign(() => ({ vm: 'stopped' as const, secretsOnDisk: false })),
      markRunning: assign(() => ({ elapsed: false })),
      markElapsed: assign(() => ({ elapsed: true })),
      countRestart: assign(({ context }) => ({ restarts: context.restarts + 1 })),
      // A live revision (same bundle) leaves the snapshot usable; any other makes it stale.
      recordRevision: assign(({ context, event }) => ({ revised: context.revised || event.live !== true })),
      'drv.reload': () => undefined,
    },
    guards: {
      preflightPassed: ({ event }) => event.output?.passed === true,
      secretsPresent: ({ context }, params: { secrets: string[] }) => params.secrets.every((s) => required.has(s) || context.known),
      minRuntimeElapsed: ({ context }) => context.elapsed,
      restartAllowed: ({ context }, params: { policy: string; max: number }) => params.policy !== 'never' && context.restarts < params.max,
      // The model's probes fail only as "not ready yet"; final refusals are covered by test/openclaw/sim-openclaw.test.ts.
      finalError: () => false,
      // Live only against the bundle the VM was booted with; the model sends live revisions only then.
      revisionReloadable: ({ context, event }) => event.live === true && !context.revised,
    },
  });
  const config = toModelConfig(chart, usesMinRuntime);
  return m.createMachine({ ...(config as object), context: { store: false, known: false, elapsed: false, revised: false, restarts: 0, vm: 'absent', secretsOnDisk: false, snapshot: false } } as never) as unknown as AnyStateMachine;
}

const up = (context: ModelContext) => context.vm === 'running' || context.vm === 'paused';
const topOf = (value: unknown): string => (typeof value === 'string' ? value : Object.keys(value as object)[0]!);

function lifecycleIdle(value: unknown): boolean {
  const running = (value as { running?: { lifecycle?: string } }).running;
  return running?.lifecycle === 'idle';
}

/** Every event the model may take, filtered to those that are feasible against the real system. */
function modelEvents(role: RoleManifest, invokes: InvokeInfo[], usesMinRuntime: boolean) {
  const external = ['cmd.start', 'cmd.stop', 'cmd.warm', 'cmd.resume', 'cmd.sleep', 'cmd.wake', 'cmd.retire', 'cmd.destroy', 'cmd.revise', 'dep.ready', 'obs.exited'];
  const hasOptionalSecrets = optionalSecrets(role).length > 0;
  const all: ModelEvent[] = [
    ...external.map((type) => ({ type })),
    ...(role.vsock.handlers.some((h) => h === 'config-reload' || h === 'secrets-reload') ? [{ type: 'cmd.revise', live: true }] : []),
    { type: 'obs.secrets-changed', present: false },
    ...(hasOptionalSecrets ? [{ type: 'obs.secrets-changed', present: true }] : []),
    { type: 'xstate.done.actor.preflight', output: { passed: true } },
    { type: 'xstate.done.actor.preflight', output: { passed: false } },
    { type: 'xstate.error.actor.preflight' },
    ...invokes.filter((i) => i.src !== 'deadline' && i.src !== 'preflight').flatMap((i) => [{ type: `xstate.done.actor.${i.id}` }, { type: `xstate.error.actor.${i.id}` }]),
    ...invokes.filter((i) => i.src === 'deadline').map((i) => ({ type: i.id })),
    ...(usesMinRuntime ? [{ type: TIME_MIN_RUNTIME }] : []),
  ];
  const maxRestarts = role.lifecycle.max_restarts;
  return (snapshot: AnyMachineSnapshot): ModelEvent[] => {
    const ctx = snapshot.context as ModelContext;
    if (snapshot.status === 'done') return [];
    return all.filter((event) => {
      const advancesTime = event.type.startsWith('deadline.') || event.type === TIME_MIN_RUNTIME;
      // The restart budget counts restarts within a window of time; once a restart is counted,
      // the model lets no more time pass, so "within the window" stays exact.
      if (advancesTime && ctx.restarts > 0) return false;
      // Between the first restart and the last one the budget allows, only the crash loop itself:
      // states there are copies of those with one restart.
      if (ctx.restarts > 1 && ctx.restarts < maxRestarts && !CRASH_LOOP.test(event.type)) return false;
      if (event.type === TIME_MIN_RUNTIME && ctx.elapsed) return false;
      // No time passes while a reload waits on the driver: past its deadline it fails, which the error event covers.
      if (advancesTime && reloadStateOf(snapshot.value as never) === 'reloading') return false;
      if (event.type === 'cmd.revise' && event.live !== true && (ctx.revised || !(snapshot.value === 'sleeping' || lifecycleIdle(snapshot.value)))) return false;
      // A live revision is sent to a running VM booted from the current bundle, with no deferral pending (the state space stays small).
      if (event.type === 'cmd.revise' && event.live === true && (ctx.revised || !lifecycleIdle(snapshot.value))) return false;
      // A snapshot taken before a revision is refused by the driver: restore can only fail then.
      if (event.type === 'xstate.done.actor.restore' && ctx.revised) return false;
      if (event.type === 'obs.secrets-changed' && topOf(snapshot.value) !== 'running' && event.present === ctx.store) return false;
      // Preflight reads the store the moment it starts and answers at once: nothing changes in between.
      if (event.type === 'obs.secrets-changed' && snapshot.value === 'preflight') return false;
      return snapshot.can(event as never);
    });
  };
}

function optionalSecrets(role: RoleManifest): string[] {
  const required = new Set(role.secrets.map((s) => s.name));
  return [...new Set(role.connectors.flatMap((c) => c.secrets))].filter((s) => !required.has(s));
}

function usesMinRuntimeGuard(chart: ChartConfig): boolean {
  let found = false;
  const visit = (node: StateConfig) => {
    for (const ts of Object.values(node.on ?? {})) for (const t of list(ts)) if (t.guard?.type === 'minRuntimeElapsed') found = true;
    for (const child of Object.values(node.states ?? {})) visit(child);
  };
  visit(chart);
  return found;
}

type Path = StatePath<AnyMachineSnapshot, ModelEvent>;

/** Shortest paths to every model state, extended by every transition out of it; prefixes dropped. */
function enumeratePaths(model: AnyStateMachine, events: (s: AnyMachineSnapshot) => ModelEvent[], limit: number) {
  const serializeState = (s: AnyMachineSnapshot) => JSON.stringify([s.value, s.context]);
  const options = { events, serializeState, serializeEvent: (e: ModelEvent) => JSON.stringify(e), limit } as never;
  const shortest = getShortestPaths(model, options) as unknown as Path[];
  const adjacency = getAdjacencyMap(model, options) as unknown as Record<string, { transitions: Record<string, { event: ModelEvent; state: AnyMachineSnapshot }> }>;
  const byKey = new Map(shortest.map((p) => [serializeState(p.state), p]));
  const sequences: { event: ModelEvent; state: AnyMachineSnapshot }[][] = [];
  let edges = 0;
  for (const [key, entry] of Object.entries(adjacency)) {
    const head = byKey.get(key);
    if (!head) continue;
    for (const t of Object.values(entry.transitions)) {
      edges++;
      sequences.push([...head.steps, { event: t.event, state: t.state }]);
    }
  }
  // Invariants are checked at every step, so a path that is a prefix of another adds nothing.
  const text = (seq: { event: ModelEvent }[]) => seq.map((s) => JSON.stringify(s.event)).join('\n');
  const texts = sequences.map((s) => `${text(s)}\n`);
  const sorted = [...texts.keys()].sort((a, b) => (texts[a]! < texts[b]! ? -1 : texts[a]! > texts[b]! ? 1 : 0));
  const kept = sorted.filter((index, i) => {
    const next = sorted[i + 1];
    return next === undefined || !texts[next]!.startsWith(texts[index]!);
  });
  return { states: shortest.length, edges, paths: kept.map((i) => sequences[i]!), modelValues: shortest.map((p) => p.state.value) };
}

// ---------------------------------------------------------------------------------------------
// The real side: instance actor, fake driver behind a gate
// ---------------------------------------------------------------------------------------------

interface PendingCall {
  op: DriverOp;
  service: string | undefined;
  release(fail: boolean): void;
}

/** Holds every driver call until the test releases it to the fake driver (optionally with a fault). */
class GatedDriver implements VmmDriver {
  readonly kind = 'gated-fake';
  readonly pending: PendingCall[] = [];
  /** Manifest hash of what the VM really runs: set by a cold boot that started it, or a restore. */
  image: string | null = null;
  /** The last boot call found the VM up already, so it changed nothing. */
  lastBootNoop = false;

  constructor(readonly fake: FakeDriver) {}

  #gate<T>(op: DriverOp, instanceId: string, ctx: OpContext, run: () => Promise<T>, service?: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (ctx.signal.aborted) return reject(new DriverError(op, instanceId, 'aborted', 'aborted before it started', false));
      const entry: PendingCall = {
        op,
        service,
        release: (fail) => {
          this.#drop(entry);
          ctx.signal.removeEventListener('abort', onAbort);
          if (fail) this.fake.failNext(op, { instanceId });
          run().then(resolve, reject);
        },
      };
      const onAbort = () => {
        this.#drop(entry);
        reject(new DriverError(op, instanceId, 'aborted', 'aborted while held', false));
      };
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      this.pending.push(entry);
    });
  }

  #drop(entry: PendingCall): void {
    const i = this.pending.indexOf(entry);
    if (i >= 0) this.pending.splice(i, 1);
  }

  prepareDrives(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    return this.#gate('prepareDrives', spec.instance_id, ctx, () => this.fake.prepareDrives(spec, ctx));
  }
  boot(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    return this.#gate('boot', spec.instance_id, ctx, async () => {
      const wasUp = ['running', 'paused'].includes(this.fake.vm(spec.instance_id).state);
      await this.fake.boot(spec, ctx);
      this.lastBootNoop = wasUp;
      if (!wasUp) this.image = spec.manifest_hash;
    });
  }
  checkReadiness(spec: InstanceSpec, service: ServiceSpec, ctx: OpContext): Promise<void> {
    return this.#gate('checkReadiness', spec.instance_id, ctx, () => this.fake.checkReadiness(spec, service, ctx), service.name);
  }
  pause(id: string, ctx: OpContext): Promise<void> {
    return this.#gate('pause', id, ctx, () => this.fake.pause(id, ctx));
  }
  resume(id: string, ctx: OpContext): Promise<void> {
    return this.#gate('resume', id, ctx, () => this.fake.resume(id, ctx));
  }
  drain(id: string, ctx: OpContext): Promise<void> {
    return this.#gate('drain', id, ctx, () => this.fake.drain(id, ctx));
  }
  snapshot(spec: InstanceSpec, ctx: OpContext): Promise<SnapshotRef> {
    return this.#gate('snapshot', spec.instance_id, ctx, () => this.fake.snapshot(spec, ctx));
  }
  restore(spec: InstanceSpec, snapshot: SnapshotRef, ctx: OpContext): Promise<void> {
    return this.#gate('restore', spec.instance_id, ctx, async () => {
      await this.fake.restore(spec, snapshot, ctx);
      this.image = snapshot.manifest_hash;
    });
  }
  reload(spec: InstanceSpec, what: ReloadRequest, ctx: OpContext): Promise<void> {
    return this.#gate('reload', spec.instance_id, ctx, () => this.fake.reload(spec, what, ctx));
  }
  stop(id: string, ctx: OpContext): Promise<void> {
    return this.#gate('stop', id, ctx, () => this.fake.stop(id, ctx));
  }
  destroy(id: string, ctx: OpContext): Promise<void> {
    return this.#gate('destroy', id, ctx, async () => {
      await this.fake.destroy(id, ctx);
      this.image = null;
    });
  }
  describe(): Promise<ObservedVm[]> {
    return this.fake.describe();
  }
  onExit(listener: (exit: VmExit) => void): () => void {
    return this.fake.onExit(listener);
  }
}

/** One path's world: swapped in for each path, so one instance logic serves a whole role. */
interface World {
  clock: SimulatedClock;
  gate: GatedDriver;
  /** The tenant's store holds the role's optional secrets. */
  store: boolean;
  preflight: 'pass' | 'refuse' | 'throw';
  /** Completes the preflight the actor is waiting for, if any. */
  pendingPreflight?: (() => void) | undefined;
}

function roleHarness(loaded: LoadedRole, options: ComposeOptions) {
  const role = loaded.manifest;
  const optional = optionalSecrets(role);
  let world: World | undefined;
  const w = () => world ?? (() => { throw new Error('no world'); })();
  const secretsPresent = () => [...role.secrets.map((s) => s.name), ...(w().store ? optional : [])].sort();
  const clock: Clock = {
    now: () => w().clock.now(),
    setTimeout: (fn, ms) => w().clock.setTimeout(fn, ms),
    clearTimeout: (handle) => w().clock.clearTimeout(handle as number),
  };
  const driver = new Proxy({} as VmmDriver, { get: (_t, key) => { const g = w().gate as unknown as Record<string | symbol, unknown>; const v = g[key]; return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(g) : v; } });
  const specFor = (context: InstanceContext): InstanceSpec => {
    const enabled = role.connectors.filter((c) => options.connectors.includes(c.name)).flatMap((c) => c.secrets);
    const secretFiles = Object.fromEntries([...new Set([...role.secrets.map((s) => s.name), ...enabled])].filter((s) => secretsPresent().includes(s)).map((s) => [s, `value-of-${s}`]));
    return {
      instance_id: context.instance_id,
      tenant_id: context.tenant_id,
      pool_id: context.pool_id,
      role: context.role,
      profile: context.profile,
      revision: context.revision,
      resources: { vcpus: 1, mem_mib: 256, data_disk_mib: 64 },
      network: context.network,
      drives: role.drives.map((d) => ({
        name: d.name,
        device: d.device,
        mount: d.mount,
        label: d.label,
        read_only: d.read_only,
        persistence: d.persistence,
        size_mib: 16,
        files: d.persistence === 'ephemeral' ? secretFiles : d.persistence === 'versioned' ? { 'mvm.json': JSON.stringify({ config_version: context.config_version }) } : {},
      })),
      manifest_hash: context.desired_manifest_hash,
      vsock: { agent_port: role.vsock.agent_port, handlers: role.vsock.handlers },
    };
  };
  // Preflight, like every effect, completes only when the path says so.
  const preflight = (_context: InstanceContext): Promise<PreflightResult> =>
    new Promise<PreflightResult>((resolve, reject) => {
      w().pendingPreflight = () => {
        const how = w().preflight;
        if (how === 'throw') return reject(new Error('preflight broke (injected)'));
        const secrets_present = secretsPresent();
        resolve(
          how === 'pass'
            ? { passed: true, reason: null, secrets_present, drives_missing: [] }
            : { passed: false, reason: 'missing-drive:secrets:missing-secret:injected', secrets_present, drives_missing: ['secrets'] },
        );
      };
    });
  const logic = createInstanceLogic({ driver, clock, specFor, preflight });
  const { machine } = logic.machineFor(role, options);
  return {
    machine,
    secretsPresent,
    setWorld(next: World) {
      world = next;
    },
  };
}

function initialContext(loaded: LoadedRole): InstanceContext {
  return newInstanceContext(
    {
      instance_id: INSTANCE,
      tenant_id: 'tenant',
      pool_id: 'pool',
      role: loaded.manifest.name,
      profile: 'minimal',
      revision: { artifacts: 'bundle-1', config_version: 1, secrets_epoch: 1 },
      network: { ipv4: '10.1.0.2', mac: '02:00:0a:01:00:02', tap: 'tap-2', vsock_cid: 3 },
      desired_manifest_hash: loaded.hash,
    },
    T0,
  );
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

type Step = { event: ModelEvent; state: AnyMachineSnapshot };

/** What went wrong, with what the known-bug rules below need to recognise it. */
interface Violation {
  kind: 'status' | 'state' | 'forbidden' | 'driver' | 'secrets-drive' | 'manifest-hash' | 'connector' | 'reason' | 'harness';
  message: string;
  /** Events up to and including the one after which the violation was seen. */
  path: string;
  top: string;
  /** The model's context at that step (its prediction of the hidden state). */
  model: ModelContext;
  /** The fake driver's VM state at that step. */
  vm: string;
  /** The last boot call found the VM already up and changed nothing. */
  lastBootNoop: boolean;
}

const SLEEP_STATES = ['draining', 'snapshotting', 'sleeping', 'waking'];
const WARM_STATES = ['warming', 'warm', 'resuming'];

function describePath(steps: Step[], upTo: number): string {
  return steps
    .slice(1, upTo + 1)
    .map(({ event: e }) => (e.type === 'obs.secrets-changed' ? `secrets(${e.present ? '+' : '-'})` : e.output ? `${e.type}(${e.output.passed ? 'passed' : 'refused'})` : e.live ? `${e.type}(live)` : e.type))
    .join(' → ');
}

/** Everything one path needs to know about its role. */
interface RoleUnderTest {
  loaded: LoadedRole;
  options: ComposeOptions;
  harness: ReturnType<typeof roleHarness>;
  invokes: Map<string, InvokeInfo>;
}

/** Executes one model path against the real actor; returns the first violation, if any, and the state values visited. */
async function executePath(r: RoleUnderTest, steps: Step[], visited?: Set<string>): Promise<Violation | undefined> {
  const role = r.loaded.manifest;
  const clock = new SimulatedClock();
  clock.set(T0);
  const fake = createFakeDriver({ clock });
  const gate = new GatedDriver(fake);
  const world: World = { clock, gate, store: false, preflight: 'pass' };
  r.harness.setWorld(world);
  const errors: unknown[] = [];
  const actor = createActor(r.harness.machine, { systemId: INSTANCE_SYSTEM_ID, clock, input: initialContext(r.loaded) });
  actor.subscribe({ error: (e) => errors.push(e) });
  const ephemeral = role.drives.filter((d) => d.persistence === 'ephemeral').map((d) => d.name);

  const check = (i: number): Pick<Violation, 'kind' | 'message'> | undefined => {
    const snap = actor.getSnapshot();
    if (errors.length > 0 || snap.status === 'error') return { kind: 'status', message: `actor in status error: ${String(errors[0] ?? snap.error)}` };
    const got = JSON.stringify(snap.value);
    const want = JSON.stringify(steps[i]!.state.value);
    if (got !== want) return { kind: 'state', message: `state ${got}, the model expected ${want}` };
    visited?.add(got);
    const ctx = snap.context as InstanceContext;
    const top = topOf(snap.value);
    const vm = fake.vm(INSTANCE);
    const up = vm.state === 'running' || vm.state === 'paused';
    const secretsDrive = vm.drives.filter((d) => ephemeral.includes(d));
    const driver = (message: string) => ({ kind: 'driver' as const, message });
    if (!role.sleep.allowed && SLEEP_STATES.includes(top)) return { kind: 'forbidden', message: `the role may not sleep but the instance is ${top}` };
    if (!role.sleep.warm_allowed && WARM_STATES.includes(top)) return { kind: 'forbidden', message: `the role may not warm but the instance is ${top}` };
    if (!role.sleep.allowed && fake.calls.some((c) => c.op === 'snapshot' || c.op === 'restore')) return { kind: 'forbidden', message: 'the role may not sleep but the driver was asked to snapshot or restore' };
    if (top === 'destroyed' ? snap.status !== 'done' : snap.status !== 'active') return { kind: 'status', message: `actor status ${snap.status} in ${top}` };
    switch (top) {
      case 'pending':
        if (vm.state !== 'absent') return driver(`pending but the VM is ${vm.state}`);
        break;
      case 'waiting':
      case 'refused':
        if (up) return driver(`${top} but the VM is ${vm.state}`);
        if (top === 'refused' && !ctx.status_reason) return { kind: 'reason', message: 'refused with no status_reason' };
        break;
      case 'failed':
        if (!ctx.status_reason) return { kind: 'reason', message: 'failed with no status_reason' };
        break;
      case 'running': {
        if (vm.state !== 'running') return driver(`running but the VM is ${vm.state}`);
        if (ctx.manifest_hash === null) return { kind: 'manifest-hash', message: 'running with no booted manifest hash recorded' };
        if (ctx.manifest_hash !== gate.image) return { kind: 'manifest-hash', message: `running with booted manifest hash ${ctx.manifest_hash} recorded, but the VM runs ${gate.image}` };
        if (ctx.running_since === null) return { kind: 'state', message: 'running with no running_since' };
        // What the instance says the VM applied is what the guest applied (boot, wake or live reload), unless a reload is under way.
        if (reloadStateOf(snap.value as never) !== 'reloading' && (vm.applied?.config_version !== ctx.config_version || vm.applied?.secrets_epoch !== ctx.secrets_epoch)) {
          return { kind: 'state', message: `running with config ${ctx.config_version} / secrets ${ctx.secrets_epoch} recorded as applied, but the guest applied ${JSON.stringify(vm.applied)}` };
        }
        const present = r.harness.secretsPresent();
        for (const name of r.options.connectors) {
          const connector = role.connectors.find((c) => c.name === name)!;
          const region = (snap.value as Record<string, Record<string, string>>).running![`connector-${name}`];
          const should = connector.secrets.every((s) => present.includes(s));
          if ((region === 'enabled') !== should) return { kind: 'connector', message: `connector ${name} is ${region} but its secrets are ${should ? '' : 'not '}in the store` };
          if (ctx.connectors[name]?.enabled !== should) return { kind: 'connector', message: `the context says connector ${name} enabled=${ctx.connectors[name]?.enabled}` };
        }
        break;
      }
      case 'warm':
        if (vm.state !== 'paused') return driver(`warm but the VM is ${vm.state}`);
        break;
      case 'sleeping':
        if (vm.state !== 'stopped') return driver(`sleeping but the VM is ${vm.state}`);
        if (!vm.snapshot || vm.snapshot.snapshot_id !== ctx.snapshot?.snapshot_id) return driver(`sleeping but the driver holds snapshot ${vm.snapshot?.snapshot_id} and the instance ${ctx.snapshot?.snapshot_id}`);
        if (secretsDrive.length > 0) return { kind: 'secrets-drive', message: `sleeping with the secrets drive still there (${secretsDrive.join(', ')})` };
        break;
      case 'stopped':
        if (up) return driver(`stopped but the VM is ${vm.state}`);
        if (secretsDrive.length > 0) return { kind: 'secrets-drive', message: `stopped with the secrets drive still there (${secretsDrive.join(', ')})` };
        break;
      case 'destroyed':
        if (vm.state !== 'absent') return driver(`destroyed but the VM is ${vm.state}`);
        break;
    }
    return undefined;
  };

  /** Preflight answers synchronously when it starts, so its outcome is chosen before the step that enters it. */
  const nextPreflight = (from: number): World['preflight'] => {
    for (let j = from; j < steps.length; j++) {
      const e = steps[j]!.event;
      if (e.type === 'xstate.done.actor.preflight') return e.output?.passed ? 'pass' : 'refuse';
      if (e.type === 'xstate.error.actor.preflight') return 'throw';
    }
    return 'pass';
  };

  /** A driver call completes (or fails by an injected fault) because the path says so. */
  const complete = async (id: string, fail: boolean): Promise<string | undefined> => {
    const info = r.invokes.get(id);
    if (!info) return `no invoke ${id} in the chart`;
    if (info.src === 'preflight') {
      const pending = world.pendingPreflight;
      if (!pending) return `the model completes ${id} but the actor has no preflight pending`;
      world.pendingPreflight = undefined;
      pending();
    } else {
      const call = gate.pending.find((p) => p.op === info.src && p.service === info.service);
      if (!call) return `the model completes ${id} but the actor has no ${info.src} call pending (pending: ${gate.pending.map((p) => p.op).join(', ') || 'none'})`;
      call.release(fail);
    }
    await flush();
    return undefined;
  };

  const violation = (i: number, v: Pick<Violation, 'kind' | 'message'>): Violation => {
    const vm = fake.vm(INSTANCE).state;
    return { ...v, path: describePath(steps, i) || '(start)', top: topOf(actor.getSnapshot().value), model: steps[Math.max(0, i)]!.state.context as ModelContext, vm, lastBootNoop: gate.lastBootNoop };
  };

  try {
    actor.start();
    const initial = check(0);
    if (initial) return violation(0, initial);
    for (let i = 1; i < steps.length; i++) {
      const event = steps[i]!.event;
      world.preflight = nextPreflight(i);
      const ctx = actor.getSnapshot().context as InstanceContext;
      let problem: string | undefined;
      if (event.type.startsWith('xstate.done.actor.')) problem = await complete(event.type.slice('xstate.done.actor.'.length), false);
      else if (event.type.startsWith('xstate.error.actor.')) problem = await complete(event.type.slice('xstate.error.actor.'.length), true);
      else if (event.type.startsWith('deadline.')) {
        const at = ctx.deadlines[event.type.slice('deadline.'.length)];
        if (at === undefined) problem = `the model takes ${event.type} but no such deadline is armed`;
        else clock.increment(Math.max(0, at - clock.now()));
      } else if (event.type === TIME_MIN_RUNTIME) {
        clock.increment(Math.max(0, (ctx.running_since ?? clock.now()) + r.options.min_runtime_s * 1000 - clock.now()));
      } else if (event.type === 'obs.exited') {
        fake.crash(INSTANCE, 'SIGKILL');
        actor.send({ type: 'obs.exited', reason: 'SIGKILL' });
      } else if (event.type === 'obs.secrets-changed') {
        world.store = event.present === true;
        actor.send({ type: 'obs.secrets-changed', secrets: r.harness.secretsPresent() });
      } else if (event.type === 'cmd.revise' && event.live === true) {
        // Same bundle and manifest as desired, the next config version and secrets epoch.
        const { revision } = ctx;
        actor.send({ type: 'cmd.revise', revision: { ...revision, config_version: revision.config_version + 1, secrets_epoch: revision.secrets_epoch + 1 }, manifest_hash: ctx.desired_manifest_hash });
      } else if (event.type === 'cmd.revise') {
        actor.send({ type: 'cmd.revise', revision: { artifacts: 'bundle-2', config_version: 2, secrets_epoch: 1 }, manifest_hash: REVISED_HASH });
      } else actor.send({ type: event.type });
      if (problem) return violation(i, { kind: 'harness', message: problem });
      const found = check(i);
      if (found) return violation(i, found);
    }
    return undefined;
  } catch (error) {
    return violation(steps.length - 1, { kind: 'harness', message: `threw: ${error instanceof Error ? error.stack : String(error)}` });
  } finally {
    actor.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Known runtime bugs: recognised, not hidden. Each has a reproduction below that must keep
// failing until the bug is fixed; then delete the entry and the main runs hold it for good.
// ---------------------------------------------------------------------------------------------

interface KnownBug {
  id: string;
  title: string;
  matches(v: Violation): boolean;
  /** A role and model events that reproduce it. */
  repro: { role: string; events: ModelEvent[] };
}

const e = (type: string, more: Partial<ModelEvent> = {}): ModelEvent => ({ type, ...more }) as ModelEvent;
const LAUNCH = (service: string) => [e('xstate.done.actor.preflight', { output: { passed: true } }), e('xstate.done.actor.prepareDrives'), e('xstate.done.actor.boot'), e(`xstate.done.actor.checkReadiness.${service}`)];

/**
 * Bugs these paths found, now fixed. Each keeps its reproduction as a regression: the path that
 * once showed it must hold every invariant. New findings go in KNOWN_BUGS until they are fixed.
 */
const FIXED_BUGS: KnownBug[] = [
  {
    id: 'stop-keeps-secrets',
    title:
      'FakeHypervisor.stop() removes ephemeral (secrets) drives only from a VM that is up: an instance stopped after its drives were prepared but before it ran (cmd.stop while booting, a failed boot) is `stopped` with the secrets drive still on disk',
    matches: (v) => v.kind === 'secrets-drive' && v.top === 'stopped' && v.model.secretsOnDisk && !up(v.model),
    repro: { role: 'gateway', events: [e('cmd.start'), e('xstate.done.actor.preflight', { output: { passed: true } }), e('xstate.done.actor.prepareDrives'), e('cmd.stop'), e('xstate.done.actor.stop')] },
  },
  {
    id: 'failed-keeps-vm-up',
    title:
      '`failed` leaves the VM as the failed effect left it (a boot that timed out in readiness, a failed stop or destroy): cmd.start from failed then goes to `waiting` or `refused` while the VM still runs (or is paused), uncounted by quotas',
    matches: (v) => v.kind === 'driver' && (v.top === 'waiting' || v.top === 'refused') && up(v.model),
    repro: { role: 'worker', events: [e('cmd.start'), e('dep.ready'), ...LAUNCH('openclaw-node'), e('cmd.stop'), e('xstate.error.actor.stop'), e('cmd.start')] },
  },
  {
    id: 'paused-vm-never-restarts',
    title:
      'An instance that failed with its VM paused (warm, then a failed stop or resume) cannot be started again: boot is a no-op on a paused VM, and every readiness probe fails with vm-paused until the ready deadline fails it again',
    matches: (v) => v.kind === 'state' && v.vm === 'paused' && (v.top === 'launching' || v.top === 'failed'),
    repro: {
      role: 'gateway',
      events: [e('cmd.start'), ...LAUNCH('openclaw-gateway'), e('cmd.warm'), e('deadline.min-runtime'), e('xstate.done.actor.pause'), e('cmd.resume'), e('xstate.error.actor.resume'), e('cmd.start'), e('xstate.done.actor.stop-before-restart'), ...LAUNCH('openclaw-gateway')],
    },
  },
  {
    id: 'noop-boot-records-new-hash',
    title:
      'recordBoot records the desired manifest hash after every successful boot call, but boot is a no-op on a VM that is still up: after a revision, a failed stop and cmd.start, the instance claims to run the new manifest while the VM runs the old one',
    matches: (v) => v.kind === 'manifest-hash' && v.lastBootNoop,
    repro: { role: 'gateway', events: [e('cmd.start'), ...LAUNCH('openclaw-gateway'), e('cmd.revise'), e('cmd.stop'), e('xstate.error.actor.stop'), e('cmd.start'), e('xstate.done.actor.stop-before-restart'), ...LAUNCH('openclaw-gateway')] },
  },
  {
    id: 'stale-connector-secrets',
    title:
      'obs.secrets-changed is handled only in `running`: a secret added or removed while the instance is launching, warm, sleeping or waking is ignored, so connectors come up enabled or disabled from a stale secrets_present (the secrets drive written at the same time has the current secrets)',
    matches: (v) => v.kind === 'connector' && v.model.known !== v.model.store,
    repro: { role: 'gateway', events: [e('cmd.start'), e('xstate.done.actor.preflight', { output: { passed: true } }), e('obs.secrets-changed', { present: true }), ...LAUNCH('openclaw-gateway').slice(1)] },
  },
];

const KNOWN_BUGS: KnownBug[] = [];


// ---------------------------------------------------------------------------------------------

const catalog = await loadCatalogStrict();
const ROLES = [...catalog.roles.keys()].sort();
const LIMIT = 50_000;

interface Prepared extends RoleUnderTest {
  chart: ChartConfig;
  model: AnyStateMachine;
  events: (s: AnyMachineSnapshot) => ModelEvent[];
}

const prepared = new Map<string, Prepared>();
function prepare(name: string): Prepared {
  const existing = prepared.get(name);
  if (existing) return existing;
  const loaded = catalog.roles.get(name)!;
  const role = loaded.manifest;
  const options = fullOptions(role);
  const chart = composeInstanceChart(role, options);
  const usesMinRuntime = usesMinRuntimeGuard(chart);
  const invokes = invokesOf(chart);
  const model = modelMachine(chart, role, usesMinRuntime);
  const entry: Prepared = { loaded, options, chart, model, harness: roleHarness(loaded, options), invokes: new Map(invokes.map((i) => [i.id, i])), events: modelEvents(role, invokes, usesMinRuntime) };
  prepared.set(name, entry);
  return entry;
}

/** Atomic state paths of a chart value, e.g. `running.connector-telegram.disabled`. */
function leaves(value: unknown, prefix = ''): string[] {
  if (typeof value === 'string') return [`${prefix}${value}`];
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => leaves(v, `${prefix}${k}.`));
}

function atomicStates(node: StateConfig, prefix = ''): string[] {
  return Object.entries(node.states ?? {}).flatMap(([name, child]) => (child.states ? atomicStates(child, `${prefix}${name}.`) : [`${prefix}${name}`]));
}

/** States nothing rests in: final states of regions (their parallel parent finishes at once) and states left by `always`. */
function passThroughStates(node: StateConfig, prefix = ''): string[] {
  return Object.entries(node.states ?? {}).flatMap(([name, child]) => [...(child.type === 'final' || child.always ? [`${prefix}${name}`] : []), ...passThroughStates(child, `${prefix}${name}.`)]);
}

describe('model-based paths of the generated instance charts', () => {
  it('covers the built-in roles', () => {
    expect(ROLES).toEqual(['builder', 'capability-imessage', 'gateway', 'worker']);
  });

  for (const name of ROLES) {
    it(`every path of the ${name} chart runs on the real actor and fake driver, and the invariants hold at every step`, async () => {
      const r = prepare(name);
      const { paths, states, edges, modelValues } = enumeratePaths(r.model, r.events, LIMIT);
      const visited = new Set<string>();
      const unknown: Violation[] = [];
      const known = new Map<string, number>();
      let steps = 0;
      for (const path of paths) {
        steps += path.length - 1;
        const v = await executePath(r, path, visited);
        if (!v) continue;
        const bug = KNOWN_BUGS.find((b) => b.matches(v));
        if (bug) known.set(bug.id, (known.get(bug.id) ?? 0) + 1);
        else unknown.push(v);
      }
      if (process.env.MODEL_PATHS_STATS) console.log(name, { modelStates: states, modelEdges: edges, paths: paths.length, steps, knownBugPaths: Object.fromEntries(known) });

      // Every violation that is not a known bug, grouped by message, with the shortest path that shows it.
      const grouped = new Map<string, Violation[]>();
      for (const v of unknown) grouped.set(v.message, [...(grouped.get(v.message) ?? []), v]);
      const report = [...grouped.entries()].map(([message, vs]) => `${vs.length} path(s): ${message}\n      shortest: ${vs.map((v) => v.path).sort((a, b) => a.length - b.length)[0]}`);
      expect(report).toEqual([]);

      // The paths cover the chart: every atomic state the model reaches, the real actor reached too,
      // and the model misses only what nothing can rest in (see passThroughStates) and the disabled
      // state of a connector that needs no secret.
      const reached = new Set([...visited].flatMap((v) => leaves(JSON.parse(v))));
      const modelReached = new Set(modelValues.flatMap((v) => leaves(v)));
      expect([...modelReached].filter((s) => !reached.has(s))).toEqual([]);
      const unreachable = atomicStates(r.chart).filter((s) => !modelReached.has(s));
      const explained = [...passThroughStates(r.chart), ...r.loaded.manifest.connectors.filter((c) => c.secrets.length === 0).map((c) => `running.connector-${c.name}.disabled`)];
      expect(unreachable.filter((s) => !explained.includes(s))).toEqual([]);
      // Every effect was seen to complete and to fail, and every deadline to fire.
      const taken = new Set(paths.flatMap((p) => p.map((step) => step.event.type)));
      const effects = [...r.invokes.values()].flatMap((i) => (i.src === 'deadline' ? [i.id] : [`xstate.done.actor.${i.id}`, `xstate.error.actor.${i.id}`]));
      expect(effects.filter((type) => !taken.has(type))).toEqual([]);
      expect(paths.length).toBeGreaterThan(50);
    });
  }

  for (const bug of KNOWN_BUGS) {
    it(`known bug still reproduces (delete it from KNOWN_BUGS once fixed): ${bug.id}`, async () => {
      const r = prepare(bug.repro.role);
      const [path] = getPathsFromEvents(r.model, bug.repro.events as never, { serializeState: (s: AnyMachineSnapshot) => JSON.stringify([s.value, s.context]) } as never) as unknown as Path[];
      const v = await executePath(r, path!.steps as Step[]);
      expect(v && { id: bug.id, matches: bug.matches(v), message: v.message }).toMatchObject({ id: bug.id, matches: true });
    });
  }

  for (const bug of FIXED_BUGS) {
    it(`regression: the path that showed ${bug.id} now holds every invariant`, async () => {
      const r = prepare(bug.repro.role);
      const [path] = getPathsFromEvents(r.model, bug.repro.events as never, { serializeState: (s: AnyMachineSnapshot) => JSON.stringify([s.value, s.context]) } as never) as unknown as Path[];
      expect(path, 'the reproduction path still exists in the model').toBeDefined();
      expect(path!.steps.length).toBe(bug.repro.events.length + 1);
      const v = await executePath(r, path!.steps as Step[]);
      expect(v?.message).toBeUndefined();
    });
  }
});
