import type { InstanceContext, PreflightResult } from '../../machines/instance-context.ts';
import type { LoadedRole } from '../catalog/catalog.ts';
import type { DriveContent, InstanceSpec } from '../driver/vmm-driver.ts';
import type { PoolSpec } from '../schemas/desired-state.ts';
import { formatIpv4 } from '../schemas/ipv4.ts';
import type { SecretStore } from '../secrets/secret-store.ts';
import { mintedSecrets, openclawConfigFiles, storedSecrets } from '../openclaw/drive-files.ts';
import { hostAddressRange, type TenantNetwork } from './addressing.ts';

/**
 * What a guest configures on its interface besides its own address: the tenant gateway (network
 * + 1, on the tenant's bridge) and the prefix length of the tenant's whole subnet, so every
 * instance of the tenant, on any host, is on-link. Derived from the tenant, never guessed.
 */
export function guestNetworkOf(tenant: TenantNetwork): { gateway: string; prefix_len: number } {
  const range = hostAddressRange(tenant);
  return { gateway: formatIpv4(range.gateway), prefix_len: range.subnet.prefix };
}

/**
 * The contents of each instance's drives, computed once here for every driver: the config
 * drive (files derived from the pool spec and the manifests, stamped with config_version) and
 * the secrets drive (exactly the secrets its role and enabled connectors need). Drivers only
 * materialize them. Preflight checks the same contents against the role's requirements.
 *
 * Pool configs are published per config_version in the host's store (`config:<tenant>:<pool>:v<N>`):
 * a version that is not there (never published, or withdrawn) is a missing config drive, and
 * the instance is refused.
 */
export interface ConfigRecords {
  putMeta(key: string, value: unknown): void;
  deleteMeta(key: string): void;
  metaKeys(prefix: string): string[];
}

/** What every instance of one pool shares in its spec, derived once per pool and options. */
interface PoolShared {
  key: string;
  poolConfig: ReturnType<DrivePlanner['poolConfig']>;
  /** Secrets its role and enabled connectors use, in drive order. */
  wantedSecrets: string[];
}

export class DrivePlanner {
  readonly #published: Set<string>;
  // Pool specs are immutable and replaced by each apply: deriving their shared part once per pool
  // instead of once per instance spares ten thousand copies of the same arrays per apply.
  readonly #shared = new WeakMap<PoolSpec, PoolShared>();

  constructor(
    private readonly records: ConfigRecords,
    private readonly secrets: SecretStore,
  ) {
    this.#published = new Set(records.metaKeys('config:'));
  }

  #configKey(tenant: string, pool: string, version: number): string {
    return `config:${tenant}:${pool}:v${version}`;
  }

  /** The pool-level part of the config drive, as published for its config_version. */
  poolConfig(tenant: string, pool: PoolSpec, role: LoadedRole, connectors: readonly string[], ingress: boolean) {
    return {
      schema_version: 1,
      config_version: pool.revision.config_version,
      tenant_id: tenant,
      pool_id: pool.pool_id,
      role: role.manifest.name,
      profile: pool.profile,
      manifest_hash: role.hash,
      // Readiness, generated config and stop deadline go with each service: the guest runs and probes it from these.
      services: role.manifest.services.map((s) => ({ name: s.name, program: s.program, args: s.args, ports: s.ports, readiness: s.readiness, stop_timeout_s: s.stop_timeout_s, ...(s.config ? { config: s.config } : {}) })),
      // Names and kinds only (never values): which file on the secrets drive is which.
      secrets: role.manifest.secrets.map((s) => ({ name: s.name, generate: s.generate })),
      ports: role.manifest.ports,
      vsock: role.manifest.vsock,
      // Each enabled connector with the secrets it needs, so the guest agent can say which is missing.
      connectors: role.manifest.connectors.filter((c) => connectors.includes(c.name)).map((c) => ({ name: c.name, secrets: c.secrets })),
      ingress,
    };
  }

  /** Publishes the pool configs for their config_versions (once: versions are immutable). */
  publishAll(pools: { tenant: string; pool: PoolSpec; role: LoadedRole; connectors: readonly string[]; ingress: boolean }[]): void {
    for (const { tenant, pool, role, connectors, ingress } of pools) {
      const key = this.#configKey(tenant, pool.pool_id, pool.revision.config_version);
      if (this.#published.has(key)) continue;
      this.records.putMeta(key, this.poolConfig(tenant, pool, role, connectors, ingress));
      this.#published.add(key);
    }
  }

  /** Withdraws a published config version: instances that need it are refused at their next start or wake. */
  withdraw(tenant: string, pool: string, version: number): boolean {
    const key = this.#configKey(tenant, pool, version);
    if (!this.#published.delete(key)) return false;
    this.records.deleteMeta(key);
    return true;
  }

  publishedVersions(tenant: string, pool: string): number[] {
    const prefix = `config:${tenant}:${pool}:v`;
    return [...this.#published].filter((k) => k.startsWith(prefix)).map((k) => Number(k.slice(prefix.length))).sort((x, y) => x - y);
  }

  hasConfig(context: InstanceContext): boolean {
    return this.#published.has(this.#configKey(context.tenant_id, context.pool_id, context.config_version));
  }

  /** Names of the secrets present for this instance's tenant among those its role and connectors use. */
  secretsPresent(context: InstanceContext, role: LoadedRole): string[] {
    const names = new Set([...role.manifest.secrets.map((s) => s.name), ...role.manifest.connectors.flatMap((c) => c.secrets)]);
    return [...names].filter((name) => this.secrets.has(context.tenant_id, name)).sort();
  }

  preflight(context: InstanceContext, role: LoadedRole): PreflightResult {
    const missingDrives: string[] = [];
    const reasons: string[] = [];
    for (const drive of role.manifest.drives) {
      if (!drive.required) continue;
      if (drive.persistence === 'versioned' && !this.hasConfig(context)) {
        missingDrives.push(drive.name);
        reasons.push(`missing-drive:${drive.name}:config_version-${context.config_version}-not-published`);
      }
      if (drive.persistence === 'ephemeral') {
        const missing = storedSecrets(role.manifest).filter((s) => !this.secrets.ensure(context.tenant_id, s)).map((s) => s.name);
        if (missing.length > 0) {
          missingDrives.push(drive.name);
          reasons.push(`missing-drive:${drive.name}:missing-secret:${missing.join(',')}`);
        }
      }
    }
    return { passed: reasons.length === 0, reason: reasons.length ? reasons.join(' ') : null, secrets_present: this.secretsPresent(context, role), drives_missing: missingDrives };
  }

  #poolShared(tenant: string, pool: PoolSpec, role: LoadedRole, connectors: readonly string[], ingress: boolean): PoolShared {
    const key = `${tenant}|${role.hash}|${connectors.join(',')}|${ingress}`;
    const known = this.#shared.get(pool);
    if (known?.key === key) return known;
    const shared: PoolShared = {
      key,
      poolConfig: this.poolConfig(tenant, pool, role, connectors, ingress),
      wantedSecrets: [...role.manifest.secrets.map((s) => s.name), ...role.manifest.connectors.filter((c) => connectors.includes(c.name)).flatMap((c) => c.secrets)],
    };
    this.#shared.set(pool, shared);
    return shared;
  }

  /** The driver spec: drive contents with secrets read now (in memory only). */
  spec(
    context: InstanceContext,
    role: LoadedRole,
    pool: PoolSpec,
    connectors: readonly string[],
    ingress: boolean,
    dependencies: { role: string; instance_id: string; ipv4: string; ports: Record<string, number> }[] = [],
    /** The instance's tenant: its gateway and prefix length go into `network` for the guest's kernel command line. */
    tenant?: TenantNetwork,
  ): InstanceSpec {
    const { poolConfig, wantedSecrets } = this.#poolShared(context.tenant_id, pool, role, connectors, ingress);
    const drives: DriveContent[] = role.manifest.drives.map((drive) => {
      const files: Record<string, string> = {};
      if (drive.persistence === 'versioned') {
        // Generated service configs (openclaw.json): exactly the connectors whose secrets are on this boot's secrets drive.
        Object.assign(
          files,
          openclawConfigFiles({
            manifest: role.manifest,
            tenant_id: context.tenant_id,
            instance_id: context.instance_id,
            address: context.network.ipv4,
            enabledConnectors: connectors,
            secretsPresent: wantedSecrets.filter((name) => this.secrets.has(context.tenant_id, name)),
          }).files,
        );
        const config = {
          ...poolConfig,
          config_version: context.config_version,
          secrets_epoch: context.secrets_epoch,
          instance_id: context.instance_id,
          network: context.network,
          // Where this instance finds what it depends on: a worker's node host dials its gateway here.
          depends_on: dependencies,
          // Secrets the driver obtains at boot and wake from a dependency's guest agent (a worker's node setup code).
          minted_secrets: mintedSecrets(role.manifest, dependencies),
        };
        files['mvm.json'] = `${JSON.stringify(config, null, 2)}\n`;
      }
      if (drive.persistence === 'ephemeral') {
        for (const name of wantedSecrets) {
          const value = this.secrets.reveal(context.tenant_id, name);
          if (value !== undefined) files[name] = value;
        }
      }
      const sized = drive.persistence === 'persistent' || drive.persistence === 'disposable';
      return { name: drive.name, device: drive.device, mount: drive.mount, label: drive.label, read_only: drive.read_only, persistence: drive.persistence, size_mib: sized ? pool.resources.data_disk_mib : 16, files };
    });
    return {
      instance_id: context.instance_id,
      tenant_id: context.tenant_id,
      pool_id: context.pool_id,
      role: context.role,
      profile: context.profile,
      revision: context.revision,
      resources: pool.resources,
      network: tenant ? { ...context.network, ...guestNetworkOf(tenant) } : context.network,
      drives,
      manifest_hash: context.desired_manifest_hash,
      vsock: { agent_port: role.manifest.vsock.agent_port, handlers: role.manifest.vsock.handlers },
    };
  }
}
