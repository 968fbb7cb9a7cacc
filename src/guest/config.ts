import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { InstanceId, LocalName, RoleName, SecretName, TenantId } from '../schemas/ids.ts';
import { PortSpec, ReadinessCheck, SecretSpec, ServiceConfigSpec, VsockHandler } from '../schemas/role-manifest.ts';
import { describeZodError, DependencyEndpoint } from '../vsock/protocol.ts';

/**
 * What the guest agent reads from the config drive (`/etc/mvm-config/mvm.json`, written by
 * src/host/drive-plan.ts). Only the fields the agent uses are checked; others are kept, so the
 * host can add fields without breaking older agents.
 */

/** A connector the pool enabled: its name, or its name and the secrets it needs on the secrets drive. */
export const GuestConnector = z.union([LocalName, z.looseObject({ name: LocalName, secrets: z.array(SecretName) })]);
export type GuestConnector = z.infer<typeof GuestConnector>;

export const GuestService = z.looseObject({
  name: LocalName,
  program: z.string().min(1),
  ports: z.array(LocalName),
  args: z.array(z.string()).default([]),
  /** How the service's readiness is judged (the role manifest's check); older config drives carry none. */
  readiness: ReadinessCheck.optional(),
  /** The generated config file this service reads from the config drive (e.g. openclaw.json). */
  config: ServiceConfigSpec.optional(),
  stop_timeout_s: z.number().int().min(1).optional(),
});
export type GuestService = z.infer<typeof GuestService>;

export const GuestConfig = z.looseObject({
  schema_version: z.literal(1),
  instance_id: InstanceId,
  tenant_id: TenantId,
  role: RoleName,
  config_version: z.number().int().min(0),
  secrets_epoch: z.number().int().min(0).optional(),
  services: z.array(GuestService),
  ports: z.array(PortSpec),
  vsock: z.looseObject({ agent_port: z.number().int().min(1).max(0xffff_ffff), handlers: z.array(VsockHandler) }),
  connectors: z.array(GuestConnector).default([]),
  depends_on: z.array(DependencyEndpoint).default([]),
  /** Which file on the secrets drive is which (names and kinds, never values). */
  secrets: z.array(SecretSpec.pick({ name: true, generate: true })).default([]),
});
export type GuestConfig = z.infer<typeof GuestConfig>;

const MAX_CONFIG_BYTES = 1024 * 1024;

export type ConfigLoad = { ok: true; config: GuestConfig } | { ok: false; error: string };

/** Reads and checks the config file; never throws. */
export async function loadGuestConfig(file: string): Promise<ConfigLoad> {
  let text: string;
  try {
    const bytes = await readFile(file);
    if (bytes.length > MAX_CONFIG_BYTES) return { ok: false, error: `${file} is larger than ${MAX_CONFIG_BYTES} bytes` };
    text = bytes.toString('utf8');
  } catch (error) {
    return { ok: false, error: `cannot read ${file}: ${(error as Error).message}` };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { ok: false, error: `${file} is not JSON: ${(error as Error).message}` };
  }
  const parsed = GuestConfig.safeParse(json);
  if (!parsed.success) return { ok: false, error: `${file}: ${describeZodError(parsed.error)}` };
  return { ok: true, config: parsed.data };
}
