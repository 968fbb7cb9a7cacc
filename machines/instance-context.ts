/**
 * What an instance actor remembers (its XState context). Persisted with every snapshot, so it
 * holds names and references only: never a secret's value.
 */
export interface InstanceContext {
  instance_id: string;
  tenant_id: string;
  pool_id: string;
  role: string;
  profile: string;
  /** What the VM has applied: set when its drives are prepared for a boot or wake, and by a live reload. */
  config_version: number;
  secrets_epoch: number;
  /** The desired revision: what the next boot, wake or live reload uses. */
  revision: { artifacts: string; config_version: number; secrets_epoch: number };
  network: { ipv4: string; mac: string; tap: string; vsock_cid: number };
  /** Manifest hash of the role as currently loaded (what the next boot will use). */
  desired_manifest_hash: string;
  /** Manifest hash the running VM was booted with; null before the first boot. */
  manifest_hash: string | null;
  /** Bundle the running VM was booted with; null before the first boot. A live reload needs the same bundle. */
  booted_artifacts: string | null;
  /** Absolute deadlines (ms since the epoch) by name; the deadline actor fires `deadline.<name>`. */
  deadlines: Record<string, number>;
  created_at: number;
  booted_at: number | null;
  /** When the instance last became running after a boot or wake; minimum runtimes count from here. */
  running_since: number | null;
  /** Times of recent restarts, for the restart budget. */
  restarts: number[];
  status_reason: string | null;
  /** Secret names present for the current secrets epoch (from preflight and later observations). */
  secrets_present: string[];
  drives_missing: string[];
  connectors: Record<string, { enabled: boolean; missing: string[] }>;
  snapshot: { snapshot_id: string; artifacts: string; manifest_hash: string; created_at: number } | null;
  /** A command waiting for the minimum runtime. */
  deferred: { command: string; since: number } | null;
}

/** Who an instance is: what it is created with. */
export type InstanceIdentity = Pick<InstanceContext, 'instance_id' | 'tenant_id' | 'pool_id' | 'role' | 'profile' | 'revision' | 'network' | 'desired_manifest_hash'>;

/** The context of a new instance: its identity, nothing booted, nothing known yet. */
export function newInstanceContext(identity: InstanceIdentity, createdAt: number): InstanceContext {
  return {
    ...identity,
    config_version: identity.revision.config_version,
    secrets_epoch: identity.revision.secrets_epoch,
    manifest_hash: null,
    booted_artifacts: null,
    deadlines: {},
    created_at: createdAt,
    booted_at: null,
    running_since: null,
    restarts: [],
    status_reason: null,
    secrets_present: [],
    drives_missing: [],
    connectors: {},
    snapshot: null,
    deferred: null,
  };
}

/** Preflight's verdict on an instance's computed drives. */
export interface PreflightResult {
  passed: boolean;
  /** Machine-readable reason when refused, e.g. `missing-drive:secrets` or `missing-secret:gateway-token`. */
  reason: string | null;
  secrets_present: string[];
  drives_missing: string[];
}

/**
 * The lifecycle status an instance record shows for a chart state value: the top-level state,
 * or the step inside launching and waking.
 */
export function statusOf(value: string | Record<string, unknown>): string {
  if (typeof value === 'string') return value;
  const [top, inner] = Object.entries(value)[0] ?? ['pending', undefined];
  if (top === 'launching' && typeof inner === 'string') return inner === 'starting' ? 'starting-services' : inner;
  if (top === 'launching' && inner && typeof inner === 'object') return 'starting-services';
  return top;
}

/** The live-reload region's state (`idle`, `reloading`, `failed`) while running, or null (not running, or a role without reloads). */
export function reloadStateOf(value: string | Record<string, unknown>): string | null {
  if (typeof value === 'string') return null;
  const running = value.running as Record<string, unknown> | undefined;
  const reload = running?.reload;
  return typeof reload === 'string' ? reload : null;
}
