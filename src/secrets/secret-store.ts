import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../common/clock.ts';
import { SecretName, TenantId } from '../schemas/ids.ts';
import type { SecretSpec } from '../schemas/role-manifest.ts';

/**
 * Per-tenant named secrets, on disk with mode 0600 under a 0700 directory, versioned by a
 * per-tenant epoch that rises with every change. Values live only here and in the secrets
 * drives computed from them: never in logs, the journal, API replies or actor snapshots (the
 * rest of the runtime sees names and epochs only).
 *
 *   <dir>/<tenant>/index.json        { "epoch": 3, "secrets": { "<name>": { "epoch": 3, "updated_at": 1764000000000, "revoked": false } } }
 *   <dir>/<tenant>/values/<name>     the value, mode 0600
 */
export interface SecretInfo {
  name: string;
  epoch: number;
  updated_at: number;
  /** Present (usable on a secrets drive) or revoked (removed, and not minted again until put). */
  state: 'present' | 'revoked';
}

interface TenantIndex {
  /** Rises with every put, delete and revoke. */
  epoch: number;
  secrets: Record<string, { epoch: number; updated_at: number; revoked: boolean }>;
}

export class SecretStore {
  readonly #dir: string;
  readonly #clock: Clock;
  readonly #random: (bytes: number) => Buffer;
  readonly #indexes = new Map<string, TenantIndex>();
  readonly #values = new Map<string, Map<string, string>>();

  constructor(dir: string, options: { clock: Clock; random?: (bytes: number) => Buffer }) {
    this.#dir = dir;
    this.#clock = options.clock;
    this.#random = options.random ?? randomBytes;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }

  #tenantDir(tenant: string): string {
    TenantId.parse(tenant);
    return path.join(this.#dir, tenant);
  }

  #index(tenant: string): TenantIndex {
    let index = this.#indexes.get(tenant);
    if (!index) {
      const file = path.join(this.#tenantDir(tenant), 'index.json');
      index = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as TenantIndex) : { epoch: 0, secrets: {} };
      this.#indexes.set(tenant, index);
      const values = new Map<string, string>();
      const valuesDir = path.join(this.#tenantDir(tenant), 'values');
      if (existsSync(valuesDir)) for (const name of readdirSync(valuesDir)) if (index.secrets[name] && !index.secrets[name].revoked) values.set(name, readFileSync(path.join(valuesDir, name), 'utf8'));
      this.#values.set(tenant, values);
    }
    return index;
  }

  #writeAtomically(file: string, content: string): void {
    const temporary = `${file}.${process.pid}.tmp`;
    writeFileSync(temporary, content, { mode: 0o600 });
    renameSync(temporary, file);
  }

  #save(tenant: string, index: TenantIndex): void {
    const dir = this.#tenantDir(tenant);
    mkdirSync(path.join(dir, 'values'), { recursive: true, mode: 0o700 });
    this.#writeAtomically(path.join(dir, 'index.json'), `${JSON.stringify(index, null, 2)}\n`);
  }

  /** The tenant's secrets epoch: the highest epoch of any change, 0 before the first. */
  epoch(tenant: string): number {
    return this.#index(tenant).epoch;
  }

  /** Stores a value; returns the tenant's new epoch. */
  put(tenant: string, name: string, value: string): number {
    SecretName.parse(name);
    const index = this.#index(tenant);
    const epoch = ++index.epoch;
    mkdirSync(path.join(this.#tenantDir(tenant), 'values'), { recursive: true, mode: 0o700 });
    this.#writeAtomically(path.join(this.#tenantDir(tenant), 'values', name), value);
    index.secrets[name] = { epoch, updated_at: this.#clock.now(), revoked: false };
    this.#values.get(tenant)!.set(name, value);
    this.#save(tenant, index);
    return epoch;
  }

  /** Removes a value; a minted secret is minted again on next need. Returns whether it existed. */
  delete(tenant: string, name: string): boolean {
    return this.#remove(tenant, name, false);
  }

  /** Removes a value and keeps it from being minted again until an operator puts a new one. */
  revoke(tenant: string, name: string): boolean {
    return this.#remove(tenant, name, true);
  }

  #remove(tenant: string, name: string, revoked: boolean): boolean {
    SecretName.parse(name);
    const index = this.#index(tenant);
    const existed = this.#values.get(tenant)!.delete(name);
    rmSync(path.join(this.#tenantDir(tenant), 'values', name), { force: true });
    if (!existed && !revoked) return false;
    const epoch = ++index.epoch;
    if (revoked) index.secrets[name] = { epoch, updated_at: this.#clock.now(), revoked: true };
    else delete index.secrets[name];
    this.#save(tenant, index);
    return existed;
  }

  /** The value, for building a secrets drive only. */
  reveal(tenant: string, name: string): string | undefined {
    this.#index(tenant);
    return this.#values.get(tenant)!.get(name);
  }

  has(tenant: string, name: string): boolean {
    return this.reveal(tenant, name) !== undefined;
  }

  /** Mints a secret the control plane may generate, if it is missing and not revoked. Returns whether it is present. */
  ensure(tenant: string, spec: SecretSpec): boolean {
    if (this.has(tenant, spec.name)) return true;
    if (spec.generate === null || this.#index(tenant).secrets[spec.name]?.revoked) return false;
    this.put(tenant, spec.name, this.#random(32).toString('base64url'));
    return true;
  }

  /** Names, epochs and states; never values. */
  list(tenant: string): SecretInfo[] {
    return Object.entries(this.#index(tenant).secrets)
      .map(([name, e]) => ({ name, epoch: e.epoch, updated_at: e.updated_at, state: e.revoked ? ('revoked' as const) : ('present' as const) }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }
}
