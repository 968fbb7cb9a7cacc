/**
 * mvm-actors as a library, for embedding in a host agent: the schemas, the role catalog,
 * desired-state validation, the statechart composer and the actor runtime (createHost) with its
 * VMM driver port, and the HTTP/WebSocket server (createServer).
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

// The actor runtime.
export { createHost, Host, type HostOptions, type ApplyResult, type InstanceView, type TenantView, type RequestResult, type HostEvent } from './host/host.ts';
export { planApply, type Plan, type PlanStep } from './host/plan.ts';
export type { VmmDriver, InstanceSpec, DriveContent, OpContext, SnapshotRef, ObservedVm, VmExit, DriverOp } from './driver/vmm-driver.ts';
export { DriverError } from './driver/vmm-driver.ts';
export { createFakeDriver, FakeDriver } from './driver/fake-driver.ts';
export { createSimDriver, SimDriver } from './driver/sim/sim-driver.ts';
export { createFirecrackerDriver, FirecrackerDriver, FirecrackerRefusal } from './driver/firecracker/firecracker-driver.ts';
export { FirecrackerApiError } from './firecracker/api-client.ts';
export { ArtifactStore, type BundleArtifacts } from './bundle/artifact-store.ts';

// Host networking: addresses, the nftables ruleset, bridges and taps.
export { AddressAllocator } from './net/address-allocator.ts';
export { generateRuleset, RulesetError, type Ruleset, type RulesetInput } from './net/nft-ruleset.ts';
export { HostNetwork, HostNetworkError } from './net/host-network.ts';
export { systemClock, type Clock } from './common/clock.ts';
export { composeInstanceChart, fullOptions, ChartCompositionError, type ComposeOptions } from '../machines/compose-instance-chart.ts';
export { chartToDot, chartToMermaid } from '../machines/render-chart.ts';
export type { ChartConfig } from '../machines/chart-config.ts';

// The server, for a host agent that embeds it.
export { createServer, type ServerOptions } from './server/create-server.ts';
export { ErrorEnvelope, ERROR_CODES } from './server/errors.ts';
