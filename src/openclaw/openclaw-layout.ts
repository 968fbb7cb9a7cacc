import { posix } from 'node:path';
import { z } from 'zod';
import { fillTemplate, openclawServiceSpec, type LayoutKey } from './service-spec.ts';

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

/**
 * The paths come from nix/profiles/openclaw/service.json (see ./service-spec.ts), which the
 * NixOS units read too: all tenant state under <data>/openclaw (state dir, workspace with its
 * memory Markdown, logs, caches; Node's ~48 MB compile cache persists there so the next start is
 * faster), scratch files in the instance's tmp, the config on the config drive.
 */
export function openclawLayout(mounts: OpenClawMounts, configFile: string): OpenClawLayout {
  const values = { data: mounts.data, config: mounts.config, tmp: mounts.tmp, config_file: configFile };
  const path = (key: Exclude<LayoutKey, 'serviceOutput'>) => posix.normalize(fillTemplate(openclawServiceSpec.layout[key]!, values));
  return {
    home: path('home'),
    stateDir: path('stateDir'),
    workspace: path('workspace'),
    logFile: path('logFile'),
    cacheDir: path('cacheDir'),
    compileCache: path('compileCache'),
    tmpDir: path('tmpDir'),
    configPath: path('configPath'),
  };
}

/** Where a service's stdout and stderr go on the data drive (the node host reports its gateway connection there). */
export function serviceOutputPath(dataMount: string, service: string): string {
  return posix.normalize(fillTemplate(openclawServiceSpec.layout.serviceOutput!, { data: dataMount, config: '', tmp: '', config_file: '', service }));
}

/** The path of a secret on the secrets drive: each secret is one file named after it. */
export function secretPath(mounts: OpenClawMounts, secret: string): string {
  return posix.join(mounts.secrets, secret);
}
