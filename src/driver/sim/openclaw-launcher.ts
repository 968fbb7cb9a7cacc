import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../../common/clock.ts';
import type { GuestConfig, GuestService } from '../../guest/config.ts';
import { gatewayArgs, nodeHostArgs } from '../../openclaw/enrolment.ts';
import { OpenClawProcess } from '../../openclaw/openclaw-process.ts';
import { openclawServiceEnv } from '../../openclaw/service-env.ts';
import { GUEST_TMP } from '../../openclaw/drive-files.ts';
import type { LaunchedService, ServiceLauncher, ServiceLaunchContext } from './service-launcher.ts';

/**
 * Runs the real OpenClaw program for a service whose manifest entry declares a generated OpenClaw
 * config (`services[].config.format`), exactly as the guest's systemd unit does
 * (nix/profiles/openclaw-*.nix): the pinned Node 24 and OpenClaw from the image's path, the
 * environment from openclawServiceEnv (state, workspace, logs and caches on /data, config from
 * the config drive, secrets from the secrets drive), as the VM's user. The VM runner has already
 * bind-mounted the drives at their guest mount points in the VM's own mount namespace, so the
 * generated openclaw.json's paths are the same as in a real guest.
 *
 * - gateway: `openclaw gateway run`, every setting from the config;
 * - node host: `openclaw node run --host <gateway> --port <port> --display-name <instance>
 *   --pair-if-needed <setup code>`: the gateway is the first dependency the config drive names, the
 *   code the secrets drive's openclaw-setup-code file (ignored once the node holds a device token).
 */

export interface OpenClawRuntime {
  /** Guest paths of the Node 24 binary and OpenClaw's entry point. */
  node: string;
  entry: string;
  mounts: { data: string; secrets: string; config: string };
}

export interface OpenClawLauncherOptions {
  runtime: OpenClawRuntime;
  /** The whole config drive (depends_on, secrets) the service's arguments come from. */
  config: GuestConfig;
  clock: Clock;
}

export function isOpenClawService(service: GuestService): boolean {
  return service.config?.format === 'openclaw-gateway' || service.config?.format === 'openclaw-node';
}

async function readSetupCode(options: OpenClawLauncherOptions): Promise<string | null> {
  const secret = options.config.secrets.find((s) => s.generate === 'openclaw-setup-code');
  if (secret === undefined) return null;
  const text = await readFile(path.join(options.runtime.mounts.secrets, secret.name), 'utf8').catch(() => null);
  return text === null || text.trim() === '' ? null : text.trim();
}

async function argsFor(service: GuestService, ctx: ServiceLaunchContext, options: OpenClawLauncherOptions): Promise<string[]> {
  if (service.config!.format === 'openclaw-gateway') return gatewayArgs();
  const gateway = options.config.depends_on[0];
  if (gateway === undefined) throw new Error(`service ${service.name} runs an OpenClaw node host but the config drive names no gateway in depends_on; the role needs depends_on on its gateway role`);
  const port = Object.values(gateway.ports)[0];
  if (port === undefined) throw new Error(`the gateway ${gateway.instance_id} named in depends_on declares no port`);
  return nodeHostArgs({ gatewayHost: gateway.ipv4, gatewayPort: port, displayName: ctx.instanceId, setupCode: await readSetupCode(options) });
}

export function openclawLauncher(options: OpenClawLauncherOptions): ServiceLauncher {
  const { runtime, clock } = options;
  return {
    async launch(service, ctx) {
      const file = service.config!.file;
      const env = openclawServiceEnv({
        mounts: { ...runtime.mounts, tmp: GUEST_TMP },
        configFile: file,
        path: `${path.dirname(runtime.node)}:/usr/local/bin:/usr/bin:/bin`,
      });
      const proc = OpenClawProcess.start({
        install: { node: runtime.node, entry: runtime.entry, version: '', dir: '' },
        args: await argsFor(service, ctx, options),
        env,
        logFile: path.join(runtime.mounts.data, 'openclaw', 'logs', `${service.name}.out`),
        // The runner's own cwd is reached by a path the VM's /tmp mount may hide: start OpenClaw on its data drive.
        cwd: runtime.mounts.data,
        clock,
      });
      const graceMs = (service.stop_timeout_s ?? 20) * 1000;
      const listening: LaunchedService['listening'] = service.ports.flatMap((name) => {
        const port = ctx.ports.find((p) => p.name === name && p.protocol === 'tcp');
        return port ? [{ port_name: port.name, address: ctx.loopback, port: port.port }] : [];
      });
      return {
        pid: proc.pid,
        listening,
        simulated: false,
        running: () => proc.running,
        // Bounded by the service's stop_timeout_s, then SIGKILL of its process group.
        stop: async () => {
          await proc.stop(graceMs);
        },
      };
    },
  };
}
