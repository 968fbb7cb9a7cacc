import type { ActorKind } from './records.ts';

/**
 * The whole LMDB keyspace, in one place. Keys use lmdb's default ordered-binary encoding: arrays
 * sort element by element, numbers sort numerically, strings by UTF-8 bytes.
 *
 * | named DB              | key                         | value                                   | written by                          |
 * |-----------------------|-----------------------------|-----------------------------------------|-------------------------------------|
 * | `snapshots`           | `[kind, id]`                | StoredSnapshot (v2) or PersistedActor (v1) | putSnapshot(Later), deleteSnapshot |
 * | `snapshot_bases`      | `[kind, id]`                | SnapshotBase: the context fields v2 records leave out | with the record that starts it; deleteSnapshot |
 * | `journal`             | `seq` (number)              | JournalEntry                            | appendJournal, trimJournal          |
 * | `journal_by_instance` | `[instance_id, seq]`        | `null` (index only; the entry is in `journal`) | appendJournal, trimJournal   |
 * | `meta`                | `['meta', key]`             | caller's JSON value, e.g. MetaRecord under `desired_state` | putMeta          |
 * | `meta`                | `['store', 'journal_seq']`  | highest journal seq ever assigned       | every batch that appends (so trimming never lets a seq be reused) |
 * | `secrets`             | `tenant_id`                 | the tenant's secrets (values included)  | putSecrets; read only by src/secrets/secret-store.ts |
 *
 * Values are msgpack (lmdb's default). Nothing else lives in the environment.
 */

/** A key as this store writes it; a subset of lmdb's Key type (keys.ts does not import lmdb). */
export type StoreKey = string | number | (string | number | Uint8Array)[];

export const DB = {
  snapshots: 'snapshots',
  snapshotBases: 'snapshot_bases',
  journal: 'journal',
  journalByInstance: 'journal_by_instance',
  meta: 'meta',
  secrets: 'secrets',
} as const;
export type DbName = (typeof DB)[keyof typeof DB];

/**
 * Options every reader and writer must open the named DBs with. XState snapshots and journal
 * details vary in shape, so msgpack record structures would be declared again and again for
 * them: they are stored as plain msgpack maps (decoded back to objects).
 */
export const DB_OPTIONS: Record<DbName, Record<string, unknown>> = {
  snapshots: { useRecords: false, mapsAsObjects: true },
  snapshot_bases: { useRecords: false, mapsAsObjects: true },
  journal: { useRecords: false, mapsAsObjects: true },
  journal_by_instance: {},
  meta: {},
  secrets: {},
};

/** Named DBs the environment may hold; lmdb's default of 12 is not relied on, and there is room to grow. */
export const MAX_DBS = 16;

/**
 * Upper bound for "every key under this prefix": the separator between array elements is byte 0,
 * and no string element starts with byte 0xff (ordered-binary writes UTF-8, whose lead bytes stop at
 * 0xf4, or an escape byte 27), so `[...prefix, 0xff]` sorts after every `[...prefix, <string>, ...]`.
 * A bound of `'\uffff'` would miss ids that start with a character outside the BMP.
 */
const AFTER_ANY_STRING = Uint8Array.of(0xff);

/** Largest seq a range scan covers. */
const MAX_SEQ = Number.MAX_SAFE_INTEGER;

export interface KeyRange {
  start: StoreKey;
  end: StoreKey;
}

export const snapshotKey = (kind: ActorKind, id: string): StoreKey => [kind, id];
/** Every snapshot of one kind (start inclusive, end exclusive). */
export const snapshotRange = (kind: ActorKind): KeyRange => ({ start: [kind, ''], end: [kind, AFTER_ANY_STRING] });

export const journalKey = (seq: number): StoreKey => seq;
/** Journal entries with seq > afterSeq, in seq order. */
export const journalRange = (afterSeq: number): KeyRange => ({ start: afterSeq + 1, end: MAX_SEQ });

export const journalIndexKey = (instanceId: string, seq: number): StoreKey => [instanceId, seq];
/** One instance's index entries with seq > afterSeq, in seq order. */
export const journalIndexRange = (instanceId: string, afterSeq: number): KeyRange => ({
  start: [instanceId, afterSeq + 1],
  end: [instanceId, MAX_SEQ],
});

export const metaKey = (key: string): StoreKey => ['meta', key];
export const JOURNAL_SEQ_KEY: StoreKey = ['store', 'journal_seq'];

/** Well-known keys for putMeta/getMeta. */
export const META_KEYS = {
  /** MetaRecord: the last desired-state document applied, with its generation. */
  desiredState: 'desired_state',
} as const;
