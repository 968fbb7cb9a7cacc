import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { type Clock, systemClock } from '../common/clock.ts';
import {
  type Hello,
  PROTOCOL_VERSION,
  type Verb,
  type VerbArgs,
  type VerbResult,
  VerbResults,
  describeZodError,
} from '../vsock/protocol.ts';
import { AgentError } from './agent-error.ts';
import { type GuestConfig, type GuestService, loadGuestConfig } from './config.ts';
import { type SecretFiles, diffSecrets, readSecretsDir } from './secrets.ts';
import { type ServiceProbe, defaultServiceProbe } from './service-probe.ts';
import type { OpenClawGuest } from './openclaw-guest.ts';
import { GuestSession } from './session.ts';
import { type JobStatusSource, type WorkTracker, fileJobStatus, noWork } from './work.ts';

/**
 * The guest agent: the host's only control channel into a microVM. It knows who it is (instance,
 * tenant, role, enabled handlers) from the config drive, answers the verbs its role enables, and
 * never acts for another instance. Protocol handling per connection is in session.ts; this file
 * holds the agent's state and the verb handlers.
 */

export const AGENT_NAME = 'mvm-guest-agent';
export const AGENT_VERSION = '0.1.0';
export { AgentError };

export interface AgentLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

const silentLog: AgentLog = { info: () => {}, warn: () => {} };

export interface GuestAgentOptions {
  /** The config drive's mvm.json. */
  configPath: string;
  /** The secrets drive's mount point; null for none. */
  secretsDir: string | null;
  /** The secrets epoch to report until the host names one (post-restore, secrets-reload); without it, the config drive's `secrets_epoch` if any. */
  secretsEpoch?: number | null;
  clock?: Clock;
  probe?: ServiceProbe;
  jobs?: JobStatusSource;
  work?: WorkTracker;
  log?: AgentLog;
  /**
   * The real OpenClaw gateway's side of the agent (readiness over its protocol, setup codes,
   * secrets.reload), or null while none runs here (a simulated stand-in is probed like any
   * service). A function: the runner knows only after launching which services are real.
   */
  openclaw?: () => OpenClawGuest | null;
  /** Restarts one service (a changed generated config needs a restart); absent: config-reload restarts nothing. */
  restartService?: (name: string) => Promise<void>;
}

/** The generated config files services read, by file name, as last seen on the config drive. */
type ConfigFiles = Map<string, string>;

type Handlers = { [V in Verb]: (args: VerbArgs<V>) => Promise<VerbResult<V>> };

export class GuestAgent {
  readonly clock: Clock;
  readonly log: AgentLog;
  readonly #options: GuestAgentOptions;
  readonly #probe: ServiceProbe;
  readonly #jobs: JobStatusSource;
  readonly #work: WorkTracker;
  readonly #startedAt: number;
  readonly #sessions = new Set<GuestSession>();
  #config: GuestConfig | null = null;
  #configError: string | null = null;
  #secrets: SecretFiles = new Map();
  #secretsEpoch: number | null;
  #entropySeed: Buffer | null = null;
  #restores = 0;
  #configFiles: ConfigFiles = new Map();

  private constructor(options: GuestAgentOptions) {
    this.#options = options;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? silentLog;
    this.#probe = options.probe ?? defaultServiceProbe({ clock: this.clock });
    this.#jobs = options.jobs ?? fileJobStatus(null);
    this.#work = options.work ?? noWork;
    this.#startedAt = this.clock.now();
    this.#secretsEpoch = options.secretsEpoch ?? null;
  }

  /** Reads the config and secrets drives. A missing or bad config drive leaves the agent answering ping only. */
  static async start(options: GuestAgentOptions): Promise<GuestAgent> {
    const agent = new GuestAgent(options);
    // Failure is recorded in configError and reported in the hello; the agent still answers ping.
    await agent.#loadConfig().catch(() => {});
    agent.#configFiles = await agent.#readConfigFiles();
    try {
      agent.#secrets = await readSecretsDir(options.secretsDir);
    } catch (error) {
      agent.log.warn({ error: (error as Error).message }, 'secrets drive unreadable at start');
    }
    return agent;
  }

  /** This guest's instance and tenant, once a config drive has been read; fixed for the process's life. */
  get identity(): { instance_id: string; tenant_id: string } | null {
    return this.#config ? { instance_id: this.#config.instance_id, tenant_id: this.#config.tenant_id } : null;
  }

  /** The verbs answered now: the role's handlers, or only ping while the config drive is unreadable. */
  get handlers(): ReadonlySet<Verb> {
    return new Set<Verb>(this.#config ? this.#config.vsock.handlers : ['ping']);
  }

  hello(): Hello {
    const config = this.#config;
    return {
      type: 'hello',
      protocol_version: PROTOCOL_VERSION,
      agent: { name: AGENT_NAME, version: AGENT_VERSION },
      instance_id: config?.instance_id ?? null,
      tenant_id: config?.tenant_id ?? null,
      role: config?.role ?? null,
      handlers: [...this.handlers],
      config_version: config?.config_version ?? null,
      secrets_epoch: this.#secretsEpoch,
      config_error: this.#configError,
    };
  }

  /** Serves one host connection (from any transport). */
  handleConnection(stream: Duplex): void {
    const session = new GuestSession(this, stream, () => this.#sessions.delete(session));
    this.#sessions.add(session);
    // A config drive that was missing at start may have appeared since (it is mounted by label).
    const ready = this.#config ? Promise.resolve() : this.#loadConfig().then(
      () => {},
      () => {},
    );
    void ready.then(() => session.start());
  }

  /** Closes every open connection (shutdown). */
  closeConnections(): void {
    for (const session of this.#sessions) session.destroy();
  }

  /** Runs one verb whose args are already checked. Throws AgentError for typed refusals. */
  run<V extends Verb>(verb: V, args: VerbArgs<V>): Promise<VerbResult<V>> {
    const handler = this.#handlers[verb] as (args: VerbArgs<V>) => Promise<VerbResult<V>>;
    return handler(args).then((result) => {
      // The guest never sends a result its own protocol would reject.
      const checked = VerbResults[verb].safeParse(result);
      if (!checked.success) throw new AgentError('internal', `${verb} produced an invalid result: ${describeZodError(checked.error)}`);
      return result;
    });
  }

  async #loadConfig(): Promise<GuestConfig> {
    const loaded = await loadGuestConfig(this.#options.configPath);
    if (!loaded.ok) {
      if (!this.#config) this.#configError = loaded.error;
      this.log.warn({ error: loaded.error }, 'config drive unreadable');
      throw new AgentError('config-unavailable', loaded.error);
    }
    const identity = this.identity;
    if (identity && (loaded.config.instance_id !== identity.instance_id || loaded.config.tenant_id !== identity.tenant_id)) {
      const message = `the config drive now names ${loaded.config.tenant_id}/${loaded.config.instance_id}; this agent is ${identity.tenant_id}/${identity.instance_id} and keeps its config`;
      this.log.warn({}, message);
      throw new AgentError('config-unavailable', message);
    }
    this.#config = loaded.config;
    this.#configError = null;
    if (loaded.config.secrets_epoch !== undefined && this.#secretsEpoch === null) this.#secretsEpoch = loaded.config.secrets_epoch;
    return loaded.config;
  }

  /** The generated files the services read (openclaw.json), to tell which service a new config version changes. */
  async #readConfigFiles(): Promise<ConfigFiles> {
    const files: ConfigFiles = new Map();
    for (const service of this.#config?.services ?? []) {
      if (!service.config) continue;
      const text = await readFile(path.join(path.dirname(this.#options.configPath), service.config.file), 'utf8').catch(() => '');
      files.set(service.config.file, text);
    }
    return files;
  }

  async #readSecrets(): Promise<SecretFiles> {
    try {
      return await readSecretsDir(this.#options.secretsDir);
    } catch (error) {
      throw new AgentError('internal', (error as Error).message);
    }
  }

  #requireConfig(): GuestConfig {
    if (!this.#config) throw new AgentError('config-unavailable', this.#configError ?? 'no config drive');
    return this.#config;
  }

  #services(name: string | undefined): GuestService[] {
    const services = this.#requireConfig().services;
    if (name === undefined) return services;
    const found = services.filter((s) => s.name === name);
    if (found.length === 0) throw new AgentError('bad-args', `no service "${name}" in this guest (it runs ${services.map((s) => s.name).join(', ') || 'none'})`);
    return found;
  }

  async #probeAll(services: GuestService[]) {
    const config = this.#requireConfig();
    const openclaw = this.#options.openclaw?.() ?? null;
    return Promise.all(services.map(async (service) => ({ service, result: (await openclaw?.probe(service, config)) ?? (await this.#probe.probe(service, config.ports)) })));
  }

  readonly #handlers: Handlers = {
    ping: async () => ({ pong: true, instance_id: this.identity?.instance_id ?? null, uptime_ms: Math.max(0, this.clock.now() - this.#startedAt) }),

    readiness: async ({ service }) => {
      const probed = await this.#probeAll(this.#services(service));
      return {
        ready: probed.every((p) => p.result.state === 'ready'),
        services: probed.map(({ service: s, result }) => ({ name: s.name, ...result })),
      };
    },

    'service-status': async ({ service }) => {
      const ports = this.#requireConfig().ports;
      const probed = await this.#probeAll(this.#services(service));
      return {
        services: probed.map(({ service: s, result }) => ({
          name: s.name,
          ...result,
          program: s.program,
          ports: ports.filter((p) => s.ports.includes(p.name)).map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })),
        })),
        depends_on: this.#requireConfig().depends_on,
      };
    },

    drain: async ({ deadline_ms }) => {
      const started = this.clock.now();
      let timer: unknown = null;
      const drained = await Promise.race([
        this.#work.whenIdle().then(() => true),
        new Promise<boolean>((resolve) => {
          timer = this.clock.setTimeout(() => resolve(false), deadline_ms);
        }),
      ]);
      this.clock.clearTimeout(timer);
      return { drained, in_flight: this.#work.inFlight(), waited_ms: Math.max(0, this.clock.now() - started) };
    },

    'post-restore': async ({ secrets_epoch, entropy_seed }) => {
      const config = await this.#loadConfig();
      const secrets = await this.#readSecrets();
      const previous = this.#secretsEpoch;
      this.#secrets = secrets;
      this.#secretsEpoch = secrets_epoch;
      this.#entropySeed = Buffer.from(entropy_seed, 'base64');
      this.#restores += 1;
      const probed = await this.#probeAll(config.services);
      this.log.info({ secrets_epoch, restores: this.#restores }, 'post-restore');
      return {
        secrets_epoch,
        previous_secrets_epoch: previous,
        config_version: config.config_version,
        secrets: [...secrets.keys()],
        reseeded: true,
        restores: this.#restores,
        ready: probed.every((p) => p.result.state === 'ready'),
      };
    },

    'config-reload': async ({ config_version }) => {
      const previous = this.#config?.config_version ?? null;
      const config = await this.#loadConfig();
      // Only a service whose own generated config changed is restarted; the others keep running.
      const before = this.#configFiles;
      this.#configFiles = await this.#readConfigFiles();
      const changed = config.services.filter((s) => s.config && before.get(s.config.file) !== this.#configFiles.get(s.config.file)).map((s) => s.name);
      if (this.#options.restartService) {
        for (const name of changed) {
          try {
            await this.#options.restartService(name);
          } catch (error) {
            throw new AgentError('internal', `restarting ${name} for config version ${config.config_version} failed: ${(error as Error).message}`);
          }
        }
      }
      this.log.info({ config_version: config.config_version, requested: config_version, restarted: changed }, 'config reloaded');
      return { config_version: config.config_version, previous_config_version: previous, applied: config.config_version === config_version, config_changed: changed };
    },

    'secrets-reload': async ({ secrets_epoch }) => {
      const secrets = await this.#readSecrets();
      const diff = diffSecrets(this.#secrets, secrets);
      const previous = this.#secretsEpoch;
      this.#secrets = secrets;
      this.#secretsEpoch = secrets_epoch;
      // OpenClaw reads its token files at start; secrets.reload makes it read the new ones now.
      const openclaw = this.#options.openclaw?.() ?? null;
      const reloaded = openclaw !== null && (diff.added.length > 0 || diff.changed.length > 0 || diff.removed.length > 0) ? await openclaw.reloadSecrets(this.#requireConfig()) : false;
      this.log.info({ secrets_epoch, ...diff, openclaw_reloaded: reloaded }, 'secrets reloaded');
      return { secrets_epoch, previous_secrets_epoch: previous, secrets: [...secrets.keys()], ...diff };
    },

    'connector-status': async ({ connector }) => {
      const configured = this.#requireConfig().connectors.map((c) => (typeof c === 'string' ? { name: c, secrets: null } : { name: c.name, secrets: c.secrets }));
      const selected = connector === undefined ? configured : configured.filter((c) => c.name === connector);
      if (connector !== undefined && selected.length === 0) {
        throw new AgentError('bad-args', `connector "${connector}" is not enabled in this guest's config (enabled: ${configured.map((c) => c.name).join(', ') || 'none'})`);
      }
      return {
        connectors: selected.map((c) => {
          const missing = (c.secrets ?? []).filter((name) => !this.#secrets.has(name));
          return {
            name: c.name,
            state: missing.length === 0 ? ('enabled' as const) : ('disabled' as const),
            reason: missing.length === 0 ? null : `missing-secret:${missing.join(',')}`,
            secrets_required: c.secrets,
            secrets_missing: missing,
          };
        }),
      };
    },

    'openclaw-setup-code': async () => {
      const openclaw = this.#options.openclaw?.() ?? null;
      if (openclaw === null) throw new AgentError('unsupported', 'no real OpenClaw gateway runs in this guest, so it cannot mint a node setup code');
      return openclaw.mintSetupCode(this.#requireConfig());
    },

    'job-status': async () => {
      try {
        return await this.#jobs.read();
      } catch (error) {
        throw new AgentError('internal', (error as Error).message);
      }
    },
  };

  /** For tests and diagnostics: the last entropy seed's length (the seed itself is never reported). */
  get entropySeedBytes(): number {
    return this.#entropySeed?.length ?? 0;
  }
}
