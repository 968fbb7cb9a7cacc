import { realpath } from 'node:fs/promises';
import path from 'node:path';

export const NIX_STORE = '/nix/store'; // refused wherever the runtime accepts a path

export class NixStorePathError extends Error {
  override readonly name = 'NixStorePathError';
  readonly code = 'MVM_ERR_NIX_STORE_PATH';
  constructor(
    readonly what: string,
    readonly offendingPath: string,
  ) {
    super(
      `${what} ${offendingPath} is inside /nix/store; the runtime never reads the Nix store. ` +
        'Copy the manifests out first (`npm run manifests`, or import the bundle into the artifact store) and point at the copy.',
    );
  }
}

/** Whether a path (resolved, not following symlinks) is the Nix store or inside it. */
export function isUnderNixStore(p: string): boolean {
  const resolved = path.resolve(p);
  return resolved === NIX_STORE || resolved.startsWith(`${NIX_STORE}/`);
}

/** Refuses a path in the Nix store, whether named directly or reached through a symlink. */
export async function refuseNixStorePath(what: string, p: string): Promise<void> {
  if (isUnderNixStore(p)) throw new NixStorePathError(what, p);
  const real = await realpath(p).catch(() => undefined);
  if (real !== undefined && isUnderNixStore(real)) throw new NixStorePathError(what, `${p} (-> ${real})`);
}
