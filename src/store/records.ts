import { z } from 'zod';
import { fromZodError, type Issue } from '../common/issues.ts';

/**
 * Records the store persists, as zod schemas. Every record is validated when it is queued (so a
 * bad write throws at the caller, not in a later batch) and again when it is read back (so a
 * damaged or foreign record is reported and skipped instead of reaching an actor).
 */

/** Where a value is not plain JSON, and why; undefined when it is. */
export interface JsonProblem {
  segments: (string | number)[];
  message: string;
}

/**
 * Checks that a value is plain JSON data: null, booleans, finite numbers, strings, arrays and
 * plain objects. `undefined` is allowed as an object property (JSON drops it; XState snapshots
 * carry `output: undefined`). Functions, symbols, bigints, class instances (Date, Map, Set) and
 * cycles are refused: msgpack would silently turn several of them into something else, and a
 * symbol cannot be encoded at all, which would fail a whole batch.
 */
export function findJsonProblem(value: unknown): JsonProblem | undefined {
  const ancestors = new Set<object>();
  const segments: (string | number)[] = [];
  const visit = (v: unknown): string | undefined => {
    if (v === null) return undefined;
    switch (typeof v) {
      case 'string':
      case 'boolean':
        return undefined;
      case 'number':
        return Number.isFinite(v) ? undefined : `${String(v)} is not a JSON number`;
      case 'object':
        break;
      default:
        return `a ${typeof v} is not JSON data`;
    }
    const obj = v as object;
    if (ancestors.has(obj)) return 'circular reference';
    if (Array.isArray(obj)) {
      ancestors.add(obj);
      for (let i = 0; i < obj.length; i++) {
        segments.push(i);
        const problem = obj[i] === undefined ? 'undefined is not allowed in an array' : visit(obj[i]);
        if (problem) return problem;
        segments.pop();
      }
      ancestors.delete(obj);
      return undefined;
    }
    const proto = Object.getPrototypeOf(obj) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      const name = (obj.constructor as { name?: string } | undefined)?.name ?? 'object';
      return `a ${name} is not plain JSON data (use a plain object, array or string)`;
    }
    ancestors.add(obj);
    for (const key of Object.keys(obj)) {
      const child = (obj as Record<string, unknown>)[key];
      if (child === undefined) continue;
      segments.push(key);
      const problem = visit(child);
      if (problem) return problem;
      segments.pop();
    }
    ancestors.delete(obj);
    return undefined;
  };
  const message = visit(value);
  return message === undefined ? undefined : { segments: [...segments], message };
}

/** Any JSON value (see findJsonProblem); `undefined` itself is refused, so the field is required. */
export const JsonValue = z.unknown().superRefine((value, ctx) => {
  if (value === undefined) {
    ctx.addIssue({ code: 'custom', message: 'value is required' });
    return;
  }
  const problem = findJsonProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem.message, path: problem.segments });
});

const Millis = z.number().finite().describe('Milliseconds since the epoch, from the injected clock.');

export const ACTOR_KINDS = ['instance', 'tenant', 'host'] as const;
export const ActorKind = z.enum(ACTOR_KINDS);
export type ActorKind = z.infer<typeof ActorKind>;

/** One actor's persisted XState snapshot, keyed by (kind, id). */
export const PersistedActor = z
  .object({
    schema_version: z.literal(1),
    kind: ActorKind,
    id: z.string().min(1),
    tenant_id: z.string().min(1).nullable().describe('Owning tenant; null for the host actor.'),
    chart_version: z.string().min(1).describe('Version of the statechart that produced the snapshot; a mismatch means migrate or discard.'),
    manifest_hash: z.string().min(1).nullable().describe('Role manifest the actor was built from; null where no manifest applies.'),
    snapshot: JsonValue.describe('The XState persisted snapshot (actor.getPersistedSnapshot()), plain JSON.'),
    updated_at: Millis,
  })
  .strict();
export type PersistedActor = z.infer<typeof PersistedActor>;

/**
 * How a snapshot is stored since schema_version 2: split in two. Most of an actor's context
 * (identity, network, revision, manifest hashes) does not change from one transition to the
 * next, yet encoding it is most of the cost of persisting a transition. So each actor has a
 * **base** (`snapshot_bases` DB: a full copy of its context at some point, numbered) and its
 * **snapshot record** holds the XState snapshot with only the context fields that differ from
 * that base, naming the base's number. A new base is written, in the same transaction as the
 * record, whenever the record would otherwise repeat most of the context. Readers merge the two
 * back into a PersistedActor; the split never shows outside the store.
 *
 * schema_version 1 records (a whole PersistedActor, written before the split) are still read,
 * and are rewritten as version 2 the next time their actor changes. Any other version is refused
 * with an `unsupported_version` issue.
 */
export const SNAPSHOT_SCHEMA_VERSION = 2;
export const READABLE_SNAPSHOT_VERSIONS = [1, 2] as const;

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
/** A JSON object, checked in one walk (one JsonValue per field would cost restores several times more). */
const JsonObject = JsonValue.refine(isObject, 'must be an object').transform((v) => v as Record<string, unknown>);

/** The snapshot record as stored in version 2: the XState snapshot with a partial context. */
export const StoredSnapshot = PersistedActor.extend({
  schema_version: z.literal(SNAPSHOT_SCHEMA_VERSION),
  base: z.number().int().min(1).describe('Number of the base (snapshot_bases) this record completes.'),
  snapshot: JsonValue.refine((v) => isObject(v) && isObject(v.context), 'snapshot must be an object whose context is an object (the fields that differ from the base)').transform(
    (v) => v as { context: Record<string, unknown>; [field: string]: unknown },
  ),
}).strict();
export type StoredSnapshot = z.infer<typeof StoredSnapshot>;

/** An actor's base: the context fields its snapshot records leave out. */
export const SnapshotBase = z
  .object({
    schema_version: z.literal(SNAPSHOT_SCHEMA_VERSION),
    kind: ActorKind,
    id: z.string().min(1),
    base: z.number().int().min(1),
    context: JsonObject,
  })
  .strict();
export type SnapshotBase = z.infer<typeof SnapshotBase>;

export const JOURNAL_KINDS = ['transition', 'refusal', 'deferral', 'command', 'observation', 'error'] as const;
export const JournalKind = z.enum(JOURNAL_KINDS);
export type JournalKind = z.infer<typeof JournalKind>;

/** One line of the per-host event journal. `seq` is assigned by the store, gap-free from 1. */
export const JournalEntry = z
  .object({
    seq: z.number().int().min(1),
    at: Millis,
    instance_id: z.string().min(1),
    tenant_id: z.string().min(1),
    kind: JournalKind,
    from: z.string().nullable(),
    to: z.string().nullable(),
    event: z.string().min(1),
    detail: z.record(z.string(), JsonValue.optional()),
  })
  .strict();
export type JournalEntry = z.infer<typeof JournalEntry>;

/** What callers hand to appendJournal: everything but the seq. */
export const NewJournalEntry = JournalEntry.omit({ seq: true });
export type NewJournalEntry = z.infer<typeof NewJournalEntry>;

/** The last desired-state document the host applied, stored with putMeta (see META_KEYS). */
export const MetaRecord = z
  .object({
    generation: z.number().int().min(0),
    applied_at: Millis,
    document: JsonValue,
  })
  .strict();
export type MetaRecord = z.infer<typeof MetaRecord>;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

function parseWith<T>(schema: z.ZodType<T>, value: unknown): ParseResult<T> {
  const result = schema.safeParse(value);
  return result.success ? { ok: true, value: result.data } : { ok: false, issues: fromZodError(result.error) };
}

export const parsePersistedActor = (value: unknown): ParseResult<PersistedActor> => parseWith(PersistedActor, value);
/**
 * The record's fields, with the snapshot itself taken as produced: for snapshots the store asks
 * the actor for at commit (`getPersistedSnapshot()`, plain data by XState's contract), where a
 * deep walk of every snapshot on the hot path would cost more than writing it. Reads still
 * validate everything.
 */
const PersistedActorEnvelope = PersistedActor.extend({ snapshot: z.unknown().refine((v) => v !== undefined && v !== null && typeof v === 'object', 'snapshot must be an object') });
export const parsePersistedActorEnvelope = (value: unknown): ParseResult<PersistedActor> => parseWith(PersistedActorEnvelope, value) as ParseResult<PersistedActor>;
export const parseStoredSnapshot = (value: unknown): ParseResult<StoredSnapshot> => parseWith(StoredSnapshot, value);
export const parseSnapshotBase = (value: unknown): ParseResult<SnapshotBase> => parseWith(SnapshotBase, value);
export const parseJournalEntry = (value: unknown): ParseResult<JournalEntry> => parseWith(JournalEntry, value);
export const parseNewJournalEntry = (value: unknown): ParseResult<NewJournalEntry> => parseWith(NewJournalEntry, value);
/** Reads a MetaRecord back from `store.getMeta(key)`; undefined input (never written) is not ok either. */
export const parseMetaRecord = (value: unknown): ParseResult<MetaRecord> => parseWith(MetaRecord, value);
