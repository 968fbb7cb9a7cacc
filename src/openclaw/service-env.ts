import { OpenClawMounts, openclawLayout, type OpenClawLayout } from './openclaw-layout.ts';
import { openclawServiceSpec } from './service-spec.ts';

/**
 * The environment of an OpenClaw gateway or node-host process. Every path comes from the drive
 * mount points, so OpenClaw writes tenant state only to the data drive and scratch files only
 * to the instance's tmp: without these, it logs to /tmp/openclaw, caches in ~/.cache and keeps
 * lock files in /tmp, ignoring OPENCLAW_HOME.
 */
export interface ServiceEnvInput {
  mounts: OpenClawMounts;
  /** The generated config's file name on the config drive (the manifest's services[].config.file). */
  configFile: string;
  /** PATH for the process; it must find Node 24 first (OpenClaw exits on older Node). */
  path: string;
}

/**
 * Built from nix/profiles/openclaw/service.json, which the NixOS units use too. What it sets, and why:
 * - HOME, OPENCLAW_HOME, OPENCLAW_STATE_DIR, OPENCLAW_WORKSPACE_DIR, XDG_CACHE_HOME,
 *   NODE_COMPILE_CACHE: every path on the data drive; TMPDIR: the instance's scratch directory;
 * - OPENCLAW_CONFIG_PATH and OPENCLAW_CONFIG_READONLY=1: the config drive is read-only and
 *   versioned, and OpenClaw must never rewrite it (it adds meta keys otherwise);
 * - OPENCLAW_DISABLE_BONJOUR, OPENCLAW_NO_AUTO_UPDATE, OPENCLAW_OFFLINE: no mDNS, no update
 *   check, no helper downloads: a tenant VM has no business on the internet for these;
 * - OPENCLAW_NO_RESPAWN: a supervisor (systemd, the simulator) restarts the process; OpenClaw
 *   must not respawn itself behind its back.
 */
export function openclawServiceEnv(input: ServiceEnvInput): Record<string, string> {
  const mounts = OpenClawMounts.parse(input.mounts);
  const layout = openclawLayout(mounts, input.configFile);
  const spec = openclawServiceSpec;
  return {
    PATH: input.path,
    ...Object.fromEntries(Object.entries(spec.env).map(([name, key]) => [name, layout[key as keyof OpenClawLayout]])),
    ...spec.constant_env,
  };
}
