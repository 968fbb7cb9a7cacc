import { posix } from 'node:path';
import { z } from 'zod';

/**
 * Where OpenClaw keeps everything inside one instance, derived only from the drive mount points
 * the role manifest declares: the persistent data drive holds all tenant state (state dir,
 * workspace with its memory Markdown, channel logins, logs, caches), the secrets drive the
 * token files, the versioned config drive the generated openclaw.json. Shared by the config
 * generator and the service environment so the two can never disagree about a path.
 */
export const OpenClawMounts = z
  .object({
    data: z.string().startsWith('/').describe('Mount point of the persistent data drive (all tenant state).'),
    secrets: z.string().startsWith('/').describe('Mount point of the secrets drive (token files, mode 0600).'),
    config: z.string().startsWith('/').describe('Mount point of the config drive (the generated openclaw.json).'),
    tmp: z.string().startsWith('/').describe("The instance's scratch directory (OpenClaw's lock files and TMPDIR)."),
  })
  .strict();
export type OpenClawMounts = z.infer<typeof OpenClawMounts>;

export interface OpenClawLayout {
  home: string;
  stateDir: string;
  workspace: string;
  logFile: string;
  cacheDir: string;
  compileCache: string;
  tmpDir: string;
  configPath: string;
}

export function openclawLayout(mounts: OpenClawMounts, configFile: string): OpenClawLayout {
  const root = posix.join(mounts.data, 'openclaw');
  return {
    home: root,
    stateDir: posix.join(root, 'state'),
    workspace: posix.join(root, 'workspace'),
    logFile: posix.join(root, 'logs', 'openclaw.log'),
    cacheDir: posix.join(root, 'cache'),
    // Node's compile cache (~48 MB) makes the next start faster, so it persists with the data.
    compileCache: posix.join(root, 'cache', 'node-compile-cache'),
    tmpDir: mounts.tmp,
    configPath: posix.join(mounts.config, configFile),
  };
}

/** The path of a secret on the secrets drive: each secret is one file named after it. */
export function secretPath(mounts: OpenClawMounts, secret: string): string {
  return posix.join(mounts.secrets, secret);
}
