/**
 * Why a bundle could not be imported, found or trusted. Every message names the bundle (or the
 * file and field inside it) and says how to fix it; `code` is stable for callers and the CLI.
 *
 * - bundle-unknown: no bundle has that id or hash in the store;
 * - bundle-corrupt: the stored files no longer match what was imported (or the record is unreadable);
 * - bundle-invalid: the source directory is not a usable bundle (missing file, bad manifest, a
 *   Firecracker config the spec refuses);
 * - bundle-nix-store: a config names a host path under /nix/store;
 * - bundle-name-taken: the id already names a bundle with other content (ids are immutable, so a
 *   pool revision always means the same bytes).
 */
export type ArtifactErrorCode = 'bundle-unknown' | 'bundle-corrupt' | 'bundle-invalid' | 'bundle-nix-store' | 'bundle-name-taken';

export class ArtifactError extends Error {
  override readonly name = 'ArtifactError';
  constructor(
    readonly code: ArtifactErrorCode,
    message: string,
    /** The bundle file concerned, relative to the bundle, when there is one. */
    readonly file?: string,
    /** The field inside that file, as a path like `drives[1].cache_type`, when there is one. */
    readonly field?: string,
  ) {
    super(message);
  }
}
