import type { VsockHostClient } from '../vsock/host-client.ts';
import { DriverError, type InstanceSpec, type ReloadRequest } from './vmm-driver.ts';

/**
 * The guest side of `VmmDriver.reload`, the same for every driver that reaches a guest agent over
 * vsock: the drivers differ only in how they put the new drive contents in front of the guest
 * (directories rewritten in place, an image swapped with PATCH /drives), not in what they ask it.
 */

/** Refuses, before any drive changes, a reload whose verb the guest does not answer: a drive swapped for it would wait unapplied. */
export function requireReloadHandlers(client: VsockHostClient, instanceId: string, what: ReloadRequest): void {
  const verbs = [...(what.config ? (['config-reload'] as const) : []), ...(what.secrets ? (['secrets-reload'] as const) : [])];
  for (const verb of verbs) {
    if (!client.handlers.has(verb)) throw new DriverError('reload', instanceId, 'handler-disabled', `the guest agent does not enable ${verb} (the role's vsock.handlers)`, false);
  }
}

/** Sends config-reload and/or secrets-reload with the spec's new version and epoch, and requires the guest to confirm each. */
export async function sendReloadVerbs(client: VsockHostClient, spec: InstanceSpec, what: ReloadRequest, remainingMs: (capMs: number) => number): Promise<void> {
  const id = spec.instance_id;
  if (what.config) {
    const answer = await client.request('config-reload', { config_version: spec.revision.config_version }, { deadlineMs: remainingMs(60_000) });
    if (!answer.applied) throw new DriverError('reload', id, 'not-applied', `the guest reports config version ${answer.config_version}, not ${spec.revision.config_version}`, true);
  }
  if (what.secrets) {
    const answer = await client.request('secrets-reload', { secrets_epoch: spec.revision.secrets_epoch }, { deadlineMs: remainingMs(30_000) });
    if (answer.secrets_epoch !== spec.revision.secrets_epoch) throw new DriverError('reload', id, 'not-applied', `the guest reports secrets epoch ${answer.secrets_epoch}, not ${spec.revision.secrets_epoch}`, true);
  }
}

/** Turns what went wrong talking to the guest into the driver's error (a DriverError passes through). */
export function reloadError(instanceId: string, error: unknown): DriverError {
  if (error instanceof DriverError) return error;
  return new DriverError('reload', instanceId, 'agent', `the guest agent did not reload: ${(error as Error).message}`, true);
}
