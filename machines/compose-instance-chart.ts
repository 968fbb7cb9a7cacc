import type { RoleManifest } from '../src/schemas/role-manifest.ts';
import type { ActionRef, ChartConfig, InvokeConfig, StateConfig, TransitionConfig } from './chart-config.ts';
import { checkChartVocabulary } from './check-chart-vocabulary.ts';

/**
 * Role manifest -> instance statechart. Every difference between roles comes from a manifest
 * field, each fragment below says which; no role name appears here.
 *
 *   pending -> [waiting] -> preflight -> launching (provisioning, booting, starting) -> running
 *   running <-> warming/warm/resuming          (sleep.warm_allowed)
 *   running -> [draining] -> snapshotting -> sleeping -> waking -> running   (sleep.allowed; draining
 *                                                                            only with the drain handler)
 *   running -> destroying -> destroyed          (lifecycle.disposable: runs to completion)
 *   running.reload: idle -> reloading -> idle | failed   (vsock.handlers config-reload / secrets-reload)
 *   any -> stopping -> stopped; refused; failed; destroying -> destroyed
 */

export interface ComposeOptions {
  /** The pool turned ingress on (honoured only where the role allows ingress). */
  ingress: boolean;
  /** Connectors the pool enables (must be declared by the role). */
  connectors: readonly string[];
  /** Minimum runtime before warm, sleep or retire: the role's, or a pool's higher one. */
  min_runtime_s: number;
}

export class ChartCompositionError extends Error {
  override readonly name = 'ChartCompositionError';
  readonly code = 'MVM_ERR_CHART_COMPOSITION';
  constructor(
    readonly role: string,
    readonly field: string,
    detail: string,
  ) {
    super(`role "${role}", ${field}: ${detail}`);
  }
}

const act = (type: ActionRef['type'], params?: Record<string, unknown>): ActionRef => (params ? { type, params } : { type });

/** An invoked deadline and the transition it triggers. */
function deadline(name: string): InvokeConfig {
  return { id: `deadline.${name}`, src: 'deadline', input: { name } };
}

function failTo(what: string): TransitionConfig {
  return { target: '#vm.failed', actions: [act('recordFailure', { what })] };
}

/** Things a manifest can say that the runtime cannot honour; checked before any chart exists. */
function checkHonourable(role: RoleManifest, options: ComposeOptions): void {
  const fail = (field: string, detail: string) => {
    throw new ChartCompositionError(role.name, field, detail);
  };
  const handlers = new Set(role.vsock.handlers);
  if (role.sleep.allowed && !handlers.has('post-restore')) {
    fail('vsock.handlers', 'a role that may sleep needs the "post-restore" handler (secrets and entropy are refreshed after every wake)');
  }
  role.services.forEach((service, i) => {
    if (service.readiness.kind === 'agent' && !handlers.has('readiness')) {
      fail(`services[${i}].readiness`, 'an "agent" readiness check needs the "readiness" vsock handler');
    }
  });
  if (role.connectors.length > 0 && !handlers.has('connector-status')) {
    fail('vsock.handlers', 'a role with connectors needs the "connector-status" handler');
  }
  const declared = new Set(role.connectors.map((c) => c.name));
  if (options.min_runtime_s < role.sleep.min_runtime_s) {
    fail('sleep.min_runtime_s', `the pool asks for ${options.min_runtime_s}s, below the role's ${role.sleep.min_runtime_s}s; a pool may only raise it`);
  }
  options.connectors.forEach((name) => {
    if (!declared.has(name)) fail('connectors', `the pool enables connector "${name}", which the role does not declare`);
  });
  if (options.ingress && !role.ingress.allowed) fail('ingress.allowed', 'the pool turns ingress on but the role does not allow it');
}

/** One region per declared service: probe, wait the interval, probe again, until ready or timed out. */
function serviceRegions(role: RoleManifest): Record<string, StateConfig> {
  const regions: Record<string, StateConfig> = {};
  for (const service of role.services) {
    const probe = `probe.${service.name}`;
    const ready = `ready.${service.name}`;
    regions[service.name] = {
      description: `Readiness of service ${service.name} (${service.readiness.kind} check, ${service.readiness.timeout_s}s timeout).`,
      initial: 'probing',
      entry: [act('armDeadline', { name: ready, seconds: service.readiness.timeout_s, from: 'now' })],
      invoke: [deadline(ready)],
      on: { [`deadline.${ready}`]: failTo(`service ${service.name} not ready within ${service.readiness.timeout_s}s`) },
      states: {
        probing: {
          invoke: [
            {
              id: `checkReadiness.${service.name}`,
              src: 'checkReadiness',
              input: { service: service.name },
              onDone: { target: 'ready' },
              // A final refusal (wrong credentials) fails at once with the driver's code, instead of probing until the timeout.
              onError: [
                { guard: { type: 'finalError' }, target: '#vm.failed', actions: [act('recordFailure', { what: `service ${service.name} not ready`, with_error: true })] },
                { target: 'retrying' },
              ],
            },
          ],
        },
        retrying: {
          entry: [act('armDeadline', { name: probe, seconds: service.readiness.interval_s, from: 'now' })],
          invoke: [deadline(probe)],
          on: { [`deadline.${probe}`]: { target: 'probing' } },
        },
        ready: { type: 'final' },
      },
    };
  }
  return regions;
}

/** The `starting` step shared by launching and waking: all services ready, then running. */
function startingState(role: RoleManifest): StateConfig {
  if (role.services.length === 0) {
    return { description: 'No services declared: ready as soon as the VM is up.', always: [{ target: '#vm.running', actions: [act('markRunning')] }] };
  }
  return { description: 'One region per declared service; running once every service is ready.', type: 'parallel', states: serviceRegions(role), onDone: { target: '#vm.running', actions: [act('markRunning')] } };
}

function restartOrFail(role: RoleManifest): TransitionConfig[] {
  const { restart, max_restarts, restart_window_s } = role.lifecycle;
  const recordExit = act('recordExit');
  if (restart === 'never') return [{ target: '#vm.failed', actions: [recordExit] }];
  return [
    {
      guard: { type: 'restartAllowed', params: { policy: restart, max: max_restarts, window_s: restart_window_s } },
      target: '#vm.launching',
      // Re-enter launching even from inside it, so its boot deadline is armed afresh.
      reenter: true,
      actions: [recordExit, act('countRestart')],
    },
    { target: '#vm.failed', actions: [recordExit] },
  ];
}

function connectorRegion(role: RoleManifest, name: string): StateConfig {
  const connector = role.connectors.find((c) => c.name === name)!;
  // A region that handles an event keeps its parallel parent from handling it too (XState),
  // so the connector records the new secrets itself before it checks them again.
  const recheck = { 'obs.secrets-changed': { target: 'checking', actions: [act('recordSecrets')] } };
  return {
    description: `Connector ${name}: enabled only while its secrets (${connector.secrets.join(', ') || 'none'}) are present.`,
    initial: 'checking',
    states: {
      checking: {
        always: [
          { guard: { type: 'secretsPresent', params: { secrets: connector.secrets } }, target: 'enabled', actions: [act('enableConnector', { connector: name })] },
          { target: 'disabled', actions: [act('disableConnector', { connector: name, secrets: connector.secrets })] },
        ],
      },
      enabled: { on: recheck },
      disabled: { description: 'A required secret is missing; the VM runs without this connector.', on: recheck },
    },
  };
}

/**
 * A new config_version or secrets_epoch reaches the running VM live, over the guest agent's
 * config-reload and secrets-reload verbs, for whichever of the two the role enables
 * (`vsock.handlers`); a new bundle or manifest, or a change the role cannot reload, waits for the
 * next boot or wake. The region handles cmd.revise itself (a deeper handler replaces the root's),
 * so it records the revision in every one of its states. A failed reload leaves the VM running
 * with what it had and the reason in status_reason; the host sends cmd.revise again at every
 * apply while the VM lags its pool's revision, which retries it. A revision arriving during a
 * reload is recorded and reloaded at the next apply. No eventless transitions: running stays
 * eligible for the root-only shortcuts (machines/root-only-events.ts).
 */
function reloadRegion(role: RoleManifest): StateConfig | null {
  const params = { config: role.vsock.handlers.includes('config-reload'), secrets: role.vsock.handlers.includes('secrets-reload') };
  if (!params.config && !params.secrets) return null;
  const verbs = [params.config ? 'config-reload' : null, params.secrets ? 'secrets-reload' : null].filter((v) => v !== null).join(' and ');
  const revise = (target: string): TransitionConfig[] => [
    { guard: { type: 'revisionReloadable', params }, target, actions: [act('recordRevision')] },
    { actions: [act('recordRevision')] },
  ];
  return {
    description: `Live reloads over ${verbs}: a new ${[params.config ? 'config_version' : null, params.secrets ? 'secrets_epoch' : null].filter((v) => v !== null).join(' or ')} reaches the running VM without a reboot; a new bundle waits for the next boot.`,
    initial: 'idle',
    states: {
      idle: { on: { 'cmd.revise': revise('reloading') } },
      reloading: {
        description: 'The driver rewrites the drive(s) and the guest agent applies them; only a service whose generated config changed is restarted.',
        invoke: [
          {
            id: 'reload',
            src: 'reload',
            input: params,
            onDone: { target: 'idle', actions: [act('recordReload')] },
            onError: { target: 'failed', actions: [act('recordFailure', { what: 'reload', with_error: true })] },
          },
        ],
        on: { 'cmd.revise': { actions: [act('recordRevision')] } },
      },
      failed: {
        description: 'The last reload failed: the VM runs on with the config and secrets it had, status_reason says why; the next cmd.revise tries again.',
        on: { 'cmd.revise': revise('reloading') },
      },
    },
  };
}

/** running: the lifecycle region (deferrals) plus one region per enabled connector and ingress, and live reloads. */
function runningState(role: RoleManifest, options: ComposeOptions): StateConfig {
  const { lifecycle } = role;
  const sleep = { ...role.sleep, min_runtime_s: options.min_runtime_s };
  const minRuntime = { type: 'minRuntimeElapsed' as const, params: { seconds: sleep.min_runtime_s } };
  const afterDrain = role.vsock.handlers.includes('drain') ? '#vm.draining' : '#vm.snapshotting';
  const lifecycleStates: Record<string, StateConfig> = { idle: {} };
  const on: Record<string, TransitionConfig | TransitionConfig[]> = {
    'cmd.stop': { target: '#vm.stopping' },
    'obs.exited': lifecycle.disposable ? { target: '#vm.destroying', actions: [act('recordExit')], description: 'A disposable role ran to completion.' } : restartOrFail(role),
  };

  // A deferred command waits for the minimum runtime, as an absolute deadline that survives a restart.
  // The lifecycle region handles the commands itself: a transition declared on `running` into
  // one of its regions would exit and re-enter every region (XState's transition domain is
  // `running`), cancelling a live reload and re-checking every connector.
  const deferrals: Record<string, TransitionConfig[]> = {};
  const deferrable = (command: 'cmd.sleep' | 'cmd.warm' | 'cmd.retire', region: string, then: string) => {
    deferrals[command] = [
      { guard: minRuntime, target: then, actions: [act('clearDeferral')] },
      { target: region, actions: [act('recordDeferral', { command })] },
    ];
    lifecycleStates[region] = {
      description: `${command} waits until the ${sleep.min_runtime_s}s minimum runtime has passed.`,
      entry: [act('armDeadline', { name: 'min-runtime', seconds: sleep.min_runtime_s, from: 'running_since' })],
      invoke: [deadline('min-runtime')],
      on: { 'deadline.min-runtime': { target: then, actions: [act('clearDeferral')] } },
    };
  };
  if (sleep.allowed) deferrable('cmd.sleep', 'sleep-deferred', afterDrain);
  if (sleep.warm_allowed) deferrable('cmd.warm', 'warm-deferred', '#vm.warming');
  if (!lifecycle.disposable) deferrable('cmd.retire', 'retire-deferred', '#vm.destroying');
  else on['cmd.retire'] = { target: '#vm.destroying' };
  for (const region of Object.keys(lifecycleStates)) {
    const state = lifecycleStates[region]!;
    state.on = { ...state.on, ...deferrals };
    // A new command replaces a pending deferral.
    if (region !== 'idle') state.on = { ...state.on, 'cmd.wake': { target: 'idle', actions: [act('clearDeferral')] }, 'cmd.resume': { target: 'idle', actions: [act('clearDeferral')] } };
  }

  const regions: Record<string, StateConfig> = {
    lifecycle: { description: 'Commands waiting for the minimum runtime.', initial: 'idle', states: lifecycleStates },
  };
  for (const name of options.connectors) regions[`connector-${name}`] = connectorRegion(role, name);
  const reload = reloadRegion(role);
  if (reload) regions.reload = reload;
  if (options.ingress) {
    regions.ingress = {
      description: `External ingress forwards to port ${role.ingress.target_port}.`,
      initial: 'open',
      states: { open: {} },
    };
  }
  return { description: 'The VM is up and every service is ready.', type: 'parallel', states: regions, on };
}

export function composeInstanceChart(role: RoleManifest, options: ComposeOptions): ChartConfig {
  checkHonourable(role, options);
  const { sleep, lifecycle } = role;
  const hasDependencies = role.depends_on.length > 0;
  const start = hasDependencies ? '#vm.waiting' : '#vm.preflight';
  const destroy = { 'cmd.destroy': { target: '#vm.destroying' } };

  const states: Record<string, StateConfig> = {
    pending: { description: 'Created; not started yet.', on: { 'cmd.start': { target: start }, ...destroy } },
  };
  if (hasDependencies) {
    states.waiting = {
      description: `Waits for the tenant's ${role.depends_on.map((d) => `${d.role} (${d.condition})`).join(', ')}.`,
      on: { 'dep.ready': { target: '#vm.preflight' }, 'cmd.stop': { target: '#vm.stopped' }, ...destroy },
    };
  }
  states.preflight = {
    description: 'Required drives and secrets present? Otherwise refused, with the reason.',
    invoke: [
      {
        id: 'preflight',
        src: 'preflight',
        onDone: [
          { guard: { type: 'preflightPassed' }, target: '#vm.launching', actions: [act('recordPreflight')] },
          { target: '#vm.refused', actions: [act('recordPreflight'), act('recordRefusal')] },
        ],
        onError: failTo('preflight'),
      },
    ],
    on: destroy,
  };
  states.refused = { description: 'Preflight refused to start: status_reason says why.', on: { 'cmd.start': { target: '#vm.preflight' }, ...destroy } };
  states.launching = {
    description: `Provision drives, boot, wait for services; at most ${lifecycle.boot_timeout_s}s.`,
    initial: 'provisioning',
    entry: [act('armDeadline', { name: 'boot', seconds: lifecycle.boot_timeout_s, from: 'now' })],
    invoke: [deadline('boot')],
    on: { 'deadline.boot': failTo(`not running within ${lifecycle.boot_timeout_s}s`), 'cmd.stop': { target: '#vm.stopping' }, ...destroy },
    states: {
      provisioning: { invoke: [{ id: 'prepareDrives', src: 'prepareDrives', onDone: { target: 'booting', actions: [act('recordMounted')] }, onError: failTo('prepare drives') }] },
      booting: { invoke: [{ id: 'boot', src: 'boot', onDone: { target: 'starting', actions: [act('recordBoot')] }, onError: failTo('boot') }] },
      starting: { ...startingState(role), on: { 'obs.exited': restartOrFail(role) } },
    },
  };
  states.running = runningState(role, options);
  states.running.on = { ...states.running.on, ...destroy };

  if (sleep.warm_allowed) {
    states.warming = { invoke: [{ id: 'pause', src: 'pause', onDone: { target: '#vm.warm' }, onError: { target: '#vm.running', actions: [act('recordFailure', { what: 'pause' })] } }], on: destroy };
    states.warm = {
      description: 'Paused with memory resident.',
      on: {
        'cmd.resume': { target: '#vm.resuming' },
        'cmd.wake': { target: '#vm.resuming' },
        'cmd.stop': { target: '#vm.stopping' },
        'cmd.retire': { target: '#vm.destroying' },
        'obs.exited': restartOrFail(role),
        ...(sleep.allowed ? { 'cmd.sleep': { target: '#vm.snapshotting' } } : {}),
        ...destroy,
      },
    };
    states.resuming = { invoke: [{ id: 'resume', src: 'resume', onDone: { target: '#vm.running' }, onError: failTo('resume') }], on: destroy };
  }
  if (sleep.allowed) {
    if (role.vsock.handlers.includes('drain')) {
      states.draining = {
        description: `The guest agent drains in-flight work; at most ${lifecycle.drain_timeout_s}s, then the snapshot goes ahead.`,
        entry: [act('armDeadline', { name: 'drain', seconds: lifecycle.drain_timeout_s, from: 'now' })],
        invoke: [
          { id: 'drain', src: 'drain', onDone: { target: '#vm.snapshotting' }, onError: { target: '#vm.running', actions: [act('recordFailure', { what: 'drain' })] } },
          deadline('drain'),
        ],
        on: { 'deadline.drain': { target: '#vm.snapshotting' }, ...destroy },
      };
    }
    states.snapshotting = { invoke: [{ id: 'snapshot', src: 'snapshot', onDone: { target: '#vm.sleeping', actions: [act('recordSnapshot')] }, onError: failTo('snapshot') }], on: destroy };
    states.sleeping = {
      description: 'Snapshotted to disk; data drive kept, secrets drive removed.',
      on: { 'cmd.wake': { target: '#vm.waking' }, 'cmd.start': { target: '#vm.waking' }, 'cmd.stop': { target: '#vm.stopped' }, 'cmd.retire': { target: '#vm.destroying' }, ...destroy },
    };
    states.waking = {
      description: `Fresh secrets drive, restore from the snapshot, services ready again; at most ${lifecycle.boot_timeout_s}s.`,
      initial: 'provisioning',
      entry: [act('armDeadline', { name: 'boot', seconds: lifecycle.boot_timeout_s, from: 'now' })],
      invoke: [deadline('boot')],
      on: { 'deadline.boot': failTo(`not awake within ${lifecycle.boot_timeout_s}s`), ...destroy },
      states: {
        provisioning: { invoke: [{ id: 'prepareDrives', src: 'prepareDrives', onDone: { target: 'restoring', actions: [act('recordMounted')] }, onError: failTo('prepare drives') }] },
        // A snapshot that no longer matches the bundle is never mixed in: boot cold instead.
        restoring: { invoke: [{ id: 'restore', src: 'restore', onDone: { target: 'starting' }, onError: { target: '#vm.launching', actions: [act('recordFailure', { what: 'restore (cold boot instead)' })] } }] },
        starting: { ...startingState(role), on: { 'obs.exited': restartOrFail(role) } },
      },
    };
  }
  states.stopping = {
    entry: [act('armDeadline', { name: 'stop', seconds: lifecycle.stop_timeout_s, from: 'now' })],
    invoke: [{ id: 'stop', src: 'stop', onDone: { target: '#vm.stopped' }, onError: failTo('stop') }, deadline('stop')],
    on: { 'deadline.stop': failTo(`not stopped within ${lifecycle.stop_timeout_s}s`), ...destroy },
  };
  states.stopped = {
    description: lifecycle.disposable ? 'Stopped; a disposable instance is destroyed next.' : 'Stopped; persistent drives kept.',
    ...(lifecycle.disposable ? { always: [{ target: '#vm.destroying' }] } : {}),
    on: { 'cmd.start': { target: start }, 'cmd.retire': { target: '#vm.destroying' }, ...destroy },
  };
  // A failure leaves the VM as the failed effect left it (up after a readiness timeout, paused
  // after a failed resume): stop it, and stop it again before any restart, so a restart always
  // boots cold and nothing runs unaccounted (stop is idempotent).
  states.failed = {
    description: 'An effect failed or timed out: status_reason says which. The VM is stopped before any restart.',
    initial: 'halting',
    on: { 'cmd.start': { target: '.restarting' }, 'cmd.stop': { target: '#vm.stopping' }, 'cmd.retire': { target: '#vm.destroying' }, ...destroy },
    states: {
      halting: { invoke: [{ id: 'halt', src: 'stop', onDone: { target: 'halted' }, onError: { target: 'halted' } }] },
      halted: {},
      restarting: {
        invoke: [{ id: 'stop-before-restart', src: 'stop', onDone: { target: start }, onError: { target: 'halted', actions: [act('recordFailure', { what: 'stop before restart' })] } }],
        on: { 'cmd.start': {} },
      },
    },
  };
  states.destroying = { invoke: [{ id: 'destroy', src: 'destroy', onDone: { target: '#vm.destroyed' }, onError: failTo('destroy') }] };
  states.destroyed = { description: 'Removed with its drives and snapshots.', type: 'final' };

  const chart: ChartConfig = {
    id: 'vm',
    description: `Instance lifecycle of role ${role.name}.`,
    initial: 'pending',
    // Secrets can change in any state (an operator puts or revokes one while the instance sleeps);
    // record them everywhere, so connectors come up from current knowledge after a wake.
    on: { 'cmd.revise': { actions: [act('recordRevision')] }, 'obs.secrets-changed': { actions: [act('recordSecrets')] } },
    states,
  };
  checkChartVocabulary(chart, role.name);
  return chart;
}

/** The options a pool gets by default: the role's ingress default and every declared connector. */
export function fullOptions(role: RoleManifest): ComposeOptions {
  return { ingress: role.ingress.allowed, connectors: role.connectors.map((c) => c.name), min_runtime_s: role.sleep.min_runtime_s };
}
