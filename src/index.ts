/**
 * mvm-actors as a library, for embedding in a host agent. This release exports the schemas,
 * the role catalog and desired-state validation; the actor runtime (createHost) and the server
 * (createServer) follow.
 */
export { DesiredState, PoolSpec, TenantSpec, Quotas, DesiredCounts } from './schemas/desired-state.ts';
export { InstanceRecord, InstanceStatus, INSTANCE_STATUSES, NetworkIdentity } from './schemas/instance.ts';
export { RoleManifest, VSOCK_HANDLERS } from './schemas/role-manifest.ts';
export { ProfileManifest, Resources } from './schemas/profile-manifest.ts';
export { Revision } from './schemas/revision.ts';
export { ID_PATTERN, ID_MAX_LENGTH } from './schemas/ids.ts';
export { PUBLISHED_SCHEMAS, toJsonSchema, type PublishedSchemaName } from './schemas/json-schema.ts';
export type { Catalog, CatalogProblem, LoadedProfile, LoadedRole } from './catalog/catalog.ts';
export { BUILTIN_MANIFEST_DIR, CatalogError, loadCatalog, loadCatalogStrict } from './catalog/load-catalog.ts';
export { NixStorePathError } from './catalog/nix-store-guard.ts';
export { manifestHash } from './catalog/manifest-hash.ts';
export { describeRole } from './catalog/describe-role.ts';
export { validateDesiredState, type DesiredStateReport } from './validation/validate-desired-state.ts';
export { formatIssues, type Issue } from './common/issues.ts';
