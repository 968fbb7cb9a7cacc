import { z } from 'zod';
import { LocalName, ProfileName, RoleName, SecretName } from './ids.ts';

/**
 * The role manifest: everything the runtime needs to know about a kind of microVM, exported
 * from `nix/roles/<name>.nix` as JSON. Field names are identical in Nix, JSON and TypeScript
 * so the contract table in docs/roles.md is one column, not a translation.
 */

const Seconds = z.number().int().min(0).max(86_400);
const PositiveSeconds = z.number().int().min(1).max(86_400);

/** The guest agent's control verbs a role may enable (the vsock protocol's closed vocabulary). */
export const VSOCK_HANDLERS = [
  'ping',
  'readiness',
  'service-status',
  'drain',
  'post-restore',
  'config-reload',
  'secrets-reload',
  'connector-status',
  'job-status',
  'openclaw-setup-code',
] as const;
export const VsockHandler = z.enum(VSOCK_HANDLERS);

export const PortSpec = z
  .object({
    name: LocalName,
    port: z.number().int().min(1).max(65_535),
    protocol: z.enum(['tcp', 'udp']),
    exposure: z
      .enum(['tenant', 'local'])
      .describe('"tenant": reachable from the tenant network only; "local": inside the guest only. External reach is only through ingress.'),
  })
  .strict();

/** OpenClaw's closed set of operator scopes (docs/gateway/operator-scopes.md in the package). */
export const OPENCLAW_OPERATOR_SCOPES = [
  'operator.read',
  'operator.write',
  'operator.admin',
  'operator.approvals',
  'operator.questions',
  'operator.pairing',
  'operator.talk',
  'operator.talk.secrets',
] as const;

const ReadinessTiming = {
  timeout_s: PositiveSeconds.describe('Give up (service not ready) after this long.'),
  interval_s: PositiveSeconds.describe('Probe interval.'),
};

export const ReadinessCheck = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('tcp'), port: LocalName, ...ReadinessTiming }).strict(),
  z
    .object({
      kind: z.literal('http'),
      port: LocalName,
      path: z.string().startsWith('/'),
      expect_status: z.number().int().min(100).max(599),
      ...ReadinessTiming,
    })
    .strict(),
  z.object({ kind: z.literal('exec'), command: z.array(z.string().min(1)).min(1), ...ReadinessTiming }).strict(),
  z
    .object({ kind: z.literal('agent'), ...ReadinessTiming })
    .strict()
    .describe('The guest agent reports the service ready (for services without a network endpoint).'),
  z
    .object({
      kind: z.literal('openclaw-handshake'),
      port: LocalName,
      token_secret: SecretName.describe('The secret (from `secrets`) holding the gateway token the probe authenticates with.'),
      client_role: z.enum(['operator']).describe('The OpenClaw role the probe connects as.'),
      scopes: z.array(z.enum(OPENCLAW_OPERATOR_SCOPES)).describe('Operator scopes the probe asks for.'),
      ...ReadinessTiming,
    })
    .strict()
    .describe("OpenClaw's own protocol: /readyz answers 200, then a WebSocket connect with the token and a device identity gets hello-ok."),
  z
    .object({ kind: z.literal('openclaw-node-connected'), ...ReadinessTiming })
    .strict()
    .describe("An OpenClaw node host is connected to its gateway (the role's first dependency): its last connection event since start is hello-ok and a TCP connection to the gateway is established. Checked by the guest agent."),
]);

/**
 * Which generated config file a service reads from the config drive. The control plane renders
 * it from the pool's desired state and this manifest; `format` names the generator, so no code
 * ever asks which role it is configuring.
 */
export const ServiceConfigSpec = z
  .object({
    format: z.enum(['openclaw-gateway', 'openclaw-node']).describe('openclaw-gateway: a tenant gateway\'s openclaw.json; openclaw-node: a node host\'s openclaw.json.'),
    file: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: 'file must be a plain file name on the config drive, e.g. "openclaw.json"' }),
  })
  .strict();

export const ServiceSpec = z
  .object({
    name: LocalName,
    description: z.string().min(1),
    program: z.string().min(1).describe('Program name as installed in the guest image by the profile.'),
    args: z.array(z.string()),
    ports: z.array(LocalName).describe('Names of ports (from `ports`) this service listens on.'),
    readiness: ReadinessCheck,
    stop_timeout_s: PositiveSeconds,
    config: ServiceConfigSpec.optional().describe('The generated config file this service reads from the config drive; absent when it needs none.'),
  })
  .strict();

export const DriveSpec = z
  .object({
    name: LocalName,
    device: z.string().regex(/^vd[b-z]$/, { error: 'device must be vdb..vdz; vda is the immutable rootfs and is not declared' }),
    mount: z.string().regex(/^\/[A-Za-z0-9._/-]*$/, { error: 'mount must be an absolute guest path' }),
    label: z.string().regex(/^[a-z0-9-]{1,16}$/, { error: 'label must be 1-16 characters (ext4 limit) of a-z, 0-9 and "-"' }),
    read_only: z.boolean(),
    required: z.boolean().describe('Preflight refuses to boot an instance whose required drive is missing.'),
    persistence: z
      .enum(['persistent', 'ephemeral', 'versioned', 'disposable'])
      .describe('persistent: kept across sleep, wake and restart; ephemeral: rebuilt at every boot and wake, removed at stop; versioned: one image per config_version; disposable: removed with the instance.'),
  })
  .strict();

export const DependencySpec = z
  .object({
    role: RoleName,
    condition: z.enum(['ready', 'running']),
    scope: z.literal('tenant'),
  })
  .strict();

export const ConnectorSpec = z
  .object({
    name: LocalName,
    description: z.string().min(1),
    secrets: z.array(SecretName).describe('Secrets that must be present on the secrets drive before the connector is enabled.'),
    state_on_data: z.boolean().describe('The connector keeps login or channel state on the data drive.'),
  })
  .strict();

export const SecretSpec = z
  .object({
    name: SecretName,
    description: z.string().min(1),
    generate: z
      .enum(['token', 'openclaw-setup-code'])
      .nullable()
      .describe(
        '"token": the control plane mints it on first need; "openclaw-setup-code": a single-use OpenClaw node setup code the tenant gateway named by depends_on mints (through its guest agent) at every boot and wake, never stored; null: an operator supplies it.',
      ),
  })
  .strict();

export const SleepPolicy = z
  .object({
    allowed: z.boolean().describe('May instances of this role be snapshotted to sleep at all.'),
    warm_allowed: z.boolean().describe('May instances be paused with memory resident (warm).'),
    min_runtime_s: Seconds.describe('An instance runs at least this long after boot or wake before it may warm or sleep.'),
    floor: z.number().int().min(0).max(1000).describe('Running instances of this role per tenant that are never slept or warmed.'),
  })
  .strict();

export const LifecyclePolicy = z
  .object({
    disposable: z.boolean().describe('Runs to completion and is destroyed; keeps no tenant state.'),
    boot_timeout_s: PositiveSeconds,
    drain_timeout_s: PositiveSeconds,
    stop_timeout_s: PositiveSeconds,
    restart: z.enum(['always', 'on-failure', 'never']),
    max_restarts: z.number().int().min(0).max(100),
    restart_window_s: PositiveSeconds,
  })
  .strict();

export const RoleManifest = z
  .object({
    schema_version: z.literal(1),
    name: RoleName,
    description: z.string().min(1),
    profiles: z
      .object({ default: ProfileName, allowed: z.array(ProfileName).min(1) })
      .strict(),
    services: z.array(ServiceSpec),
    ports: z.array(PortSpec),
    ingress: z
      .object({
        allowed: z.boolean().describe('May a pool turn on external ingress for this role.'),
        default_enabled: z.boolean(),
        target_port: LocalName.nullable().describe('The port ingress forwards to (WSS terminates on the host).'),
      })
      .strict(),
    drives: z.array(DriveSpec),
    vsock: z
      .object({
        agent_port: z.number().int().min(1024).max(65_535).describe('vsock port the guest agent listens on.'),
        handlers: z.array(VsockHandler),
      })
      .strict(),
    depends_on: z.array(DependencySpec),
    sleep: SleepPolicy,
    secrets: z.array(SecretSpec).describe('Secrets every instance needs on its secrets drive; preflight refuses to start without them.'),
    connectors: z.array(ConnectorSpec),
    lifecycle: LifecyclePolicy,
    pool_overrides: z
      .object({
        sleep: z.boolean().describe('Pools may raise min_runtime_s and the sleep floor.'),
        ingress: z.boolean().describe('Pools may turn ingress on or off.'),
        connectors: z.boolean().describe('Pools choose which declared connectors to enable.'),
      })
      .strict(),
  })
  .strict()
  .superRefine((role, ctx) => {
    const problem = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    const unique = <T>(items: T[], key: (item: T) => string, field: string, listPath: string) => {
      const seen = new Map<string, number>();
      items.forEach((item, index) => {
        const k = key(item);
        if (seen.has(k)) problem([listPath, index, field], `duplicate ${field} "${k}" (also at ${listPath}[${seen.get(k)}])`);
        else seen.set(k, index);
      });
    };
    unique(role.services, (s) => s.name, 'name', 'services');
    unique(role.ports, (p) => p.name, 'name', 'ports');
    unique(role.ports, (p) => `${p.port}/${p.protocol}`, 'port', 'ports');
    unique(role.drives, (d) => d.name, 'name', 'drives');
    unique(role.drives, (d) => d.device, 'device', 'drives');
    unique(role.drives, (d) => d.mount, 'mount', 'drives');
    unique(role.drives, (d) => d.label, 'label', 'drives');
    unique(role.connectors, (c) => c.name, 'name', 'connectors');
    unique(role.secrets, (c) => c.name, 'name', 'secrets');
    unique(role.depends_on, (d) => d.role, 'role', 'depends_on');

    const portNames = new Set(role.ports.map((p) => p.name));
    role.services.forEach((service, i) => {
      service.ports.forEach((port, j) => {
        if (!portNames.has(port)) problem(['services', i, 'ports', j], `service "${service.name}" names port "${port}", which is not in ports`);
      });
      const r = service.readiness;
      if ((r.kind === 'tcp' || r.kind === 'http' || r.kind === 'openclaw-handshake') && !portNames.has(r.port)) {
        problem(['services', i, 'readiness', 'port'], `readiness check names port "${r.port}", which is not in ports`);
      }
      if (r.kind === 'openclaw-node-connected' && role.depends_on.length === 0) {
        problem(['services', i, 'readiness', 'kind'], 'an "openclaw-node-connected" check needs the gateway the node host dials: declare it as the first entry of depends_on');
      }
      if (r.kind === 'openclaw-node-connected' && !role.vsock.handlers.includes('readiness')) {
        problem(['services', i, 'readiness', 'kind'], 'an "openclaw-node-connected" check is run by the guest agent: add "readiness" to vsock.handlers');
      }
      if (r.kind === 'openclaw-handshake' && !role.secrets.some((secret) => secret.name === r.token_secret)) {
        problem(['services', i, 'readiness', 'token_secret'], `readiness check names secret "${r.token_secret}", which is not in secrets; declare it there so the secrets drive carries it`);
      }
    });
    if (!role.profiles.allowed.includes(role.profiles.default)) {
      problem(['profiles', 'default'], `default profile "${role.profiles.default}" is not in profiles.allowed`);
    }
    if (role.ingress.allowed && role.ingress.target_port === null) {
      problem(['ingress', 'target_port'], 'ingress is allowed, so target_port must name the port ingress forwards to');
    }
    if (role.ingress.target_port !== null && !portNames.has(role.ingress.target_port)) {
      problem(['ingress', 'target_port'], `ingress target_port "${role.ingress.target_port}" is not in ports`);
    }
    if (role.ingress.default_enabled && !role.ingress.allowed) {
      problem(['ingress', 'default_enabled'], 'ingress cannot be enabled by default when ingress.allowed is false');
    }
    if (role.depends_on.some((d) => d.role === role.name)) {
      problem(['depends_on'], `role "${role.name}" cannot depend on itself`);
    }
    if (role.lifecycle.disposable) {
      if (role.sleep.allowed || role.sleep.warm_allowed) problem(['sleep', 'allowed'], 'a disposable role runs to completion; it cannot sleep or warm');
      role.drives.forEach((drive, i) => {
        if (drive.persistence === 'persistent') problem(['drives', i, 'persistence'], 'a disposable role keeps no persistent tenant state; use "disposable"');
      });
    }
    if (!role.sleep.allowed && !role.sleep.warm_allowed && role.sleep.floor > 0) {
      problem(['sleep', 'floor'], 'a sleep floor only applies to roles that may sleep or warm; set it to 0');
    }
    role.secrets.forEach((secret, i) => {
      if (secret.generate === 'openclaw-setup-code' && role.depends_on.length === 0) {
        problem(['secrets', i, 'generate'], `secret "${secret.name}" is an openclaw-setup-code, minted by the gateway this role depends on, but depends_on is empty; add the gateway role to depends_on`);
      }
    });
    if (role.secrets.length > 0 && !role.drives.some((d) => d.persistence === 'ephemeral')) {
      problem(['secrets'], 'the role needs secrets but declares no ephemeral secrets drive');
    }
    role.connectors.forEach((connector, i) => {
      if (connector.secrets.length > 0 && !role.drives.some((d) => d.persistence === 'ephemeral')) {
        problem(['connectors', i, 'secrets'], `connector "${connector.name}" needs secrets but the role declares no ephemeral secrets drive`);
      }
    });
  })
  .meta({ id: 'RoleManifest', title: 'mvm-actors role manifest' });

export type RoleManifest = z.infer<typeof RoleManifest>;
export type DriveSpec = z.infer<typeof DriveSpec>;
export type ServiceSpec = z.infer<typeof ServiceSpec>;
export type ConnectorSpec = z.infer<typeof ConnectorSpec>;
export type SecretSpec = z.infer<typeof SecretSpec>;
export type ReadinessCheck = z.infer<typeof ReadinessCheck>;
export type ServiceConfigSpec = z.infer<typeof ServiceConfigSpec>;
