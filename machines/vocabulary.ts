/**
 * The closed vocabulary of generated charts. A chart names actions, guards and invoked actors
 * only from these lists; src/actors/instance-logic.ts implements each exactly once through
 * setup(). The composer refuses a chart that names anything else, because XState silently
 * ignores unknown action names. There are no delays: XState does not restore `after` timers
 * from a persisted snapshot, so every timeout is an absolute deadline in context, armed by
 * `armDeadline` and fired by the `deadline` actor, which survives a restart.
 */

export const ACTIONS = {
  armDeadline: 'Store an absolute deadline: params { name, seconds, from: "now" | "running_since" }.',
  recordPreflight: 'Keep the preflight result (secrets present, drives missing) from the preflight actor.',
  recordRefusal: 'Set the machine-readable refusal reason from the preflight result.',
  recordFailure: 'Set the failure reason from the error of the effect that failed: params { what, with_error? } (with_error: append the error code and message).',
  recordBoot: 'Set booted_at, the booted manifest hash and bundle (what teardown, drift reports and live reloads use).',
  recordMounted: 'Set config_version and secrets_epoch (what the VM has applied) from the revision: the drives just prepared carry it.',
  markRunning: 'Set running_since: minimum runtimes count from boot or wake.',
  countRestart: 'Record a restart for the restart budget.',
  recordDeferral: 'Record why a command waits for the minimum runtime: params { command }.',
  clearDeferral: 'Forget a pending deferral (it ran, or a later command replaced it).',
  recordSnapshot: 'Keep the snapshot reference the snapshot actor returned.',
  recordSecrets: 'Replace the list of secrets present from a secrets-changed observation.',
  enableConnector: 'Mark a connector enabled: params { connector }.',
  disableConnector: 'Mark a connector disabled, naming the missing secrets: params { connector, secrets }.',
  recordExit: 'Set the status reason from an unexpected VM exit.',
  recordRevision: 'Adopt a new revision (bundle, config_version, secrets_epoch, manifest hash) as the desired one: a new bundle takes effect at the next boot or wake, a new config_version or secrets_epoch on a running VM through a live reload where the role enables it, otherwise at the next boot or wake.',
  recordReload: 'Set config_version and secrets_epoch from what the reload actor applied, and clear the reason of an earlier failed reload.',
} as const;

export const GUARDS = {
  preflightPassed: 'The preflight result has no refusal.',
  secretsPresent: 'Every secret in params { secrets } is present for the current secrets epoch.',
  minRuntimeElapsed: 'At least params { seconds } have passed since running_since.',
  restartAllowed: 'The restart policy params { policy, max, window_s } allows another restart now.',
  finalError: "The effect's error is final (the driver says retrying cannot help, e.g. the service refused the credentials).",
  revisionReloadable:
    'The cmd.revise keeps the bundle and manifest the VM was booted with, and changes its applied config_version (where params { config }: the role enables config-reload) or secrets_epoch (where params { secrets }: the role enables secrets-reload).',
} as const;

export const ACTORS = {
  preflight: 'Check the computed drive contents against the role: required drives and secrets present.',
  prepareDrives: 'Driver: create or refresh the drives (secrets rebuilt for the current epoch).',
  boot: 'Driver: start the VM.',
  checkReadiness: 'Driver: one readiness probe of the service in input { service }.',
  pause: 'Driver: pause with memory resident (warm).',
  resume: 'Driver: resume a paused VM.',
  drain: 'Driver: ask the guest agent to drain before a snapshot.',
  snapshot: 'Driver: snapshot to disk and stop the VM.',
  restore: 'Driver: start the VM again from its snapshot.',
  stop: 'Driver: stop the VM, keeping persistent drives.',
  destroy: 'Driver: stop and remove the VM, its drives and snapshots.',
  reload: 'Driver: rewrite the config and/or secrets drive of the running VM and send config-reload / secrets-reload over vsock, for what the revision changed among input { config, secrets } (what the role enables); outputs the applied { config_version, secrets_epoch }.',
  deadline: 'Fires `deadline.<name>` at the absolute deadline context.deadlines[input.name].',
} as const;

/** Events an instance actor accepts from outside: commands from its tenant and observations. */
export const EVENTS = {
  'cmd.start': 'Start (or retry) the instance.',
  'cmd.stop': 'Stop the VM, keeping its data.',
  'cmd.warm': 'Pause with memory resident (deferred until the minimum runtime has passed).',
  'cmd.resume': 'Resume a warm instance.',
  'cmd.sleep': 'Snapshot to disk (deferred until the minimum runtime has passed).',
  'cmd.wake': 'Wake a sleeping instance (or resume a warm one).',
  'cmd.retire': 'Scale-down: destroy once the minimum runtime has passed.',
  'cmd.destroy': 'Destroy now: the pool or tenant was removed.',
  'cmd.revise': 'The pool revision changed, or the VM lags it: { revision, manifest_hash }; reloaded live where the role allows it, else used from the next boot or wake.',
  'dep.ready': 'The tenant reports this role\'s startup dependencies satisfied.',
  'obs.exited': 'The driver observed the VM exit unexpectedly: { reason }.',
  'obs.secrets-changed': 'The secrets present for this instance changed: { secrets }.',
} as const;

export type ActionName = keyof typeof ACTIONS;
export type GuardName = keyof typeof GUARDS;
export type ActorName = keyof typeof ACTORS;
export type CommandEvent = keyof typeof EVENTS;

/** Events the deadline actor sends: `deadline.<name>`. */
export const DEADLINE_EVENT_PREFIX = 'deadline.';

export function isKnownEventType(type: string): boolean {
  return Object.hasOwn(EVENTS, type) || type.startsWith(DEADLINE_EVENT_PREFIX) || type.startsWith('xstate.');
}
