import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';
import type { Clock } from '../common/clock.ts';
import { ephemeralDeviceIdentity, loadDeviceIdentity, type DeviceIdentity } from '../openclaw/device-identity.ts';
import { connectOperator, mintNodeSetupCode } from '../openclaw/enrolment.ts';
import { OpenClawGatewayError } from '../openclaw/gateway-error.ts';
import { probeGatewayOnce } from '../openclaw/gateway-handshake.ts';
import { nodeConnection } from '../openclaw/node-connection.ts';
import { serviceOutputPath } from '../openclaw/openclaw-layout.ts';
import type { PortSpec } from '../schemas/role-manifest.ts';
import { AgentError } from './agent-error.ts';
import type { GuestConfig, GuestService } from './config.ts';
import type { ServiceProbeResult } from './service-probe.ts';

/**
 * What the guest agent does with an OpenClaw gateway running in its own VM. Everything goes over
 * the VM's loopback: there OpenClaw approves the agent's device as an operator without a human,
 * which a connection from outside the VM never gets (PAIRING_REQUIRED). The token is read from
 * the secrets drive at every call, so a rotated token is used as soon as the drive carries it;
 * only `secrets.reload` logs in first with the token the gateway last accepted, because the
 * gateway learns the rotated one from that very call.
 *
 * - readiness of an `openclaw-handshake` service: /readyz, then connect and hello-ok;
 * - readiness of an `openclaw-node-connected` service (a worker's node host): connected to the
 *   gateway its config drive names, not merely running (src/openclaw/node-connection.ts);
 * - `openclaw-setup-code`: a single-use node setup code for a worker of this tenant;
 * - secrets-reload: OpenClaw's `secrets.reload` RPC, so a new token file takes effect without a restart.
 */

export interface OpenClawGuestOptions {
  clock: Clock;
  secretsDir: string | null;
  /** The data drive: the agent's own device identity lives there, so the gateway sees one device across restarts. */
  dataDir: string | null;
  /** Where the gateway answers inside the VM. */
  loopback?: string;
  /**
   * `<service>.pid` files: without a data drive path, a node host's output is found through its
   * process's stderr (/proc/<pid>/fd/2), which the unit or launcher points at the data drive.
   */
  pidDir?: string | null;
}

interface GatewayTarget {
  service: GuestService;
  port: number;
  tokenSecret: string;
  scopes: readonly string[];
}

/** Bound of one call, below the host's 5 s readiness request. */
const CALL_MS = 4_000;

export class OpenClawGuest {
  readonly #options: OpenClawGuestOptions;
  #identity: DeviceIdentity | null = null;

  constructor(options: OpenClawGuestOptions) {
    this.#options = options;
  }

  get #host(): string {
    return this.#options.loopback ?? '127.0.0.1';
  }

  #identityFor(): DeviceIdentity {
    if (this.#identity) return this.#identity;
    const dataDir = this.#options.dataDir;
    this.#identity = dataDir === null ? ephemeralDeviceIdentity() : loadDeviceIdentity(path.join(dataDir, 'openclaw', 'mvm-agent', 'operator-identity.json'));
    return this.#identity;
  }

  /** The service's gateway endpoint and token secret, or null when it is no OpenClaw gateway. */
  #target(service: GuestService, ports: readonly z.infer<typeof PortSpec>[], secrets: GuestConfig['secrets']): GatewayTarget | null {
    const readiness = service.readiness;
    const isGateway = readiness?.kind === 'openclaw-handshake' || service.config?.format === 'openclaw-gateway';
    if (!isGateway) return null;
    const portName = readiness?.kind === 'openclaw-handshake' ? readiness.port : service.ports[0];
    const port = ports.find((p) => p.name === portName);
    const tokenSecret = readiness?.kind === 'openclaw-handshake' ? readiness.token_secret : secrets.find((s) => s.generate === 'token')?.name;
    if (port === undefined || tokenSecret === undefined) return null;
    const scopes = readiness?.kind === 'openclaw-handshake' ? readiness.scopes : ['operator.read'];
    return { service, port: port.port, tokenSecret, scopes };
  }

  /**
   * The last token the gateway accepted from this agent. A secrets-reload arrives after the host
   * has already written the rotated token to the drive, while the gateway still runs with the old
   * one until `secrets.reload`: that call has to log in with the token the gateway knows.
   */
  #acceptedToken: string | null = null;

  async #token(secret: string): Promise<string> {
    if (this.#options.secretsDir === null) throw new OpenClawGatewayError('TOKEN_FILE_MISSING', null, `no secrets drive to read ${secret} from`, false);
    try {
      return (await readFile(path.join(this.#options.secretsDir, secret), 'utf8')).trim();
    } catch (error) {
      throw new OpenClawGatewayError('TOKEN_FILE_MISSING', null, `cannot read the gateway token ${secret} from the secrets drive: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, false);
    }
  }

  /** Where the node host's stdout and stderr go: on the data drive, or wherever its running process's stderr points. */
  async #outputOf(service: GuestService): Promise<string | null> {
    if (this.#options.dataDir !== null) return serviceOutputPath(this.#options.dataDir, service.name);
    const pidDir = this.#options.pidDir ?? null;
    if (pidDir === null) return null;
    const pid = Number((await readFile(path.join(pidDir, `${service.name}.pid`), 'utf8').catch(() => '')).trim());
    return Number.isInteger(pid) && pid > 0 ? `/proc/${pid}/fd/2` : null;
  }

  /** A worker's node host is ready once connected to its gateway: the first dependency on the config drive, as the launcher dials it. */
  async #probeNode(service: GuestService, config: GuestConfig): Promise<ServiceProbeResult> {
    const gateway = config.depends_on[0];
    const port = gateway === undefined ? undefined : Object.values(gateway.ports)[0];
    if (gateway === undefined || port === undefined) return { state: 'not-ready', probe: 'openclaw-node-connected', detail: `the config drive names no gateway endpoint (depends_on) for ${service.name} to connect to` };
    const output = await this.#outputOf(service);
    if (output === null) return { state: 'unknown', probe: 'openclaw-node-connected', detail: `no data drive or pid file to find ${service.name}'s output` };
    const connection = await nodeConnection(output, { host: gateway.ipv4, port });
    return connection.connected ? { state: 'ready', probe: 'openclaw-node-connected', detail: null } : { state: 'not-ready', probe: 'openclaw-node-connected', detail: connection.detail };
  }

  /** Readiness of an OpenClaw gateway or node-host service; null for any other service (the default probe judges it). */
  async probe(service: GuestService, config: GuestConfig): Promise<ServiceProbeResult | null> {
    if (service.readiness?.kind === 'openclaw-node-connected') return this.#probeNode(service, config);
    if (service.readiness?.kind !== 'openclaw-handshake') return null;
    const target = this.#target(service, config.ports, config.secrets);
    if (target === null) return { state: 'failed', probe: 'openclaw-handshake', detail: `service ${service.name} names no declared port or token secret` };
    const { clock } = this.#options;
    try {
      const token = await this.#token(target.tokenSecret);
      await probeGatewayOnce({ host: this.#host, port: target.port, token, role: 'operator', scopes: target.scopes, identity: this.#identityFor() }, clock, clock.now() + CALL_MS);
      this.#acceptedToken = token;
      return { state: 'ready', probe: 'openclaw-handshake', detail: null };
    } catch (error) {
      if (!(error instanceof OpenClawGatewayError)) return { state: 'not-ready', probe: 'openclaw-handshake', detail: (error as Error).message.slice(0, 900) };
      // A final refusal carries OpenClaw's own code first, e.g. "openclaw:AUTH_TOKEN_MISMATCH: ...".
      if (!error.retryable) return { state: 'failed', probe: 'openclaw-handshake', detail: `openclaw:${error.detailsCode ?? error.code}: ${error.message}`.slice(0, 900) };
      return { state: 'not-ready', probe: 'openclaw-handshake', detail: error.message.slice(0, 900) };
    }
  }

  #gateway(config: GuestConfig): GatewayTarget {
    for (const service of config.services) {
      const target = this.#target(service, config.ports, config.secrets);
      if (target) return target;
    }
    throw new AgentError('unsupported', 'this guest runs no OpenClaw gateway service');
  }

  /** An operator session: with the token on the drive, or first with the last accepted one (`preferAccepted`, for secrets.reload). */
  async #operator(config: GuestConfig, preferAccepted = false) {
    const target = this.#gateway(config);
    const { clock } = this.#options;
    const connect = (token: string) => connectOperator({ host: this.#host, port: target.port, token, identity: this.#identityFor() }, clock, clock.now() + CALL_MS);
    try {
      const onDrive = await this.#token(target.tokenSecret);
      const candidates = preferAccepted && this.#acceptedToken !== null && this.#acceptedToken !== onDrive ? [this.#acceptedToken, onDrive] : [onDrive];
      let lastError: unknown;
      for (const token of candidates) {
        try {
          const operator = await connect(token);
          this.#acceptedToken = token;
          return operator;
        } catch (error) {
          lastError = error;
          // Only a refused token is worth a second try with the other one.
          if (!(error instanceof OpenClawGatewayError) || error.retryable) break;
        }
      }
      throw lastError;
    } catch (error) {
      throw new AgentError('internal', `cannot connect to the OpenClaw gateway as operator: ${(error as Error).message}`);
    }
  }

  /** A single-use node setup code from this VM's gateway, naming the gateway's tenant endpoint. */
  async mintSetupCode(config: GuestConfig): Promise<{ setup_code: string; expires_at_ms: number; gateway_url: string }> {
    const operator = await this.#operator(config);
    try {
      const code = await mintNodeSetupCode(operator, this.#options.clock, this.#options.clock.now() + CALL_MS);
      return { setup_code: code.setupCode, expires_at_ms: Math.max(0, Math.trunc(code.expiresAtMs)), gateway_url: code.gatewayUrl.slice(0, 256) };
    } catch (error) {
      throw new AgentError('internal', `the gateway did not mint a setup code: ${(error as Error).message}`);
    } finally {
      operator.close();
    }
  }

  /** Asks the gateway to re-read its secret files (OpenClaw's secrets.reload). False when no gateway runs here. */
  async reloadSecrets(config: GuestConfig): Promise<boolean> {
    if (!config.services.some((s) => this.#target(s, config.ports, config.secrets) !== null)) return false;
    const operator = await this.#operator(config, true);
    try {
      await operator.request('secrets.reload', {}, this.#options.clock.now() + CALL_MS);
      // From now on the gateway knows the token on the drive.
      this.#acceptedToken = null;
      return true;
    } catch (error) {
      throw new AgentError('internal', `the gateway refused secrets.reload: ${(error as Error).message}`);
    } finally {
      operator.close();
    }
  }
}
