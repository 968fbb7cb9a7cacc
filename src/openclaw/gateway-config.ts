import { z } from 'zod';
import { SecretName } from '../schemas/ids.ts';
import { parseIpv4 } from '../schemas/ipv4.ts';
import type { RoleManifest, ServiceSpec } from '../schemas/role-manifest.ts';
import { OpenClawMounts, openclawLayout, secretPath, type OpenClawLayout } from './openclaw-layout.ts';

/**
 * The openclaw.json the control plane writes to a gateway's or node host's config drive. Pure:
 * everything comes from the input (the pool's desired state, the role manifest, the instance's
 * tenant address, the drive mount points), so the same input gives the same bytes.
 *
 * config_version is deliberately not written into it (mvm.json on the same drive carries it): the
 * guest agent restarts a service on config-reload only when its generated file changed, so a
 * version stamp here would restart the gateway at every config_version, even one that changes
 * nothing the gateway reads.
 *
 * Keys were checked against `openclaw config schema` and `openclaw config validate` of
 * openclaw 2026.9.6.
 */

const ConnectorInput = z
  .object({
    name: z.string().min(1),
    secrets: z.array(SecretName),
    state_on_data: z.boolean(),
  })
  .strict();

export const OpenClawConfigInput = z
  .object({
    format: z.enum(['openclaw-gateway', 'openclaw-node']),
    tenant_id: z.string().min(1),
    instance_id: z.string().min(1),
    mounts: OpenClawMounts,
    config_file: z.string().min(1),
    /** Gateway only: where the WebSocket endpoint listens (the instance's tenant address and the role's declared port). */
    listen: z
      .object({
        address: z.string().refine((a) => parseIpv4(a) !== undefined, { error: 'listen.address must be an IPv4 address (the instance tenant address)' }),
        port: z.number().int().min(1).max(65_535),
      })
      .strict()
      .nullable(),
    /** Gateway only: the secret holding the gateway token, read by OpenClaw's file secret provider. */
    token_secret: SecretName.nullable(),
    /** The connectors the pool enables (as the manifest declares them). */
    connectors: z.array(ConnectorInput),
    /** Secrets present on this instance's secrets drive. */
    secrets_present: z.array(SecretName),
    /** OpenClaw plugins installed in the image (WhatsApp is not bundled with OpenClaw). */
    plugins_available: z.array(z.string().min(1)),
  })
  .strict()
  .superRefine((input, ctx) => {
    if (input.format === 'openclaw-gateway') {
      if (input.listen === null) ctx.addIssue({ code: 'custom', path: ['listen'], message: 'a gateway config needs listen {address, port}: the instance tenant address and the role port' });
      if (input.token_secret === null) ctx.addIssue({ code: 'custom', path: ['token_secret'], message: 'a gateway config needs token_secret: the secret holding the gateway token' });
    }
  });
export type OpenClawConfigInput = z.infer<typeof OpenClawConfigInput>;

export interface ConnectorOutcome {
  name: string;
  enabled: boolean;
  /** Why a connector the pool enables is not in the config, e.g. `missing-secret:telegram-bot-token`. */
  reason: string | null;
}

export interface RenderedOpenClawConfig {
  /** The openclaw.json document. */
  config: Record<string, unknown>;
  /** Its bytes as written to the config drive. */
  text: string;
  connectors: ConnectorOutcome[];
}

/** The OpenClaw plugin a connector needs in the image, where it is not bundled. */
const CONNECTOR_PLUGIN: Readonly<Record<string, string>> = { whatsapp: 'whatsapp' };

type ChannelBuilder = (connector: z.infer<typeof ConnectorInput>, input: OpenClawConfigInput) => Record<string, unknown>;

/** OpenClaw's channel block for each connector name it implements. */
const CHANNELS: Readonly<Record<string, ChannelBuilder>> = {
  telegram: (connector, input) => ({
    enabled: true,
    // tokenFile wins over botToken and the env; OpenClaw rejects a symlink, so the secrets drive holds regular files.
    tokenFile: secretPath(input.mounts, connector.secrets[0] ?? 'telegram-bot-token'),
    dmPolicy: 'pairing',
  }),
  // WhatsApp has no token: its linked-device login lives in <state>/credentials/whatsapp on the data drive.
  whatsapp: () => ({ enabled: true, dmPolicy: 'pairing' }),
};

function connectorOutcome(connector: z.infer<typeof ConnectorInput>, input: OpenClawConfigInput): ConnectorOutcome {
  if (CHANNELS[connector.name] === undefined) return { name: connector.name, enabled: false, reason: `unsupported-connector:${connector.name}` };
  const missing = connector.secrets.filter((s) => !input.secrets_present.includes(s));
  if (missing.length > 0) return { name: connector.name, enabled: false, reason: `missing-secret:${missing.join(',')}` };
  const plugin = CONNECTOR_PLUGIN[connector.name];
  // A configured channel whose plugin is missing makes OpenClaw try to npm-install it at startup (~75 s offline).
  if (plugin !== undefined && !input.plugins_available.includes(plugin)) return { name: connector.name, enabled: false, reason: `plugin-not-in-image:${plugin}` };
  return { name: connector.name, enabled: true, reason: null };
}

/** Settings both formats share: the instance's identity, paths on the data drive, no outbound calls. */
function commonConfig(input: OpenClawConfigInput, layout: OpenClawLayout): Record<string, unknown> {
  return {
    env: {
      // Service environments are explicit (service-env.ts); never import a login shell's.
      shellEnv: { enabled: false },
      vars: { MVM_TENANT_ID: input.tenant_id, MVM_INSTANCE_ID: input.instance_id },
    },
    update: { checkOnStart: false },
    discovery: { mdns: { mode: 'off' } },
    models: { catalogRefresh: { enabled: false } },
    logging: { file: layout.logFile },
  };
}

/**
 * The layout for a pair of mount points and config file: a handful per fleet, so it is derived
 * once each instead of filling eight path templates for every instance's config.
 */
const layouts = new Map<string, OpenClawLayout>();
function layoutOf(mounts: OpenClawMounts, configFile: string): OpenClawLayout {
  const key = JSON.stringify([mounts.data, mounts.secrets, mounts.config, mounts.tmp, configFile]);
  let layout = layouts.get(key);
  if (layout === undefined) {
    layout = Object.freeze(openclawLayout(mounts, configFile));
    if (layouts.size >= MEMO_LIMIT) layouts.clear();
    layouts.set(key, layout);
  }
  return layout;
}

/** Bounds the memos below; far above the distinct pools of a fleet. */
const MEMO_LIMIT = 4096;

/**
 * Inputs already validated, without their two per-instance fields (instance_id, listen.address).
 * Every instance of a pool renders with the same rest, so the schema is run once per pool and
 * revision; for the others only the two instance fields are checked, as the schema would. Anything
 * else about an input (an extra key, a wrong type) gives a different key and the full parse.
 */
const validatedShapes = new Set<string>();
function validated(raw: OpenClawConfigInput): OpenClawConfigInput {
  if (typeof raw !== 'object' || raw === null) return OpenClawConfigInput.parse(raw);
  const { instance_id: instanceId, listen, ...shared } = raw;
  const listenShape = typeof listen === 'object' && listen !== null ? { ...listen, address: typeof listen.address } : listen;
  const key = JSON.stringify([shared, listenShape, typeof instanceId]);
  const instanceFieldsValid = typeof instanceId === 'string' && instanceId.length > 0 && (listen === null || (typeof listen === 'object' && typeof listen.address === 'string' && parseIpv4(listen.address) !== undefined));
  if (instanceFieldsValid && validatedShapes.has(key)) return raw;
  const input = OpenClawConfigInput.parse(raw);
  if (validatedShapes.size >= MEMO_LIMIT) validatedShapes.clear();
  validatedShapes.add(key);
  return input;
}

export function renderOpenClawConfig(raw: OpenClawConfigInput): RenderedOpenClawConfig {
  const input = validated(raw);
  const layout = layoutOf(input.mounts, input.config_file);
  const common = commonConfig(input, layout);
  if (input.format === 'openclaw-node') {
    const config = common;
    return { config, text: `${JSON.stringify(config, null, 2)}\n`, connectors: [] };
  }
  const listen = input.listen!;
  const outcomes = input.connectors.map((c) => connectorOutcome(c, input));
  const enabled = input.connectors.filter((_, i) => outcomes[i]!.enabled);
  const channels = Object.fromEntries(enabled.map((c) => [c.name, CHANNELS[c.name]!(c, input)]));
  const plugins = enabled.map((c) => CONNECTOR_PLUGIN[c.name]).filter((p): p is string => p !== undefined);
  const config: Record<string, unknown> = {
    gateway: {
      mode: 'local',
      port: listen.port,
      // Only the tenant address (plus the 127.0.0.1 alias OpenClaw always adds for a specific custom host).
      bind: 'custom',
      customBindHost: listen.address,
      auth: { mode: 'token', token: { source: 'file', provider: 'mvmgatewaytoken', id: 'value' } },
      nodes: {
        pairing: {
          // Never SSH back into a node host to verify it: workers enrol with a control-plane-minted code.
          sshVerify: false,
        },
      },
    },
    secrets: {
      providers: {
        // A regular file with mode 0600 and a single link; OpenClaw strips its trailing newline.
        mvmgatewaytoken: { source: 'file', path: secretPath(input.mounts, input.token_secret!), mode: 'singleValue' },
      },
    },
    agents: { defaults: { workspace: layout.workspace } },
    ...common,
    plugins: {
      entries: {
        // Join URLs and setup codes name this endpoint; without it a code for a specific bind cannot be minted.
        'device-pair': { config: { publicUrl: `ws://${listen.address}:${listen.port}` } },
        ...Object.fromEntries(plugins.map((p) => [p, { enabled: true }])),
      },
    },
    ...(Object.keys(channels).length > 0 ? { channels } : {}),
  };
  return { config, text: `${JSON.stringify(config, null, 2)}\n`, connectors: outcomes };
}

/** The inputs the manifest and the pool determine, for one service that declares a generated config. */
export interface ServiceConfigSource {
  manifest: RoleManifest;
  service: ServiceSpec;
  /** Connectors the pool enables (names from the manifest). */
  enabledConnectors: readonly string[];
  tenant_id: string;
  instance_id: string;
  /** The instance's tenant address. */
  address: string;
  secrets_present: readonly string[];
  plugins_available: readonly string[];
  /** The instance's scratch directory. */
  tmp: string;
}

/** Drive mount points by what each drive is for, as the manifest declares them (never by role). */
export function mountsFromManifest(manifest: RoleManifest, tmp: string): OpenClawMounts {
  const mountOf = (persistence: string, what: string) => {
    const drive = manifest.drives.find((d) => d.persistence === persistence);
    if (drive === undefined) throw new Error(`role "${manifest.name}" declares no ${persistence} drive, which OpenClaw needs for its ${what}; add one to drives in nix/roles/${manifest.name}.nix`);
    return drive.mount;
  };
  return { data: mountOf('persistent', 'state'), secrets: mountOf('ephemeral', 'secrets'), config: mountOf('versioned', 'config'), tmp };
}

/** Builds the generator's input for a service whose manifest entry declares `config`; null when it declares none. */
export function openclawConfigInput(source: ServiceConfigSource): OpenClawConfigInput | null {
  const spec = source.service.config;
  if (spec === undefined) return null;
  const { manifest, service } = source;
  const gateway = spec.format === 'openclaw-gateway';
  const readiness = service.readiness;
  const portName = service.ports[0];
  const port = manifest.ports.find((p) => p.name === portName);
  if (gateway && port === undefined) throw new Error(`service "${service.name}" of role "${manifest.name}" declares an openclaw-gateway config but no port; list its port in services[].ports`);
  const tokenSecret = readiness.kind === 'openclaw-handshake' ? readiness.token_secret : (manifest.secrets.find((s) => s.generate === 'token')?.name ?? null);
  return {
    format: spec.format,
    tenant_id: source.tenant_id,
    instance_id: source.instance_id,
    mounts: mountsFromManifest(manifest, source.tmp),
    config_file: spec.file,
    listen: gateway && port !== undefined ? { address: source.address, port: port.port } : null,
    token_secret: gateway ? tokenSecret : null,
    connectors: manifest.connectors.filter((c) => source.enabledConnectors.includes(c.name)).map((c) => ({ name: c.name, secrets: c.secrets, state_on_data: c.state_on_data })),
    secrets_present: [...source.secrets_present],
    plugins_available: [...source.plugins_available],
  };
}
