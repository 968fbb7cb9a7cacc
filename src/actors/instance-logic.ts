import { createHash } from 'node:crypto';
import { assign, fromCallback, fromPromise, setup, type AnyActorRef, type AnyStateMachine } from 'xstate';
import type { ChartConfig } from '../../machines/chart-config.ts';
import { composeInstanceChart, type ComposeOptions } from '../../machines/compose-instance-chart.ts';
import type { InstanceContext, PreflightResult } from '../../machines/instance-context.ts';
import { DEADLINE_EVENT_PREFIX } from '../../machines/vocabulary.ts';
import { canonicalJson } from '../catalog/manifest-hash.ts';
import type { Clock } from '../common/clock.ts';
import { DriverError, type InstanceSpec, type OpContext, type SnapshotRef, type VmmDriver } from '../driver/vmm-driver.ts';
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
export function createInstanceLogic(effects: InstanceEffects) {
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

  const implementation = setup({
    types: {} as { context: InstanceContext; events: InstanceEvent; input: InstanceContext },
    actions: {
      armDeadline: assign(({ context }, params: { name: string; seconds: number; from: 'now' | 'running_since' }) => {
        const base = params.from === 'running_since' && context.running_since !== null ? context.running_since : clock.now();
        return { deadlines: { ...context.deadlines, [params.name]: base + params.seconds * 1000 } };
      }),
      recordPreflight: assign(({ event }) => {
        const result = (event as { output?: PreflightResult }).output;
        return { secrets_present: result?.secrets_present ?? [], drives_missing: result?.drives_missing ?? [] };
      }),
      recordRefusal: assign(({ event }) => ({ status_reason: (event as { output?: PreflightResult }).output?.reason ?? 'refused' })),
      recordFailure: assign((_, params: { what: string }) => ({ status_reason: params.what })),
      recordBoot: assign(({ context }) => ({ booted_at: clock.now(), manifest_hash: context.desired_manifest_hash, status_reason: null })),
      markRunning: assign(() => ({ running_since: clock.now(), status_reason: null })),
      countRestart: assign(({ context }) => ({ restarts: [...context.restarts.slice(-20), clock.now()] })),
      recordDeferral: assign((_, params: { command: string }) => ({ deferred: { command: params.command, since: clock.now() } })),
      clearDeferral: assign(() => ({ deferred: null })),
      recordSnapshot: assign(({ event }) => ({ snapshot: (event as { output?: SnapshotRef }).output ?? null })),
      recordSecrets: assign(({ event }) => ({ secrets_present: Array.isArray(event.secrets) ? (event.secrets as string[]) : [] })),
      enableConnector: assign(({ context }, params: { connector: string }) => ({ connectors: { ...context.connectors, [params.connector]: { enabled: true, missing: [] } } })),
      disableConnector: assign(({ context }, params: { connector: string; secrets: string[] }) => ({
        connectors: { ...context.connectors, [params.connector]: { enabled: false, missing: params.secrets.filter((s) => !context.secrets_present.includes(s)) } },
      })),
      recordRevision: assign(({ event }) => {
        const revision = event.revision as InstanceContext['revision'];
        return { revision, config_version: revision.config_version, secrets_epoch: revision.secrets_epoch, desired_manifest_hash: event.manifest_hash as string };
      }),
      recordExit: assign(({ event }) => ({ status_reason: `exited: ${typeof event.reason === 'string' ? event.reason : 'unknown'}` })),
    },
    guards: {
      preflightPassed: ({ event }) => (event as { output?: PreflightResult }).output?.passed === true,
      secretsPresent: ({ context }, params: { secrets: string[] }) => params.secrets.every((s) => context.secrets_present.includes(s)),
      minRuntimeElapsed: ({ context }, params: { seconds: number }) => context.running_since !== null && clock.now() - context.running_since >= params.seconds * 1000,
      restartAllowed: ({ context }, params: { policy: string; max: number; window_s: number }) =>
        params.policy !== 'never' && context.restarts.filter((t) => clock.now() - t < params.window_s * 1000).length < params.max,
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

  // The event behind each actor's latest transition, for the journal. Recorded by wrapping the
  // machine's transition function (one wrapper per chart), which costs far less than XState's
  // inspection API: that one builds several inspection objects for every event.
  const lastEvents = new WeakMap<object, string>();
  const observe = (machine: AnyStateMachine): AnyStateMachine => {
    const observed = Object.create(machine) as AnyStateMachine;
    observed.transition = (snapshot, event, scope) => {
      if (event.type !== 'xstate.init') lastEvents.set(scope.self, event.type);
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
        entry = { machine: observe(machine as unknown as AnyStateMachine), chart, chartVersion };
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
