import path from 'node:path';
import { pino, type Logger } from 'pino';
import { createActor, type Actor, type AnyStateMachine } from 'xstate';
import { fullOptions, type ComposeOptions } from '../../machines/compose-instance-chart.ts';
import { newInstanceContext, reloadStateOf, statusOf, type InstanceContext } from '../../machines/instance-context.ts';
import { tenantLogic, type RolePolicy, type TenantEvent, type TenantState } from '../../machines/tenant-supervisor.ts';
import { createInstanceLogic, INSTANCE_SYSTEM_ID, persistedSnapshotOf, type InstanceLogic } from '../actors/instance-logic.ts';
import type { Catalog, LoadedRole } from '../catalog/catalog.ts';
import { loadCatalogStrict } from '../catalog/load-catalog.ts';
import { systemClock, type Clock } from '../common/clock.ts';
import type { Issue } from '../common/issues.ts';
import type { InstanceSpec, VmmDriver } from '../driver/vmm-driver.ts';
import type { DesiredState, PoolSpec, TenantSpec } from '../schemas/desired-state.ts';
import type { SecretSpec } from '../schemas/role-manifest.ts';
import { SecretStore, type SecretInfo } from '../secrets/secret-store.ts';
import { openStore, type Store } from '../store/lmdb-store.ts';
import type { JournalEntry, NewJournalEntry, PersistedActor } from '../store/records.ts';
import { validateDesiredState } from '../validation/validate-desired-state.ts';
import { AddressAllocator } from '../net/address-allocator.ts';
import { DrivePlanner } from './drive-plan.ts';
import { keepRejectedParts } from './keep-rejected.ts';
import { planApply, roleRanks, type Plan } from './plan.ts';

/**
 * The host actor: applies desired state, owns one tenant actor per tenant and one instance actor
 * per microVM (each its own XState root, kept in Maps: thousands of children under one parent
 * get quadratically slow), persists every snapshot and transition to LMDB, and restores them
 * after a restart before observing what the driver reports.
 */

export interface HostOptions {
  /** Where the store, secrets and published configs live. */
  dataDir: string;
  driver: VmmDriver;
  /** Manifest directory (roles/, profiles/) or a loaded catalog; default: the built-in manifests. */
  roles?: string | Catalog;
  logger?: Logger;
  clock?: Clock;
}

export interface InstanceView {
  instance_id: string;
  tenant_id: string;
  pool_id: string;
  role: string;
  profile: string;
  status: string;
  /** The chart's full state value, for tools and the visualizer. */
  state: unknown;
  status_reason: string | null;
  config_version: number;
  secrets_epoch: number;
  revision: InstanceContext['revision'];
  network: InstanceContext['network'];
  manifest_hash: string | null;
  connectors: InstanceContext['connectors'];
  deferred: InstanceContext['deferred'];
  running_since: number | null;
}

export interface TenantView {
  tenant_id: string;
  instances: number;
  by_status: Record<string, number>;
  floors: Record<string, number>;
  recent: TenantState['log'];
}

export interface ApplyResult {
  applied: boolean;
  generation: number;
  issues: Issue[];
  rejected: { tenants: string[]; pools: string[] };
  plan: Plan | null;
  /** Why nothing was applied (stale generation, unusable document). */
  refusal: string | null;
}

export interface RequestResult {
  accepted: boolean;
  /** Machine-readable reason: a refusal (`sleep-floor:gateway:1`, `quota:max_vcpus:8`) or what happens next. */
  reason: string | null;
}

/** What subscribers hear; `entry` is the journal entry it was recorded as (for event streams). */
export type HostEvent = (
  | { type: 'transition'; seq: number; instance_id: string; tenant_id: string; from: string | null; to: string; event: string; reason: string | null }
  | { type: 'refusal'; seq: number; instance_id: string; tenant_id: string; command: string; reason: string }
  | { type: 'deferral'; seq: number; instance_id: string; tenant_id: string; command: string }
) & { entry: JournalEntry };

interface PoolRuntime {
  tenant: TenantSpec;
  pool: PoolSpec;
  role: LoadedRole;
  options: ComposeOptions;
}

interface InstanceHandle {
  actor: Actor<AnyStateMachine>;
  chartVersion: string;
  status: string;
  lastEvent: string;
  deferred: string | null;
  /** The live-reload region's state as last journaled (null: not running or no reloads). */
  reload: string | null;
  context: InstanceContext;
  /** Builds the snapshot record at commit; one function per actor, not one per transition. */
  produce: () => PersistedActor;
}

const DESIRED_KEY = 'desired_state';
const TRANSIENT = new Set(['preflight', 'provisioning', 'booting', 'starting-services', 'warming', 'resuming', 'draining', 'snapshotting', 'waking', 'stopping', 'destroying']);

export class Host {
  readonly #store: Store;
  readonly #catalog: Catalog;
  readonly #driver: VmmDriver;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #secrets: SecretStore;
  readonly #drives: DrivePlanner;
  readonly #logic: InstanceLogic;
  readonly #instances = new Map<string, InstanceHandle>();
  /** The same handles by tenant: secrets and tenant-wide observations touch one tenant's instances only. */
  readonly #byTenant = new Map<string, Set<InstanceHandle>>();
  readonly #tenants = new Map<string, Actor<typeof tenantLogic>>();
  readonly #pools = new Map<string, PoolRuntime>();
  readonly #specs = new Map<string, { key: string; spec: InstanceSpec }>();
  /** Instance addresses and vsock CIDs, persisted in the batch that creates the instance. */
  readonly #addresses: AddressAllocator;
  readonly #listeners = new Set<(event: HostEvent) => void>();
  readonly #work: (() => void)[] = [];
  #pumping = false;
  #generation = -1;
  readonly #counters = { transitions: 0, refusals: 0, deferrals: 0, applies: 0, lastApplyMs: 0 };
  #desired: DesiredState | null = null;
  #unsubscribeExits: () => void;
  #closed = false;
  /** Set once the last commit before close is done: the actors' stop snapshots are not persisted. */
  #stoppingActors = false;

  constructor(store: Store, catalog: Catalog, options: HostOptions, clock: Clock, log: Logger) {
    this.#store = store;
    this.#catalog = catalog;
    this.#driver = options.driver;
    this.#clock = clock;
    this.#log = log;
    this.#secrets = new SecretStore(store, { clock });
    this.#drives = new DrivePlanner(store, this.#secrets);
    this.#addresses = new AddressAllocator(store);
    for (const skipped of this.#addresses.loadReport.skipped) this.#log.error(skipped, 'address allocation record skipped');
    this.#logic = createInstanceLogic({
      driver: options.driver,
      clock,
      specFor: (context) => {
        // A spec only changes with the pool (a new apply), the revision or the tenant's secrets:
        // reuse it across the several driver calls of one boot.
        const key = `${this.#generation}|${context.revision.config_version}|${context.revision.secrets_epoch}|${context.revision.artifacts}|${context.desired_manifest_hash}|${this.#secrets.epoch(context.tenant_id)}`;
        const cached = this.#specs.get(context.instance_id);
        if (cached?.key === key) return cached.spec;
        const runtime = this.#poolRuntime(context);
        const desired = desiredDrives(context);
        const spec = this.#drives.spec(desired, runtime.role, runtime.pool, runtime.options.connectors, runtime.options.ingress, this.#dependencyEndpoints(context, runtime.role), runtime.tenant);
        this.#specs.set(context.instance_id, { key, spec });
        return spec;
      },
      preflight: (context) => this.#drives.preflight(desiredDrives(context), this.#poolRuntime(context).role),
    });
    this.#unsubscribeExits = options.driver.onExit((exit) => {
      this.#enqueue(() => this.#instances.get(exit.instance_id)?.actor.send({ type: 'obs.exited', reason: exit.reason }));
    });
  }

  // ----- queries -----

  get catalog(): Catalog {
    return this.#catalog;
  }

  get generation(): number {
    return this.#generation;
  }

  desiredState(): DesiredState | null {
    return this.#desired;
  }

  instances(filter: { tenant?: string; pool?: string; role?: string; status?: string } = {}): InstanceView[] {
    const out: InstanceView[] = [];
    for (const handle of this.#instances.values()) {
      const c = handle.context;
      if ((filter.tenant && c.tenant_id !== filter.tenant) || (filter.pool && c.pool_id !== filter.pool) || (filter.role && c.role !== filter.role) || (filter.status && handle.status !== filter.status)) continue;
      out.push(this.#view(handle));
    }
    return out.sort((a, b) => a.instance_id.localeCompare(b.instance_id, undefined, { numeric: true }));
  }

  instance(id: string): InstanceView | undefined {
    const handle = this.#instances.get(id);
    return handle && this.#view(handle);
  }

  tenants(): TenantView[] {
    return [...this.#tenants.entries()].map(([tenant_id, actor]) => {
      const state = actor.getSnapshot().context;
      const by_status: Record<string, number> = {};
      for (const m of Object.values(state.members)) by_status[m.status] = (by_status[m.status] ?? 0) + 1;
      return { tenant_id, instances: Object.keys(state.members).length, by_status, floors: state.floors, recent: state.log.slice(-20) };
    });
  }

  journal(options: { instanceId?: string; sinceSeq?: number; limit?: number } = {}): JournalEntry[] {
    return this.#store.readJournal(options);
  }

  subscribe(listener: (event: HostEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #view(handle: InstanceHandle): InstanceView {
    const c = handle.context;
    return {
      instance_id: c.instance_id,
      tenant_id: c.tenant_id,
      pool_id: c.pool_id,
      role: c.role,
      profile: c.profile,
      status: handle.status,
      state: handle.actor.getSnapshot().value,
      status_reason: c.status_reason,
      config_version: c.config_version,
      secrets_epoch: c.secrets_epoch,
      revision: c.revision,
      network: c.network,
      manifest_hash: c.manifest_hash,
      connectors: c.connectors,
      deferred: c.deferred,
      running_since: c.running_since,
    };
  }

  // ----- desired state -----

  /** What applying `document` would do, without doing it. */
  plan(document: unknown): { issues: Issue[]; rejected: { tenants: string[]; pools: string[] }; plan: Plan | null; refusal: string | null } {
    const report = validateDesiredState(document, this.#catalog);
    if (!report.applicable) return { issues: report.issues, rejected: report.rejected, plan: null, refusal: 'document-invalid' };
    if (report.applicable.generation < this.#generation) {
      return { issues: report.issues, rejected: report.rejected, plan: null, refusal: `stale-generation:${report.applicable.generation}<${this.#generation}` };
    }
    const desired = keepRejectedParts(report.applicable, document, report.rejected, this.#desired);
    return { issues: report.issues, rejected: report.rejected, plan: planApply(desired, this.#existing(), this.#catalog), refusal: null };
  }

  /** Validates, refuses an older generation, persists the document and hands targets to the tenants. */
  async apply(document: unknown): Promise<ApplyResult> {
    const report = validateDesiredState(document, this.#catalog);
    const base = { issues: report.issues, rejected: report.rejected };
    if (!report.applicable) return { ...base, applied: false, generation: this.#generation, plan: null, refusal: 'document-invalid' };
    if (report.applicable.generation < this.#generation) {
      return { ...base, applied: false, generation: this.#generation, plan: null, refusal: `stale-generation:${report.applicable.generation}<${this.#generation}` };
    }
    // Rejected tenants and pools keep what they run: "not changed", never "removed".
    const desired = keepRejectedParts(report.applicable, document, report.rejected, this.#desired);
    const started = this.#clock.now();
    const plan = planApply(desired, this.#existing(), this.#catalog);
    this.#desired = desired;
    this.#generation = desired.generation;
    this.#store.putMeta(DESIRED_KEY, { generation: desired.generation, applied_at: started, document: desired });
    this.#drives.publishAll(this.#indexPools(desired));
    // Mint what the control plane may generate before anything starts: written concurrently here
    // rather than one by one in preflight.
    const wanted = new Map<string, SecretSpec[]>();
    for (const tenant of desired.tenants) wanted.set(tenant.tenant_id, tenant.pools.flatMap((p) => this.#catalog.roles.get(p.role)!.manifest.secrets));
    this.#secrets.ensureAll(wanted);
    // Durable before any VM is handed a minted token.
    await this.#store.flush();
    const ranks = roleRanks(this.#catalog);

    for (const member of plan.members) {
      if (member.pool && !this.#instances.has(member.instance_id)) this.#createInstance(member.instance_id, this.#pools.get(`${member.tenant_id}/${member.pool_id}`)!);
      else if (member.pool) {
        const runtime = this.#pools.get(`${member.tenant_id}/${member.pool_id}`)!;
        const handle = this.#instances.get(member.instance_id)!;
        const { revision } = runtime.pool;
        const changed = JSON.stringify(handle.context.revision) !== JSON.stringify(revision) || handle.context.desired_manifest_hash !== runtime.role.hash;
        // A running VM that has not applied its pool's config_version or secrets_epoch (a failed
        // reload, a revision that came during a reload) is sent the revision again: the chart
        // reloads it where the role allows it, and only records it otherwise.
        const lagging = handle.status === 'running' && (handle.context.config_version !== revision.config_version || handle.context.secrets_epoch !== revision.secrets_epoch);
        if (changed || lagging) handle.actor.send({ type: 'cmd.revise', revision, manifest_hash: runtime.role.hash });
      }
    }
    // Grouped once: filtering every member for every tenant is quadratic in the fleet (10,000 x 1,000).
    const tenantsById = new Map(desired.tenants.map((t) => [t.tenant_id, t]));
    const membersByTenant = new Map<string, (typeof plan.members)[number][]>();
    for (const t of desired.tenants) membersByTenant.set(t.tenant_id, []);
    for (const m of plan.members) {
      let list = membersByTenant.get(m.tenant_id);
      if (!list) membersByTenant.set(m.tenant_id, (list = []));
      list.push(m);
    }
    for (const [tenantId, members] of membersByTenant) {
      const tenant = tenantsById.get(tenantId);
      const roles: Record<string, RolePolicy> = {};
      const floors: Record<string, number> = {};
      for (const [name, loaded] of this.#catalog.roles) {
        roles[name] = { name, depends_on: loaded.manifest.depends_on.map((d) => ({ role: d.role, condition: d.condition })), rank: ranks.get(name) ?? 0 };
        floors[name] = loaded.manifest.sleep.floor;
      }
      for (const pool of tenant?.pools ?? []) floors[pool.role] = Math.max(floors[pool.role] ?? 0, pool.sleep?.floor ?? 0);
      this.#sendTenant(tenantId, {
        type: 'tenant.configure',
        at: this.#clock.now(),
        roles,
        floors,
        quotas: tenant?.quotas ?? {},
        members: members.map((m) => ({
          instance_id: m.instance_id,
          pool_id: m.pool_id,
          role: m.role,
          target: m.target,
          resources: this.#instances.get(m.instance_id)?.context ? this.#resourcesOf(m.instance_id) : { vcpus: 0, mem_mib: 0 },
        })),
      });
    }
    await this.#store.flush();
    this.#counters.applies++;
    this.#counters.lastApplyMs = this.#clock.now() - started;
    this.#log.info({ generation: desired.generation, steps: plan.steps.length, rejected: report.rejected, ms: this.#clock.now() - started }, 'desired state applied');
    return { ...base, applied: true, generation: desired.generation, plan, refusal: null };
  }

  #resourcesOf(instanceId: string): { vcpus: number; mem_mib: number } {
    const handle = this.#instances.get(instanceId)!;
    const pool = this.#pools.get(`${handle.context.tenant_id}/${handle.context.pool_id}`)?.pool;
    return pool ? { vcpus: pool.resources.vcpus, mem_mib: pool.resources.mem_mib } : { vcpus: 0, mem_mib: 0 };
  }

  #existing() {
    return [...this.#instances.values()].map((h) => ({ instance_id: h.context.instance_id, tenant_id: h.context.tenant_id, pool_id: h.context.pool_id, role: h.context.role, status: h.status }));
  }

  /** Records each pool's runtime options; returns what its config drive publishes. */
  #indexPools(desired: DesiredState) {
    const published: Parameters<DrivePlanner['publishAll']>[0] = [];
    for (const tenant of desired.tenants) {
      for (const pool of tenant.pools) {
        const role = this.#catalog.roles.get(pool.role)!;
        const defaults = fullOptions(role.manifest);
        const options: ComposeOptions = {
          ingress: role.manifest.ingress.allowed && (pool.ingress?.enabled ?? role.manifest.ingress.default_enabled),
          connectors: role.manifest.pool_overrides.connectors ? (pool.connectors ?? []) : defaults.connectors,
          min_runtime_s: Math.max(role.manifest.sleep.min_runtime_s, pool.sleep?.min_runtime_s ?? 0),
        };
        this.#pools.set(`${tenant.tenant_id}/${pool.pool_id}`, { tenant, pool, role, options });
        published.push({ tenant: tenant.tenant_id, pool, role, connectors: options.connectors, ingress: options.ingress });
      }
    }
    return published;
  }

  /** The tenant's instances of the roles this instance depends on, with their addresses and ports. */
  #dependencyEndpoints(context: InstanceContext, role: LoadedRole) {
    const wanted = new Set(role.manifest.depends_on.map((d) => d.role));
    if (wanted.size === 0) return [];
    return [...(this.#byTenant.get(context.tenant_id) ?? [])]
      .filter((h) => wanted.has(h.context.role) && h.status !== 'destroyed')
      .map((h) => ({
        role: h.context.role,
        instance_id: h.context.instance_id,
        ipv4: h.context.network.ipv4,
        ports: Object.fromEntries((this.#catalog.roles.get(h.context.role)?.manifest.ports ?? []).map((p) => [p.name, p.port])),
      }))
      .sort((a, b) => a.instance_id.localeCompare(b.instance_id));
  }

  #poolRuntime(context: InstanceContext): PoolRuntime {
    const runtime = this.#pools.get(`${context.tenant_id}/${context.pool_id}`);
    if (runtime) return runtime;
    // A pool removed from the desired state: its instances still need specs to stop and destroy.
    const role = this.#catalog.roles.get(context.role)!;
    const fallback: PoolRuntime = {
      tenant: { tenant_id: context.tenant_id, tenant_net_id: 1, ipv4_subnet: '0.0.0.0/8', pools: [] },
      pool: {
        pool_id: context.pool_id,
        role: context.role,
        profile: context.profile,
        revision: context.revision,
        resources: { vcpus: 1, mem_mib: 128, data_disk_mib: 0 },
        desired_counts: { running: 0, warm: 0, sleeping: 0 },
      },
      role,
      options: fullOptions(role.manifest),
    };
    return fallback;
  }

  // ----- instance actors -----

  #createInstance(instanceId: string, runtime: PoolRuntime): void {
    const { tenant, pool, role } = runtime;
    const network = this.#addresses.allocate(instanceId, tenant, pool.pool_id);
    const context = newInstanceContext(
      { instance_id: instanceId, tenant_id: tenant.tenant_id, pool_id: pool.pool_id, role: pool.role, profile: pool.profile, revision: pool.revision, network, desired_manifest_hash: role.hash },
      this.#clock.now(),
    );
    this.#startInstance(context, runtime.options, undefined);
  }

  #startInstance(context: InstanceContext, options: ComposeOptions, snapshot: unknown): InstanceHandle | undefined {
    const role = this.#catalog.roles.get(context.role);
    if (!role) {
      this.#log.error({ instance: context.instance_id, role: context.role }, 'role no longer loaded; instance left as recorded');
      return undefined;
    }
    const { machine, chartVersion } = this.#logic.machineFor(role.manifest, options);
    // status '' until the first snapshot, which journals the instance's first status (from null).
    // A restored deferral was journaled by the previous run.
    const handle: InstanceHandle = {
      actor: undefined as never,
      chartVersion,
      status: '',
      lastEvent: snapshot ? 'restored' : 'created',
      deferred: snapshot ? (context.deferred?.command ?? null) : null,
      reload: null,
      context,
      produce: () => ({
        schema_version: 1,
        kind: 'instance',
        id: handle.context.instance_id,
        tenant_id: handle.context.tenant_id,
        chart_version: handle.chartVersion,
        manifest_hash: handle.context.manifest_hash,
        snapshot: persistedSnapshotOf(handle.actor) as never,
        updated_at: this.#clock.now(),
      }),
    };
    const actor = createActor(machine, {
      id: context.instance_id,
      systemId: INSTANCE_SYSTEM_ID,
      clock: this.#clock,
      ...(snapshot ? { snapshot: snapshot as never } : { input: context }),
    });
    handle.actor = actor;
    this.#instances.set(context.instance_id, handle);
    let tenantHandles = this.#byTenant.get(context.tenant_id);
    if (!tenantHandles) this.#byTenant.set(context.tenant_id, (tenantHandles = new Set()));
    tenantHandles.add(handle);
    actor.subscribe({
      next: (snap) => this.#onInstanceSnapshot(handle, snap.value as never, snap.context as InstanceContext),
      error: (error) => this.#log.error({ instance: context.instance_id, err: error }, 'instance actor failed'),
    });
    actor.start();
    this.#onInstanceSnapshot(handle, actor.getSnapshot().value as never, actor.getSnapshot().context as InstanceContext);
    return handle;
  }

  #onInstanceSnapshot(handle: InstanceHandle, value: string | Record<string, unknown>, context: InstanceContext): void {
    // Stopping the actors on close emits a last snapshot; what was committed before it stands.
    if (this.#stoppingActors) return;
    handle.context = context;
    handle.lastEvent = this.#logic.lastEventOf(handle.actor) ?? handle.lastEvent;
    const status = statusOf(value);
    const at = this.#clock.now();
    // Serialised once per tick at commit, however many times the actor moved in it.
    this.#store.putSnapshotLater('instance', context.instance_id, handle.produce);
    const deferred = context.deferred?.command ?? null;
    if (deferred && deferred !== handle.deferred) {
      const entry = this.#journal({ at, instance_id: context.instance_id, tenant_id: context.tenant_id, kind: 'deferral', from: status, to: status, event: deferred, detail: { until_min_runtime: true } });
      this.#emit({ type: 'deferral', seq: entry.seq, instance_id: context.instance_id, tenant_id: context.tenant_id, command: deferred, entry });
    }
    handle.deferred = deferred;
    const reload = reloadStateOf(value);
    if (reload !== handle.reload) {
      const before = handle.reload;
      handle.reload = reload;
      // A restored actor resumes a reload the previous run journaled.
      if (handle.lastEvent !== 'restored') this.#journalReload(context, status, before, reload);
    }
    if (status === handle.status) return;
    const from = handle.status === '' ? null : handle.status;
    if (from === null && handle.lastEvent === 'restored') {
      // A restored actor resumes its recorded status; that is not a transition.
      handle.status = status;
      return;
    }
    handle.status = status;
    const entry = this.#journal({
      at,
      instance_id: context.instance_id,
      tenant_id: context.tenant_id,
      kind: status === 'refused' ? 'refusal' : 'transition',
      from,
      to: status,
      event: handle.lastEvent,
      detail: context.status_reason ? { reason: context.status_reason } : {},
    });
    this.#log.debug({ tenant: context.tenant_id, pool: context.pool_id, instance: context.instance_id, from, to: status, event: handle.lastEvent }, 'transition');
    this.#emit({ type: 'transition', seq: entry.seq, instance_id: context.instance_id, tenant_id: context.tenant_id, from, to: status, event: handle.lastEvent, reason: context.status_reason, entry });
    if (from === null) return; // the tenant learns of new members from its configuration
    this.#enqueue(() => this.#sendTenant(context.tenant_id, { type: 'member.status', at, instance_id: context.instance_id, status }));
    if (status === 'destroyed') this.#enqueue(() => this.#forget(handle));
  }

  /** Live reloads in the journal: started (`command`), applied (`observation`) or failed (`error`); the status stays `running`. */
  #journalReload(context: InstanceContext, status: string, before: string | null, after: string | null): void {
    const base = { at: this.#clock.now(), instance_id: context.instance_id, tenant_id: context.tenant_id, from: status, to: status };
    const versions = { config_version: context.config_version, secrets_epoch: context.secrets_epoch };
    if (after === 'reloading') {
      this.#journal({ ...base, kind: 'command', event: 'reload', detail: { applied: versions, revision: { config_version: context.revision.config_version, secrets_epoch: context.revision.secrets_epoch } } });
    } else if (before === 'reloading' && after === 'idle') {
      this.#journal({ ...base, kind: 'observation', event: 'reload.applied', detail: { applied: versions } });
    } else if (before === 'reloading' && after === 'failed') {
      this.#journal({ ...base, kind: 'error', event: 'reload.failed', detail: { applied: versions, reason: context.status_reason } });
    } else if (before === 'reloading') {
      // Left running (stop, crash, sleep) in the middle of a reload: what was applied stands.
      this.#journal({ ...base, kind: 'observation', event: 'reload.abandoned', detail: { applied: versions } });
    }
  }

  #forget(handle: InstanceHandle): void {
    const { instance_id, tenant_id } = handle.context;
    handle.actor.stop();
    this.#instances.delete(instance_id);
    this.#byTenant.get(tenant_id)?.delete(handle);
    this.#specs.delete(instance_id);
    this.#store.deleteSnapshot('instance', instance_id);
    this.#addresses.release(instance_id);
    this.#sendTenant(tenant_id, { type: 'member.gone', at: this.#clock.now(), instance_id });
  }

  // ----- tenant actors -----

  #tenantActor(tenantId: string, snapshot?: unknown): Actor<typeof tenantLogic> {
    let actor = this.#tenants.get(tenantId);
    if (actor) return actor;
    // On restore `input` is ignored, but XState's types still ask for it.
    actor = createActor(tenantLogic, { id: `tenant:${tenantId}`, clock: this.#clock, input: { tenant_id: tenantId }, ...(snapshot ? { snapshot: snapshot as never } : {}) });
    this.#tenants.set(tenantId, actor);
    // Refusals already in a restored tenant's log were journaled by the previous run.
    let journaled = snapshot ? ((snapshot as { context?: TenantState }).context?.next_log_seq ?? 1) - 1 : 0;
    actor.subscribe({
      next: (snap) => {
        const state = snap.context;
        this.#store.putSnapshotLater('tenant', tenantId, () => ({
          schema_version: 1,
          kind: 'tenant',
          id: tenantId,
          tenant_id: tenantId,
          chart_version: 'tenant-supervisor-1',
          manifest_hash: null,
          snapshot: actor!.getPersistedSnapshot() as never,
          updated_at: this.#clock.now(),
        }));
        const fresh = state.log.filter((entry) => entry.seq > journaled && entry.outcome === 'refused');
        journaled = state.next_log_seq - 1;
        for (const refusal of fresh) {
          const entry = this.#journal({ at: refusal.at, instance_id: refusal.instance_id, tenant_id: tenantId, kind: 'refusal', from: null, to: null, event: refusal.command, detail: { reason: refusal.reason } });
          this.#emit({ type: 'refusal', seq: entry.seq, instance_id: refusal.instance_id, tenant_id: tenantId, command: refusal.command, reason: refusal.reason ?? '', entry });
        }
        if (state.outbox.length > 0) this.#enqueue(() => this.#drainOutbox(tenantId));
      },
      error: (error) => this.#log.error({ tenant: tenantId, err: error }, 'tenant actor failed'),
    });
    actor.start();
    return actor;
  }

  #sendTenant(tenantId: string, event: TenantEvent): void {
    this.#tenantActor(tenantId).send(event);
  }

  #drainOutbox(tenantId: string): void {
    const actor = this.#tenants.get(tenantId);
    if (!actor) return;
    const outbox = actor.getSnapshot().context.outbox;
    if (outbox.length === 0) return;
    actor.send({ type: 'outbox.taken', at: this.#clock.now() });
    for (const command of outbox) this.#instances.get(command.instance_id)?.actor.send({ type: command.type });
  }

  /** Runs work queued from inside actor callbacks one item at a time, never re-entrantly. */
  #enqueue(work: () => void): void {
    this.#work.push(work);
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (let next = this.#work.shift(); next; next = this.#work.shift()) next();
    } finally {
      this.#pumping = false;
    }
  }

  #journal(entry: NewJournalEntry): JournalEntry {
    return { seq: this.#store.appendJournal(entry), ...entry };
  }

  #emit(event: HostEvent): void {
    if (event.type === 'transition') this.#counters.transitions++;
    else if (event.type === 'refusal') this.#counters.refusals++;
    else this.#counters.deferrals++;
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#log.warn({ err: error }, 'host event listener threw');
      }
    }
  }

  // ----- commands -----

  #request(id: string, command: 'start' | 'stop' | 'sleep' | 'wake' | 'warm'): RequestResult {
    const handle = this.#instances.get(id);
    if (!handle) return { accepted: false, reason: 'unknown-instance' };
    const tenant = this.#tenantActor(handle.context.tenant_id);
    const before = tenant.getSnapshot().context.next_log_seq;
    let result: RequestResult = { accepted: true, reason: null };
    this.#enqueue(() => {
      tenant.send({ type: 'request', at: this.#clock.now(), instance_id: id, command });
      const entry = tenant.getSnapshot().context.log.filter((e) => e.seq >= before && e.instance_id === id).pop();
      result = entry?.outcome === 'refused' ? { accepted: false, reason: entry.reason } : { accepted: true, reason: entry?.reason ?? null };
    });
    return result;
  }

  sleep(id: string): RequestResult {
    return this.#request(id, 'sleep');
  }
  wake(id: string): RequestResult {
    return this.#request(id, 'wake');
  }
  warm(id: string): RequestResult {
    return this.#request(id, 'warm');
  }
  stop(id: string): RequestResult {
    return this.#request(id, 'stop');
  }
  start(id: string): RequestResult {
    return this.#request(id, 'start');
  }

  // ----- config versions -----

  readonly configs = {
    /** Config versions published for a pool (config drive contents exist for them). */
    versions: (tenant: string, pool: string): number[] => this.#drives.publishedVersions(tenant, pool),
    /** Withdraws a config version (say, a bad one): instances needing it are refused at their next start or wake. */
    withdraw: (tenant: string, pool: string, version: number): boolean => this.#drives.withdraw(tenant, pool, version),
  };

  // ----- secrets -----

  /** Secrets by tenant: values go in, never out. Call flush() before acknowledging a change durably. */
  readonly secrets = {
    put: (tenant: string, name: string, value: string): number => {
      const epoch = this.#secrets.put(tenant, name, value);
      this.#secretsChanged(tenant);
      return epoch;
    },
    delete: (tenant: string, name: string): boolean => {
      const existed = this.#secrets.delete(tenant, name);
      this.#secretsChanged(tenant);
      return existed;
    },
    revoke: (tenant: string, name: string): boolean => {
      const existed = this.#secrets.revoke(tenant, name);
      this.#secretsChanged(tenant);
      return existed;
    },
    list: (tenant: string): SecretInfo[] => this.#secrets.list(tenant),
  };

  #secretsChanged(tenant: string): void {
    for (const handle of this.#byTenant.get(tenant) ?? []) {
      const role = this.#catalog.roles.get(handle.context.role);
      if (!role) continue;
      const secrets = this.#drives.secretsPresent(handle.context, role);
      this.#enqueue(() => handle.actor.send({ type: 'obs.secrets-changed', secrets }));
      // An instance refused for a missing secret gets another preflight now that secrets changed.
      if (handle.status === 'refused') this.#enqueue(() => this.#request(handle.context.instance_id, 'start'));
    }
  }

  // ----- lifecycle -----

  /** Restores actors from the store, then observes the driver and lets the charts decide. */
  async restore(): Promise<{ instances: number; tenants: number; orphans: string[]; gone: string[] }> {
    const meta = this.#store.getMeta(DESIRED_KEY) as { generation: number; document: DesiredState } | undefined;
    if (meta) {
      this.#desired = meta.document;
      this.#generation = meta.generation;
      this.#indexPools(meta.document);
    }
    for (const record of this.#store.listSnapshots('tenant')) this.#tenantActor(record.id, record.snapshot);
    const records = this.#store.listSnapshots('instance');
    for (const record of records) {
      const context = (record.snapshot as { context: InstanceContext }).context;
      const runtime = this.#pools.get(`${context.tenant_id}/${context.pool_id}`);
      const role0 = this.#catalog.roles.get(context.role);
      const options = runtime?.options ?? (role0 ? fullOptions(role0.manifest) : { ingress: false, connectors: [], min_runtime_s: 0 });
      // Normally a no-op: the allocation record was written with the instance's first snapshot.
      if (!this.#addresses.adopt(context.instance_id, context.tenant_id, context.pool_id, context.network)) {
        this.#log.error({ instance: context.instance_id, network: context.network }, 'restored instance has an address or CID another instance holds');
      }
      const role = this.#catalog.roles.get(context.role);
      const sameChart = role && this.#logic.machineFor(role.manifest, options).chartVersion === record.chart_version;
      // A snapshot from another chart version cannot be trusted to fit; start over from pending
      // with the same identity, and let reality (below) and the tenant decide.
      const handle = this.#startInstance(context, options, sameChart ? record.snapshot : undefined);
      if (handle && !sameChart) this.#log.warn({ instance: context.instance_id }, 'chart changed since the snapshot; instance restarted from pending');
    }
    // An allocation whose instance never committed a snapshot holds an address nobody uses.
    const recorded = new Set(records.map((r) => r.id));
    for (const allocation of this.#addresses.list()) if (!recorded.has(allocation.instance_id)) this.#addresses.release(allocation.instance_id);
    const observed = new Map((await this.#driver.describe()).map((vm) => [vm.instance_id, vm]));
    const gone: string[] = [];
    for (const handle of this.#instances.values()) {
      const vm = observed.get(handle.context.instance_id);
      const up = handle.status === 'running' || handle.status === 'warm' || handle.status === 'starting-services';
      if (up && (!vm || vm.state === 'absent' || vm.state === 'stopped')) {
        gone.push(handle.context.instance_id);
        this.#enqueue(() => handle.actor.send({ type: 'obs.exited', reason: 'not found after a control-plane restart' }));
      }
    }
    const orphans = [...observed.values()].filter((vm) => vm.state !== 'absent' && !this.#instances.has(vm.instance_id)).map((vm) => vm.instance_id);
    for (const orphan of orphans) {
      this.#log.warn({ instance: orphan }, 'VM without an instance record: destroying it');
      await this.#driver.destroy(orphan, { signal: new AbortController().signal, deadline: this.#clock.now() + 60_000 });
    }
    for (const handle of this.#instances.values()) {
      this.#enqueue(() => this.#sendTenant(handle.context.tenant_id, { type: 'member.status', at: this.#clock.now(), instance_id: handle.context.instance_id, status: handle.status }));
    }
    for (const tenantId of this.#tenants.keys()) this.#enqueue(() => this.#drainOutbox(tenantId));
    this.#log.info({ instances: this.#instances.size, tenants: this.#tenants.size, orphans: orphans.length, gone: gone.length }, 'restored');
    return { instances: this.#instances.size, tenants: this.#tenants.size, orphans, gone };
  }

  /** Counters and gauges for /metrics: instances by role and status, events, the last apply, the store. */
  stats() {
    const instances = new Map<string, number>();
    for (const handle of this.#instances.values()) {
      const key = `${handle.context.role}\u0000${handle.status}`;
      instances.set(key, (instances.get(key) ?? 0) + 1);
    }
    return {
      instances: [...instances].map(([key, count]) => {
        const [role, status] = key.split('\u0000') as [string, string];
        return { role, status, count };
      }),
      ...this.#counters,
      generation: this.#generation,
      store: this.#store.stats(),
    };
  }

  /** Waits until everything queued so far is committed and on disk (journal reads see committed entries). */
  async flush(): Promise<void> {
    await this.#store.flush();
  }

  /** True when no instance is in the middle of an effect. */
  isSettled(): boolean {
    for (const handle of this.#instances.values()) if (TRANSIENT.has(handle.status)) return false;
    return true;
  }

  /** Stops the actors (never the VMs: restarting the control plane must not stop tenant VMs) and flushes the store. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribeExits();
    // Snapshots are serialised lazily at commit: commit what the actors are now *before* stopping
    // them, or a pending record would be produced from a stopped actor and restore as stopped.
    await this.#store.flush();
    this.#stoppingActors = true;
    for (const handle of this.#instances.values()) handle.actor.stop();
    for (const actor of this.#tenants.values()) actor.stop();
    await this.#store.close();
  }
}

/**
 * The context as the drives of the next boot, wake or live reload see it: the desired revision's
 * config_version and secrets_epoch (the context's own fields say what the VM has applied).
 */
function desiredDrives(context: InstanceContext): InstanceContext {
  if (context.config_version === context.revision.config_version && context.secrets_epoch === context.revision.secrets_epoch) return context;
  return { ...context, config_version: context.revision.config_version, secrets_epoch: context.revision.secrets_epoch };
}

/** Opens (or creates) a host on `dataDir`, restoring whatever a previous run left there. */
export async function createHost(options: HostOptions): Promise<Host> {
  const clock = options.clock ?? systemClock;
  const log = options.logger ?? pino({ level: 'silent' });
  const given = options.roles;
  const catalog = given !== undefined && typeof given !== 'string' ? given : await loadCatalogStrict(given);
  const store = openStore({
    path: path.join(options.dataDir, 'state.lmdb'),
    clock,
    onCorruptRecord: (ref, issues) => log.error({ ref, issues }, 'corrupt record skipped'),
    onInvalidRecord: (ref, issues) => log.error({ ref, issues }, 'actor snapshot failed validation; not written'),
  });
  const host = new Host(store, catalog, options, clock, log);
  await host.restore();
  return host;
}
