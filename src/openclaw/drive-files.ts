import type { RoleManifest } from '../schemas/role-manifest.ts';
import { openclawConfigInput, renderOpenClawConfig, type ConnectorOutcome } from './gateway-config.ts';

/**
 * What the OpenClaw services of one instance add to its drives, derived from the role manifest
 * only (services[].config, secrets[].generate, depends_on), never from the role's name. Called by
 * the host's drive planner (src/host/drive-plan.ts), the one place drive contents are computed.
 */

/** The guest's scratch directory; OpenClaw's lock files and TMPDIR go there (a tmpfs in a real guest). */
export const GUEST_TMP = '/tmp';

export interface OpenClawDriveInput {
  manifest: RoleManifest;
  tenant_id: string;
  instance_id: string;
  /** The instance's tenant address: the gateway binds there. */
  address: string;
  /** Connectors the pool enables. */
  enabledConnectors: readonly string[];
  /** Secrets that will be on this instance's secrets drive. */
  secretsPresent: readonly string[];
  /** OpenClaw plugins in the image (none in the simulator's install). */
  pluginsAvailable?: readonly string[];
}

/** One generated config file per service that declares `config`, keyed by its file name on the config drive. */
export function openclawConfigFiles(input: OpenClawDriveInput): { files: Record<string, string>; connectors: ConnectorOutcome[] } {
  const files: Record<string, string> = {};
  const connectors: ConnectorOutcome[] = [];
  for (const service of input.manifest.services) {
    const config = openclawConfigInput({
      manifest: input.manifest,
      service,
      enabledConnectors: input.enabledConnectors,
      tenant_id: input.tenant_id,
      instance_id: input.instance_id,
      address: input.address,
      secrets_present: input.secretsPresent,
      plugins_available: input.pluginsAvailable ?? [],
      tmp: GUEST_TMP,
    });
    if (config === null) continue;
    const rendered = renderOpenClawConfig(config);
    files[config.config_file] = rendered.text;
    connectors.push(...rendered.connectors);
  }
  return { files, connectors };
}

/**
 * A secret the driver must obtain at boot and wake from another instance of the same tenant
 * (through that instance's guest agent verb) and write onto this instance's secrets drive. Named
 * on the config drive (mvm.json `minted_secrets`), so the driver needs no knowledge of roles.
 */
export interface MintedSecret {
  name: string;
  /** The guest agent verb that mints it on `from_instance`. */
  verb: 'openclaw-setup-code';
  from_instance: string;
}

/** Setup codes the role declares, each minted by the first instance of the role's dependencies. */
export function mintedSecrets(manifest: RoleManifest, dependencies: readonly { role: string; instance_id: string }[]): MintedSecret[] {
  const from = dependencies.find((d) => manifest.depends_on.some((dep) => dep.role === d.role));
  if (from === undefined) return [];
  return manifest.secrets.filter((s) => s.generate === 'openclaw-setup-code').map((s) => ({ name: s.name, verb: 'openclaw-setup-code' as const, from_instance: from.instance_id }));
}

/** Secrets the control plane's secret store holds and preflight requires (setup codes are minted per boot instead). */
export function storedSecrets(manifest: RoleManifest): RoleManifest['secrets'] {
  return manifest.secrets.filter((s) => s.generate !== 'openclaw-setup-code');
}
