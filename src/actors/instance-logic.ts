import { createHash } from 'node:crypto';
import { assign, fromCallback, fromPromise, setup, type AnyActorRef, type AnyMachineSnapshot, type AnyStateMachine } from 'xstate';
import type { ChartConfig } from '../../machines/chart-config.ts';
import { composeInstanceChart, type ComposeOptions } from '../../machines/compose-instance-chart.ts';
import type { InstanceContext, PreflightResult } from '../../machines/instance-context.ts';
import { rootOnlyEvents, type RootOnlyEvents } from '../../machines/root-only-events.ts';
import { DEADLINE_EVENT_PREFIX, type ActionName } from '../../machines/vocabulary.ts';
import { canonicalJson } from '../catalog/manifest-hash.ts';
import type { Clock } from '../common/clock.ts';
import { DriverError, type InstanceSpec, type OpContext, type ReloadRequest, type SnapshotRef, type VmmDriver } from '../driver/vmm-driver.ts';
import type { RoleManifest } from '../schemas/role-manifest.ts';

/**
 * The one implementation of the chart vocabulary (machines/vocabulary.ts). Charts name these
 * actions, guards and actors; here each is written once, against injected effects. Effects
 * never loop or wait on their own: each invoked actor makes one driver call and reports back.
 */

/** What instance actors need from the host. */
export interface InstanceEffects {
  driver: VmmDriver;
  clock: Clock;
  /** The driver spec for an instance: network, resources and the computed drive contents. */
  specFor(context: InstanceContext): InstanceSpec;
  /** Checks the computed drives against the role (required drives and secrets present). */
  preflight(context: InstanceContext): PreflightResult | Promise<PreflightResult>;
}

/** Events an instance actor handles, beyond XState's own done/error events. */
export type InstanceEvent = { type: string; [key: string]: unknown };

/** What an assign action of the vocabulary reads. */
interface AssignerArgs {
  context: InstanceContext;
  event: InstanceEvent;
}

export interface InstanceLogicOptions {
  /**
   * Apply root-level context-only observations directly (default true). false runs XState's full
   * macrostep for every event; the tests run both and compare the snapshots.
   */
  rootShortcuts?: boolean;
}

/** What a live reload applied: the reload actor's output. */
export interface AppliedRevision {
  config_version: number;
  secrets_epoch: number;
}

/** The system id of every instance root: effects find their instance's context through it. */
export const INSTANCE_SYSTEM_ID = 'vm';

const DEFAULT_OP_MS = 60_000;

function contextOf(system: { get(id: string): AnyActorRef | undefined }): InstanceContext {
  const root = system.get(INSTANCE_SYSTEM_ID);
  if (!root) throw new Error(`no actor registered as "${INSTANCE_SYSTEM_ID}"; instance actors must be created with systemId "${INSTANCE_SYSTEM_ID}"`);
  return root.getSnapshot().context as InstanceContext;
}

export interface InstanceMachine {
  machine: AnyStateMachine;
  chart: ChartConfig;
  /** Short hash of the chart; persisted with snapshots so a changed chart is noticed on restore. */
  chartVersion: string;
}

/** Builds instance machines for roles, implemented once against `effects` and cached per chart. */
export function createInstanceLogic(effects: InstanceEffects, logicOptions: InstanceLogicOptions = {}) {
  const { driver, clock } = effects;
  const opContext = (context: InstanceContext, signal: AbortSignal, deadlineName?: string): OpContext => ({
    signal,
    deadline: (deadlineName && context.deadlines[deadlineName]) || clock.now() + DEFAULT_OP_MS,
  });

  /** One driver call as an invoked actor; the instance's spec is computed when it starts. */
  const driverCall = <T>(run: (spec: InstanceSpec, ctx: OpContext, context: InstanceContext) => Promise<T>, deadlineName?: string) =>
    fromPromise<T, { service?: string } | undefined>(async ({ system, signal }) => {
      const context = contextOf(system);
      return run(effects.specFor(context), opContext(context, signal, deadlineName), context);
    });

  /**
   * Every action of the vocabulary updates context only. Written as plain functions so that
   * root-level observations can apply them without XState's macrostep (see `shortcut` below);
   * setup() wraps each in assign().
   */
  const assigners = {
    armDeadline: ({ context }: AssignerArgs, params: { name: string; seconds: number; from: 'now' | 'running_since' }) => {
      const base = params.from === 'running_since' && context.running_since !== null ? context.running_since : clock.now();
      return { deadlines: { ...context.deadlines, [params.name]: base + params.seconds * 1000 } };
    },
    recordPreflight: ({ event }: AssignerArgs) => {
      const result = (event as { output?: PreflightResult }).output;
      return { secrets_present: result?.secrets_present ?? [], drives_missing: result?.drives_missing ?? [] };
    },
    recordRefusal: ({ event }: AssignerArgs) => ({ status_reason: (event as { output?: PreflightResult }).output?.reason ?? 'refused' }),
    recordFailure: ({ event }: AssignerArgs, params: { what: string; with_error?: boolean }) => {
      const error = (event as { error?: unknown }).error;
      if (params.with_error && error instanceof DriverError) return { status_reason: `${params.what}: ${error.code}: ${error.message}`.slice(0, 1000) };
      return { status_reason: params.what };
    },
    recordBoot: ({ context }: AssignerArgs) => ({ booted_at: clock.now(), manifest_hash: context.desired_manifest_hash, booted_artifacts: context.revision.artifacts, status_reason: null }),
    recordMounted: ({ context }: AssignerArgs) => ({ config_version: context.revision.config_version, secrets_epoch: context.revision.secrets_epoch }),
    markRunning: () => ({ running_since: clock.now(), status_reason: null }),
    countRestart: ({ context }: AssignerArgs) => ({ restarts: [...context.restarts.slice(-20), clock.now()] }),
    recordDeferral: (_: AssignerArgs, params: { command: string }) => ({ deferred: { command: params.command, since: clock.now() } }),
    clearDeferral: () => ({ deferred: null }),
    recordSnapshot: ({ event }: AssignerArgs) => ({ snapshot: (event as { output?: SnapshotRef }).output ?? null }),
    recordSecrets: ({ event }: AssignerArgs) => ({ secrets_present: Array.isArray(event.secrets) ? (event.secrets as string[]) : [] }),
    enableConnector: ({ context }: AssignerArgs, params: { connector: string }) => ({ connectors: { ...context.connectors, [params.connector]: { enabled: true, missing: [] } } }),
    disableConnector: ({ context }: AssignerArgs, params: { connector: string; secrets: string[] }) => ({
      connectors: { ...context.connectors, [params.connector]: { enabled: false, missing: params.secrets.filter((s) => !context.secrets_present.includes(s)) } },
    }),
    recordRevision: ({ event }: AssignerArgs) => {
      const revision = event.revision as InstanceContext['revision'];
      return { revision, desired_manifest_hash: event.manifest_hash as string };
    },
    recordReload: ({ event }: AssignerArgs) => {
      const applied = (event as { output?: AppliedRevision }).output;
      return applied ? { config_version: applied.config_version, secrets_epoch: applied.secrets_epoch, status_reason: null } : { status_reason: null };
    },
    recordExit: ({ event }: AssignerArgs) => ({ status_reason: `exited: ${typeof event.reason === 'string' ? event.reason : 'unknown'}` }),
  } satisfies Record<ActionName, (args: AssignerArgs, params: never) => Partial<InstanceContext>>;

  const implementation = setup({
    types: {} as { context: InstanceContext; events: InstanceEvent; input: InstanceContext },
    actions: {
      armDeadline: assign(assigners.armDeadline),
      recordPreflight: assign(assigners.recordPreflight),
      recordRefusal: assign(assigners.recordRefusal),
      recordFailure: assign(assigners.recordFailure),
      recordBoot: assign(assigners.recordBoot),
      recordMounted: assign(assigners.recordMounted),
      markRunning: assign(assigners.markRunning),
      countRestart: assign(assigners.countRestart),
      recordDeferral: assign(assigners.recordDeferral),
      clearDeferral: assign(assigners.clearDeferral),
      recordSnapshot: assign(assigners.recordSnapshot),
      recordSecrets: assign(assigners.recordSecrets),
      enableConnector: assign(assigners.enableConnector),
      disableConnector: assign(assigners.disableConnector),
      recordRevision: assign(assigners.recordRevision),
      recordReload: assign(assigners.recordReload),
      recordExit: assign(assigners.recordExit),
    },
    guards: {
      preflightPassed: ({ event }) => (event as { output?: PreflightResult }).output?.passed === true,
      secretsPresent: ({ context }, params: { secrets: string[] }) => params.secrets.every((s) => context.secrets_present.includes(s)),
      minRuntimeElapsed: ({ context }, params: { seconds: number }) => context.running_since !== null && clock.now() - context.running_since >= params.seconds * 1000,
      finalError: ({ event }) => {
        const error = (event as { error?: unknown }).error;
        return error instanceof DriverError && !error.retryable;
      },
      restartAllowed: ({ context }, params: { policy: string; max: number; window_s: number }) =>
        params.policy !== 'never' && context.restarts.filter((t) => clock.now() - t < params.window_s * 1000).length < params.max,
      revisionReloadable: ({ context, event }, params: ReloadRequest) => {
        const revision = event.revision as InstanceContext['revision'] | undefined;
        if (!revision || revision.artifacts !== context.booted_artifacts || event.manifest_hash !== context.manifest_hash) return false;
        return (params.config && revision.config_version !== context.config_version) || (params.secrets && revision.secrets_epoch !== context.secrets_epoch);
      },
    },
    actors: {
      preflight: fromPromise<PreflightResult>(async ({ system }) => effects.preflight(contextOf(system))),
      prepareDrives: driverCall((spec, ctx) => driver.prepareDrives(spec, ctx), 'boot'),
      boot: driverCall((spec, ctx) => driver.boot(spec, ctx), 'boot'),
      checkReadiness: fromPromise<void, { service: string }>(async ({ system, signal, input }) => {
        const context = contextOf(system);
        const spec = effects.specFor(context);
        const role = roleOf(context);
        const service = role?.services.find((s) => s.name === input.service);
        if (!service) throw new Error(`service "${input.service}" is not declared by role "${context.role}"`);
        return driver.checkReadiness(spec, service, opContext(context, signal, `ready.${input.service}`));
      }),
      pause: driverCall((spec, ctx) => driver.pause(spec.instance_id, ctx)),
      resume: driverCall((spec, ctx) => driver.resume(spec.instance_id, ctx)),
      drain: driverCall((spec, ctx) => driver.drain(spec.instance_id, ctx), 'drain'),
      snapshot: driverCall((spec, ctx) => driver.snapshot(spec, ctx)),
      restore: driverCall((spec, ctx, context) => {
        if (!context.snapshot) throw new DriverError('restore', spec.instance_id, 'no-snapshot', 'no snapshot recorded', false);
        return driver.restore(spec, context.snapshot, ctx);
      }, 'boot'),
      // Only what the revision changed among what the role enables; the spec carries the desired revision.
      reload: fromPromise<AppliedRevision, ReloadRequest>(async ({ system, signal, input }) => {
        const context = contextOf(system);
        const what = { config: input.config && context.revision.config_version !== context.config_version, secrets: input.secrets && context.revision.secrets_epoch !== context.secrets_epoch };
        const applied = { config_version: what.config ? context.revision.config_version : context.config_version, secrets_epoch: what.secrets ? context.revision.secrets_epoch : context.secrets_epoch };
        if (what.config || what.secrets) await driver.reload(effects.specFor(context), what, opContext(context, signal));
        return applied;
      }),
      stop: driverCall((spec, ctx) => driver.stop(spec.instance_id, ctx), 'stop'),
      destroy: driverCall((spec, ctx) => driver.destroy(spec.instance_id, ctx)),
      deadline: fromCallback<InstanceEvent, { name: string }>(({ input, system, sendBack }) => {
        const at = contextOf(system).deadlines[input.name];
        if (at === undefined) return undefined;
        const handle = clock.setTimeout(() => sendBack({ type: `${DEADLINE_EVENT_PREFIX}${input.name}` }), Math.max(0, at - clock.now()));
        return () => clock.clearTimeout(handle);
      }),
    },
  });

  /**
   * A root-level observation where rootOnlyEvents says XState would end in the same configuration:
   * its actions applied to the context, exactly as XState's assign does (a fresh object per
   * action), and everything else of the snapshot kept. This skips the macrostep over every active
   * region, which costs several times more than the assignment.
   */
  const shortcut = (snapshot: AnyMachineSnapshot, event: InstanceEvent, actions: readonly { type: ActionName; params?: Record<string, unknown> }[]): AnyMachineSnapshot => {
    let context = snapshot.context as InstanceContext;
    for (const action of actions) {
      const assigner = assigners[action.type] as (args: AssignerArgs, params: unknown) => Partial<InstanceContext>;
      context = Object.assign({}, context, assigner({ context, event }, action.params));
    }
    return { ...snapshot, context };
  };
  const topStateOf = (value: unknown): string | undefined => {
    if (typeof value === 'string') return value;
    for (const key in value as Record<string, unknown>) return key;
    return undefined;
  };

  // The event behind each actor's latest transition, for the journal. Recorded by wrapping the
  // machine's transition function (one wrapper per chart), which costs far less than XState's
  // inspection API: that one builds several inspection objects for every event.
  const lastEvents = new WeakMap<object, string>();
  const observe = (machine: AnyStateMachine, rootOnly: RootOnlyEvents): AnyStateMachine => {
    const observed = Object.create(machine) as AnyStateMachine;
    observed.transition = (snapshot, event, scope) => {
      if (event.type !== 'xstate.init') lastEvents.set(scope.self, event.type);
      if (snapshot.status === 'active' && rootOnly.size > 0) {
        const top = topStateOf(snapshot.value);
        const actions = top === undefined ? undefined : rootOnly.get(top)?.get(event.type);
        if (actions) return shortcut(snapshot, event as InstanceEvent, actions);
      }
      return machine.transition(snapshot, event, scope);
    };
    return observed;
  };

  const roles = new Map<string, RoleManifest>();
  const roleOf = (context: InstanceContext) => roles.get(context.role);
  const cache = new Map<string, InstanceMachine>();
  // Composing and hashing a chart costs far more than looking it up: remember it per manifest
  // object and options, so ten thousand instances of two pools compose two charts.
  const composed = new WeakMap<RoleManifest, Map<string, InstanceMachine>>();

  return {
    /** The machine for a role and pool options; built once per distinct chart. */
    machineFor(role: RoleManifest, options: ComposeOptions): InstanceMachine {
      const optionsKey = `${options.ingress}|${[...options.connectors].sort().join(',')}|${options.min_runtime_s}`;
      let byOptions = composed.get(role);
      if (!byOptions) composed.set(role, (byOptions = new Map()));
      const known = byOptions.get(optionsKey);
      if (known) return known;
      roles.set(role.name, role);
      const chart = composeInstanceChart(role, options);
      const chartVersion = createHash('sha256').update(canonicalJson(chart)).digest('hex').slice(0, 16);
      let entry = cache.get(chartVersion);
      if (!entry) {
        // The context comes from the actor's input; it is the only function the machine holds,
        // and it is part of the implementation, not of the chart.
        const machine = implementation.createMachine({ ...(chart as object), context: ({ input }: { input: InstanceContext }) => input } as never);
        const rootOnly: RootOnlyEvents = logicOptions.rootShortcuts === false ? new Map() : rootOnlyEvents(chart);
        entry = { machine: observe(machine as unknown as AnyStateMachine, rootOnly), chart, chartVersion };
        cache.set(chartVersion, entry);
      }
      byOptions.set(optionsKey, entry);
      return entry;
    },
    /** The type of the event that caused the actor's latest transition, if any yet. */
    lastEventOf(actor: object): string | undefined {
      return lastEvents.get(actor);
    },
  };
}

export type InstanceLogic = ReturnType<typeof createInstanceLogic>;

/**
 * `actor.getPersistedSnapshot()` for an instance actor, without its generic walk when there is
 * nothing to convert: no invoked children and no history. XState's version rest-destructures the
 * snapshot, copies the context looking for actor references (instance contexts hold plain data
 * only: no action spawns) and serialises the history; here the same fields are picked in the
 * same order. With children or history it defers to XState. The tests compare both.
 */
export function persistedSnapshotOf(actor: AnyActorRef): unknown {
  const s = actor.getSnapshot() as AnyMachineSnapshot;
  for (const _ in s.children) return actor.getPersistedSnapshot();
  for (const _ in s.historyValue) return actor.getPersistedSnapshot();
  return { status: s.status, output: s.output, error: s.error, value: s.value, historyValue: {}, context: s.context, children: {} };
}
