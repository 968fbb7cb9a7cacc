import { OpenClawMounts, openclawLayout } from './openclaw-layout.ts';

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

export function openclawServiceEnv(input: ServiceEnvInput): Record<string, string> {
  const mounts = OpenClawMounts.parse(input.mounts);
  const layout = openclawLayout(mounts, input.configFile);
  return {
    PATH: input.path,
    HOME: layout.home,
    OPENCLAW_HOME: layout.home,
    OPENCLAW_STATE_DIR: layout.stateDir,
    OPENCLAW_CONFIG_PATH: layout.configPath,
    // The config drive is read-only and versioned: OpenClaw must never rewrite it (it adds meta keys otherwise).
    OPENCLAW_CONFIG_READONLY: '1',
    OPENCLAW_WORKSPACE_DIR: layout.workspace,
    XDG_CACHE_HOME: layout.cacheDir,
    NODE_COMPILE_CACHE: layout.compileCache,
    TMPDIR: layout.tmpDir,
    // No mDNS, no daily update check, no helper downloads: a tenant VM has no business on the internet for these.
    OPENCLAW_DISABLE_BONJOUR: '1',
    OPENCLAW_NO_AUTO_UPDATE: '1',
    OPENCLAW_OFFLINE: '1',
    // A supervisor (systemd, the guest agent) restarts the process; OpenClaw must not respawn itself behind its back.
    OPENCLAW_NO_RESPAWN: '1',
  };
}
