import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { NODE_PACKAGE, NODE_VERSION, OPENCLAW_VERSION } from './versions.ts';

/**
 * Where the pinned OpenClaw and its Node 24 live on this machine: a cache directory outside the
 * project (OpenClaw is ~650 MB and must never become a dependency of mvm-actors itself).
 */

/** Written last by the installer: its presence with these versions means the install is whole. */
export const INSTALL_STAMP = 'mvm-openclaw-install.json';

export const InstallStamp = z
  .object({
    openclaw: z.string().min(1),
    node: z.string().min(1),
    node_package: z.string().min(1),
  })
  .strict();
export type InstallStamp = z.infer<typeof InstallStamp>;

export interface OpenClawInstall {
  /** The Node 24 binary to run OpenClaw with (the system Node is too old). */
  node: string;
  /** OpenClaw's entry point, run as `<node> <entry> <subcommand> ...`. */
  entry: string;
  version: string;
  dir: string;
}

export interface LocateOptions {
  dir?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

/** `$MVM_OPENCLAW_DIR`, else `$XDG_CACHE_HOME/mvm-actors/openclaw-<version>`, else `~/.cache/...`. */
export function defaultOpenClawDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MVM_OPENCLAW_DIR) return env.MVM_OPENCLAW_DIR;
  const cache = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cache, 'mvm-actors', `openclaw-${OPENCLAW_VERSION}`);
}

export function installPaths(dir: string): { node: string; entry: string; stamp: string } {
  return {
    node: join(dir, 'node_modules', NODE_PACKAGE, 'bin', 'node'),
    entry: join(dir, 'node_modules', 'openclaw', 'openclaw.mjs'),
    stamp: join(dir, INSTALL_STAMP),
  };
}

/** The stamp if it names exactly the pinned versions, else null (absent, unreadable or stale). */
export function readInstallStamp(dir: string): InstallStamp | null {
  try {
    const stamp = InstallStamp.parse(JSON.parse(readFileSync(installPaths(dir).stamp, 'utf8')));
    return stamp.openclaw === OPENCLAW_VERSION && stamp.node === NODE_VERSION && stamp.node_package === NODE_PACKAGE ? stamp : null;
  } catch {
    return null;
  }
}

/** The complete pinned install, or null when it is missing, partial or of other versions. */
export function findOpenClaw(options: LocateOptions = {}): OpenClawInstall | null {
  const dir = options.dir ?? defaultOpenClawDir(options.env);
  const paths = installPaths(dir);
  if (readInstallStamp(dir) === null || !existsSync(paths.node) || !existsSync(paths.entry)) return null;
  return { node: paths.node, entry: paths.entry, version: OPENCLAW_VERSION, dir };
}

/** As findOpenClaw, but throws the one instruction that fixes it. For tests and commands that need it. */
export function requireOpenClaw(options: LocateOptions = {}): OpenClawInstall {
  const found = findOpenClaw(options);
  if (found === null) {
    const dir = options.dir ?? defaultOpenClawDir(options.env);
    throw new Error(`OpenClaw ${OPENCLAW_VERSION} with Node ${NODE_VERSION} is not installed in ${dir}: run \`npm run openclaw:install\` (or \`mvm-actors openclaw install --dir ${dir}\`)`);
  }
  return found;
}
