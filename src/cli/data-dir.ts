import os from 'node:os';
import path from 'node:path';

/**
 * Where a host keeps its state when no --data-dir is given: $MVM_ACTORS_DATA_DIR, else the
 * user's state directory ($XDG_STATE_HOME or ~/.local/state) under mvm-actors. `serve` and the
 * client commands agree on it, so `mvm-actors status` finds a local `serve` with no flags.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MVM_ACTORS_DATA_DIR) return path.resolve(env.MVM_ACTORS_DATA_DIR);
  const state = env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(state, 'mvm-actors');
}

/** Written by `serve` while it listens: how clients on this machine reach it. */
export function serverFileFor(dataDir: string): string {
  return path.join(dataDir, 'server.json');
}
