import type { ProfileManifest } from '../schemas/profile-manifest.ts';
import type { RoleManifest } from '../schemas/role-manifest.ts';

export interface LoadedRole {
  manifest: RoleManifest;
  /** `sha256:<hex>` of the manifest's canonical JSON. */
  hash: string;
  /** The file it was read from. */
  source: string;
}

export interface LoadedProfile {
  manifest: ProfileManifest;
  hash: string;
  source: string;
}

/** The role and profile manifests the runtime obeys, keyed by name. */
export interface Catalog {
  /** The directory holding `roles/` and `profiles/`. */
  dir: string;
  roles: ReadonlyMap<string, LoadedRole>;
  profiles: ReadonlyMap<string, LoadedProfile>;
}

/** A manifest that could not be used, named by file and field. */
export interface CatalogProblem {
  file: string;
  path: string;
  message: string;
}
