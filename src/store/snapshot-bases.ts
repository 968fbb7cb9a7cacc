import { issue, type Issue } from '../common/issues.ts';
import { READABLE_SNAPSHOT_VERSIONS, SNAPSHOT_SCHEMA_VERSION, type ActorKind, type PersistedActor, type SnapshotBase, type StoredSnapshot } from './records.ts';

/**
 * The split of a snapshot into a base and a record (see StoredSnapshot in records.ts): which
 * context fields a record carries, when a new base is due, and the merge back on read.
 *
 * The store remembers, per actor, the base last written or read. A context field is left out of
 * the record when its value is the very value the base holds (`===`): XState contexts are
 * immutable, and `assign` keeps the values of fields it does not touch, so unchanged fields are
 * the same values from one snapshot to the next. A field replaced by an equal copy is written
 * again, which is merely wasted bytes; a field mutated in place would break XState's own change
 * detection first.
 */

type Context = Record<string, unknown>;

interface KnownBase {
  base: number;
  context: Context;
  /**
   * The base's fields and their values, in parallel arrays (compared by index, with no lookups by
   * name in the base); built at the actor's first record, so a restore does not pay for them.
   */
  fields?: string[];
  values?: unknown[];
}

/** A record would carry more than this share of the base's fields: write a new base instead (a few transitions after an actor starts, the fields its start sets have all changed once; rebasing then keeps every later record small). */
const REBASE_SHARE = 0.25;

const isPlainObject = (v: unknown): v is Context => v !== null && typeof v === 'object' && !Array.isArray(v);

export interface SplitRecord {
  /** What goes to the snapshots DB. */
  record: StoredSnapshot | PersistedActor;
  /** A new base to write in the same transaction, if one is due. */
  base?: SnapshotBase;
}

export class SnapshotBases {
  /** By `kind\0id`. null: the actor has no base on disk once the queued writes commit (deleted). */
  readonly #known = new Map<string, KnownBase | null>();

  static key(kind: ActorKind, id: string): string {
    return `${kind}\u0000${id}`;
  }

  /**
   * The stored form of `record`, against the actor's known base. Called in commit order (inside
   * the batch's transaction), so a base it starts is what the next batch's records refer to.
   */
  split(key: string, record: PersistedActor): SplitRecord {
    const snapshot = record.snapshot as Context;
    const context = isPlainObject(snapshot) ? snapshot.context : undefined;
    // Nothing to share without a context object: the whole record, as version 1 wrote it.
    if (!isPlainObject(context)) return { record };
    const previous = this.#known.get(key);
    if (previous) {
      const fields = (previous.fields ??= Object.keys(previous.context));
      const values = (previous.values ??= fields.map((f) => previous.context[f]));
      // Same fields (none dropped, none added: merging would bring a dropped one back) ...
      let sameFields = Object.keys(context).length === fields.length;
      let delta: Context | undefined;
      let changed = 0;
      for (let i = 0; sameFields && i < fields.length; i++) {
        const field = fields[i]!;
        const value = context[field];
        if (value === values[i]) continue;
        if (value === undefined && !Object.hasOwn(context, field)) sameFields = false;
        (delta ??= {})[field] = value;
        changed++;
      }
      // ... and most of them unchanged, or the record is about as big as a new base.
      if (sameFields && changed <= fields.length * REBASE_SHARE) return { record: this.#stored(record, snapshot, delta ?? {}, previous.base) };
    }
    const base = (previous?.base ?? 0) + 1;
    this.#known.set(key, { base, context });
    return {
      record: this.#stored(record, snapshot, {}, base),
      base: { schema_version: SNAPSHOT_SCHEMA_VERSION, kind: record.kind, id: record.id, base, context },
    };
  }

  #stored(record: PersistedActor, snapshot: Context, context: Context, base: number): StoredSnapshot {
    const { kind, id, tenant_id, chart_version, manifest_hash, updated_at } = record;
    return { schema_version: SNAPSHOT_SCHEMA_VERSION, kind, id, tenant_id, chart_version, manifest_hash, base, snapshot: { ...snapshot, context }, updated_at };
  }

  /** The actor's records and base are being deleted. */
  deleted(key: string): void {
    this.#known.set(key, null);
  }

  /**
   * A base read from disk. Only remembered when nothing is known yet: a base the store wrote, or
   * a deletion, may still be on its way to disk, and what is on disk is older then.
   */
  read(key: string, base: SnapshotBase): void {
    if (!this.#known.has(key)) this.#known.set(key, { base: base.base, context: base.context });
  }
}

/** Refuses a stored snapshot whose schema_version this store does not read. */
export function unsupportedVersion(value: unknown): Issue[] | undefined {
  const version = isPlainObject(value) ? value.schema_version : undefined;
  if ((READABLE_SNAPSHOT_VERSIONS as readonly unknown[]).includes(version)) return undefined;
  return [
    issue(
      ['schema_version'],
      'unsupported_version',
      `snapshot record schema_version ${JSON.stringify(version)} is not one this store reads (${READABLE_SNAPSHOT_VERSIONS.join(', ')}); it was written by another version of mvm-actors: run that version, or delete the record to start the actor over`,
    ),
  ];
}

/**
 * The PersistedActor a version 2 record and its base stand for; issues if they do not belong
 * together. `record` is the record as decoded (already validated), so its snapshot keeps the
 * order it was written in.
 */
export function mergeWithBase(record: StoredSnapshot, base: SnapshotBase | undefined): { ok: true; value: PersistedActor } | { ok: false; issues: Issue[] } {
  if (!base) return { ok: false, issues: [issue(['base'], 'base_missing', `record of ${record.kind}/${record.id} needs base ${record.base}, and no base is stored for it`)] };
  if (base.base !== record.base || base.kind !== record.kind || base.id !== record.id) {
    return { ok: false, issues: [issue(['base'], 'base_mismatch', `record of ${record.kind}/${record.id} needs base ${record.base}, but the stored base is ${base.kind}/${base.id} number ${base.base}`)] };
  }
  // Fields in the order version 1 stored them; the snapshot keeps its own order, context in place.
  const { kind, id, tenant_id, chart_version, manifest_hash, snapshot, updated_at } = record;
  // Contexts are immutable: with nothing changed since the base, the base's object is the context.
  let context = base.context;
  for (const _ in snapshot.context) {
    context = Object.assign({}, base.context, snapshot.context);
    break;
  }
  return { ok: true, value: { schema_version: 1, kind, id, tenant_id, chart_version, manifest_hash, snapshot: { ...snapshot, context }, updated_at } };
}
