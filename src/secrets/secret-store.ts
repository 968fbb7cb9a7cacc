import { randomBytes } from 'node:crypto';
import type { Clock } from '../common/clock.ts';
import { SecretName, TenantId } from '../schemas/ids.ts';
import type { SecretSpec } from '../schemas/role-manifest.ts';

/**
 * Per-tenant named secrets, versioned by a per-tenant epoch that rises with every change. They
 * are kept in the host's LMDB environment (its own named DB; the environment's files are mode
 * 0600), so a first apply of a thousand tenants mints a thousand tokens in one transaction, not
 * a thousand file writes. Values live only there and in the secrets drives computed from them:
 * never in logs, the journal, API replies or actor snapshots (the rest of the runtime sees names
 * and epochs only). Writes are queued with the store's batch; callers that hand a secret to a VM
 * or acknowledge an operator flush the store first.
 */
export interface SecretRecords {
  getSecrets(tenant: string): unknown;
  putSecrets(tenant: string, value: unknown): void;
}

export interface SecretInfo {
  name: string;
  epoch: number;
  updated_at: number;
  /** Present (usable on a secrets drive) or revoked (removed, and not minted again until put). */
  state: 'present' | 'revoked';
}

interface SecretEntry {
  epoch: number;
  updated_at: number;
  revoked: boolean;
  value?: string;
}

/** One tenant's record. */
interface TenantFile {
  /** Rises with every put, delete and revoke. */
  epoch: number;
  secrets: Record<string, SecretEntry>;
}

export class SecretStore {
  readonly #records: SecretRecords;
  readonly #clock: Clock;
  readonly #random: (bytes: number) => Buffer;
  /** Every tenant read or written so far: the records are read once, then kept here. */
  readonly #tenants = new Map<string, TenantFile>();

  constructor(records: SecretRecords, options: { clock: Clock; random?: (bytes: number) => Buffer }) {
    this.#records = records;
    this.#clock = options.clock;
    this.#random = options.random ?? randomBytes;
  }

  #load(tenant: string): TenantFile {
    let state = this.#tenants.get(tenant);
    if (!state) {
      TenantId.parse(tenant);
      const stored = this.#records.getSecrets(tenant) as TenantFile | undefined;
      state = stored ? structuredClone(stored) : { epoch: 0, secrets: {} };
      this.#tenants.set(tenant, state);
    }
    return state;
  }

  #save(tenant: string, state: TenantFile): void {
    this.#records.putSecrets(tenant, structuredClone(state));
  }

  /** The tenant's secrets epoch: rises with every change; 0 before the first. */
  epoch(tenant: string): number {
    return this.#load(tenant).epoch;
  }

  #set(tenant: string, name: string, entry: Omit<SecretEntry, 'epoch' | 'updated_at'>): TenantFile {
    SecretName.parse(name);
    const state = this.#load(tenant);
    state.epoch += 1;
    state.secrets[name] = { ...entry, epoch: state.epoch, updated_at: this.#clock.now() };
    return state;
  }

  /** Stores a value; returns the tenant's new epoch. */
  put(tenant: string, name: string, value: string): number {
    const state = this.#set(tenant, name, { revoked: false, value });
    this.#save(tenant, state);
    return state.epoch;
  }

  /** Removes a value; a minted secret is minted again on next need. Returns whether it existed. */
  delete(tenant: string, name: string): boolean {
    SecretName.parse(name);
    const state = this.#load(tenant);
    const existed = state.secrets[name]?.value !== undefined;
    if (!state.secrets[name]) return false;
    delete state.secrets[name];
    state.epoch += 1;
    this.#save(tenant, state);
    return existed;
  }

  /** Removes a value and keeps it from being minted again until an operator puts a new one. */
  revoke(tenant: string, name: string): boolean {
    const existed = this.has(tenant, name);
    this.#save(tenant, this.#set(tenant, name, { revoked: true }));
    return existed;
  }

  /** The value, for building a secrets drive only. */
  reveal(tenant: string, name: string): string | undefined {
    const entry = this.#load(tenant).secrets[name];
    return entry && !entry.revoked ? entry.value : undefined;
  }

  has(tenant: string, name: string): boolean {
    return this.reveal(tenant, name) !== undefined;
  }

  #mintable(tenant: string, spec: SecretSpec): boolean {
    // Only tokens are the store's to mint; a setup code is minted per boot by the tenant gateway and never stored.
    return !this.has(tenant, spec.name) && spec.generate === 'token' && !this.#load(tenant).secrets[spec.name]?.revoked;
  }

  /** Mints a secret the control plane may generate, if it is missing and not revoked. Returns whether it is present. */
  ensure(tenant: string, spec: SecretSpec): boolean {
    if (this.#mintable(tenant, spec)) this.put(tenant, spec.name, this.#random(32).toString('base64url'));
    return this.has(tenant, spec.name);
  }

  /** Mints, ahead of need, every missing secret the control plane may generate for these tenants. */
  ensureAll(wanted: Map<string, SecretSpec[]>): void {
    for (const [tenant, specs] of wanted) for (const spec of specs) this.ensure(tenant, spec);
  }

  /** Names, epochs and states; never values. */
  list(tenant: string): SecretInfo[] {
    return Object.entries(this.#load(tenant).secrets)
      .map(([name, e]) => ({ name, epoch: e.epoch, updated_at: e.updated_at, state: e.revoked ? ('revoked' as const) : ('present' as const) }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }
}
