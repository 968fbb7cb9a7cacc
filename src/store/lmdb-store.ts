import { chmodSync, existsSync } from 'node:fs';
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import type { Clock } from '../common/clock.ts';
import { formatIssues, fromZodError, issue, type Issue } from '../common/issues.ts';
import {
  DB,
  DB_OPTIONS,
  JOURNAL_SEQ_KEY,
  MAX_DBS,
  journalIndexKey,
  journalIndexRange,
  journalKey,
  journalRange,
  metaKey,
  snapshotKey,
  snapshotRange,
  type DbName,
  type KeyRange,
  type StoreKey,
} from './keys.ts';
import {
  JsonValue,
  parseJournalEntry,
  parseNewJournalEntry,
  parsePersistedActor,
  parsePersistedActorEnvelope,
  parseSnapshotBase,
  parseStoredSnapshot,
  type ActorKind,
  type JournalEntry,
  type NewJournalEntry,
  type ParseResult,
  type PersistedActor,
  type SnapshotBase,
  type StoredSnapshot,
} from './records.ts';
import { mergeWithBase, SnapshotBases, unsupportedVersion } from './snapshot-bases.ts';

/**
 * The host's LMDB store: actor snapshots, the event journal and a little metadata. This is the
 * only module that imports lmdb.
 *
 * Writes (putSnapshot, deleteSnapshot, appendJournal, putMeta, trimJournal) return at once and
 * are queued. Everything queued in one event-loop turn is coalesced (the last snapshot per
 * (kind, id) wins) and committed as one all-or-nothing LMDB transaction on the next setImmediate.
 * Commits are ordered, so a crash leaves a prefix of the batches: the journal stays gap-free.
 * A commit is visible to readers and survives a process crash; `flush()` additionally waits for
 * the fsync, for callers that acknowledge durably (an API reply).
 *
 * Reads see committed data only: a snapshot put in this turn is not returned until its batch
 * commits (call `flush()` first for read-your-writes). Every record read is validated; one that
 * fails is reported through `onCorruptRecord` and skipped.
 *
 * Default lmdb sync settings (overlappingSync on Linux, no noSync), msgpack values.
 */

export interface CorruptRecordRef {
  db: DbName;
  key: StoreKey;
}

export interface StoreOptions {
  /** A record produced for putSnapshotLater failed validation at commit; it was not written. */
  onInvalidRecord?: (ref: { kind: ActorKind; id: string }, issues: Issue[]) => void;
  path: string;
  /** Used to measure commit latency. */
  clock: Clock;
  /** A stored record that cannot be decoded or fails validation; it is skipped. */
  onCorruptRecord?: (ref: CorruptRecordRef, issues: Issue[]) => void;
  /**
   * A batch failed to commit (nothing of it was written). The store then writes nothing more and
   * refuses to confirm durability: every later batch fails and every later `flush()` rejects with
   * this error until the store is reopened. Reported once.
   */
  onCommitError?: (error: Error) => void;
}

export interface ReadJournalOptions {
  /** Only this instance's entries (read through the per-instance index). */
  instanceId?: string;
  /** Only entries with seq greater than this (a cursor: the last seq the caller has seen). */
  sinceSeq?: number;
  /** At most this many entries (the oldest first). */
  limit?: number;
}

export interface StoreStats {
  /** putSnapshot calls. */
  snapshotPutsRequested: number;
  /** Snapshot records written to LMDB after per-tick coalescing. */
  snapshotPutsWritten: number;
  snapshotDeletesRequested: number;
  snapshotDeletesWritten: number;
  journalEntriesWritten: number;
  journalEntriesTrimmed: number;
  metaPutsWritten: number;
  batchesCommitted: number;
  batchesFailed: number;
  /** From the batch's setImmediate to its commit (visible, before the fsync), per the injected clock; 0 before the first batch. */
  commitLatencyMs: { last: number; avg: number; max: number };
}

export interface Store {
  /** Queues the actor's snapshot; the last put per (kind, id) in a tick wins. Throws StoreInputError on an invalid record. */
  putSnapshot(record: PersistedActor): void;
  /**
   * Marks an actor's snapshot dirty: `produce` is called once, when the tick's batch commits, and
   * its record validated then. An actor that changes many times in a tick is serialised once.
   * A record that fails validation is reported through `onInvalidRecord` and not written.
   */
  putSnapshotLater(kind: ActorKind, id: string, produce: () => PersistedActor): void;
  /** Queues removal of the snapshot; ordered with puts to the same (kind, id) in the tick. */
  deleteSnapshot(kind: ActorKind, id: string): void;
  getSnapshot(kind: ActorKind, id: string): PersistedActor | undefined;
  /** All committed snapshots of one kind, ordered by id. */
  listSnapshots(kind: ActorKind): PersistedActor[];
  /** Queues a journal entry and returns its seq (monotonic across reopen, gap-free). */
  appendJournal(entry: NewJournalEntry): number;
  /** Committed journal entries ordered by seq. */
  readJournal(options?: ReadJournalOptions): JournalEntry[];
  /**
   * Removes the oldest entries so that only the `keepLast` newest seqs remain (counting entries
   * still queued). Returns how many entries it removes; the removal is queued like any write.
   */
  trimJournal(options: { keepLast: number }): number;
  /** Queues a JSON value under `key` (e.g. META_KEYS.desiredState with a MetaRecord). */
  putMeta(key: string, value: unknown): void;
  getMeta(key: string): unknown;
  /** Queues a tenant's secrets record (values included; see src/secrets/secret-store.ts). */
  putSecrets(tenant: string, value: unknown): void;
  /** A tenant's committed secrets record. */
  getSecrets(tenant: string): unknown;
  /** Queues removal of a meta key. */
  deleteMeta(key: string): void;
  /** Committed meta keys that start with `prefix`, in order. */
  metaKeys(prefix: string): string[];
  /** Commits anything queued now and resolves once all commits so far are flushed to disk. */
  flush(): Promise<void>;
  /** Flushes, then closes the environment (also when the flush fails; it then rejects with that error). Writes after close() throw. */
  close(): Promise<void>;
  stats(): StoreStats;
}

/** A write refused before it was queued, with the problems found. */
export class StoreInputError extends Error {
  override readonly name = 'StoreInputError';
  constructor(
    message: string,
    readonly issues: Issue[],
  ) {
    super(`${message}\n${formatIssues(issues)}`);
  }
}

interface SnapshotOp {
  kind: ActorKind;
  id: string;
  /** null: delete (unless `produce` is set). */
  record: PersistedActor | null;
  /** putSnapshotLater: builds the record at commit. */
  produce?: () => PersistedActor;
}

interface Batch {
  snapshots: Map<string, SnapshotOp>;
  /** In seq order. */
  journal: JournalEntry[];
  meta: Map<string, unknown>;
  secrets: Map<string, unknown>;
  /** Remove journal entries with seq <= this (0: none). */
  trimThrough: number;
  /** Set by apply(): committed entries the trim removed. */
  trimRemoved: number;
}

interface Entry {
  key: Key;
  value?: unknown;
  /** Set when the stored bytes could not be decoded. */
  undecodable?: string;
}

type AnyDb = Database<unknown, Key>;

const errorMessage = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * Entries of a range, in key order. A value that cannot be decoded does not abort the scan: the
 * fast path (one cursor, values decoded as it goes) falls back, from the failing key on, to
 * reading keys and decoding each value on its own.
 */
function* safeEntries(db: AnyDb, range: KeyRange): Generator<Entry> {
  let lastKey: Key | undefined;
  try {
    for (const { key, value } of db.getRange({ start: range.start, end: range.end })) {
      lastKey = key;
      yield { key, value };
    }
    return;
  } catch {
    // fall through to the key-by-key path
  }
  const keys = lastKey === undefined ? db.getKeys({ start: range.start, end: range.end }) : db.getKeys({ start: lastKey, end: range.end, exclusiveStart: true });
  for (const key of keys) {
    let entry: Entry;
    try {
      entry = { key, value: db.get(key) };
    } catch (error) {
      entry = { key, undecodable: errorMessage(error) };
    }
    yield entry;
  }
}

/** Marks a queued meta removal. */
const DELETED = Symbol('deleted');

function emptyBatch(): Batch {
  return { snapshots: new Map(), journal: [], meta: new Map(), secrets: new Map(), trimThrough: 0, trimRemoved: 0 };
}

export function openStore(options: StoreOptions): Store {
  const { clock } = options;
  const root: RootDatabase<unknown, Key> = open({ path: options.path, maxDbs: MAX_DBS });
  const openDb = (name: DbName): AnyDb => root.openDB({ name, ...DB_OPTIONS[name] });
  const snapshots = openDb(DB.snapshots);
  const snapshotBases = openDb(DB.snapshotBases);
  const bases = new SnapshotBases();
  const journal = openDb(DB.journal);
  const journalIndex = openDb(DB.journalByInstance);
  const meta = openDb(DB.meta);
  const secretsDb = openDb(DB.secrets);
  // The environment holds tenant secrets: only its owner may read it.
  for (const file of [options.path, `${options.path}-lock`]) if (existsSync(file)) chmodSync(file, 0o600);

  const stats: StoreStats = {
    snapshotPutsRequested: 0,
    snapshotPutsWritten: 0,
    snapshotDeletesRequested: 0,
    snapshotDeletesWritten: 0,
    journalEntriesWritten: 0,
    journalEntriesTrimmed: 0,
    metaPutsWritten: 0,
    batchesCommitted: 0,
    batchesFailed: 0,
    commitLatencyMs: { last: 0, avg: 0, max: 0 },
  };
  let totalLatency = 0;

  const reportCorrupt = (db: DbName, key: Key, issues: Issue[]): void => {
    options.onCorruptRecord?.({ db, key: key as StoreKey }, issues);
  };
  const undecodable = (message: string): Issue[] => [issue([], 'undecodable', `stored value cannot be decoded: ${message}`)];

  /** get() that reports instead of throwing on bytes that do not decode; `ok: false` then. */
  const safeGet = (db: AnyDb, name: DbName, key: Key): { ok: true; value: unknown } | { ok: false } => {
    try {
      return { ok: true, value: db.get(key) };
    } catch (error) {
      reportCorrupt(name, key, undecodable(errorMessage(error)));
      return { ok: false };
    }
  };

  // --- the journal seq counter survives reopen and trimming ---
  let highestSeq = 0;
  for (const key of journal.getKeys({ start: journalRange(0).end, end: 0, reverse: true, limit: 1 })) {
    if (typeof key === 'number') highestSeq = key;
  }
  const storedSeq = safeGet(meta, DB.meta, JOURNAL_SEQ_KEY);
  if (storedSeq.ok && storedSeq.value !== undefined) {
    if (typeof storedSeq.value === 'number' && Number.isInteger(storedSeq.value) && storedSeq.value >= 0) {
      highestSeq = Math.max(highestSeq, storedSeq.value);
    } else {
      reportCorrupt(DB.meta, JOURNAL_SEQ_KEY, [issue([], 'invalid_type', 'journal seq counter must be a non-negative integer')]);
    }
  }
  let nextSeq = highestSeq + 1;
  /** Highest seq already handed to a trim (committed or queued). */
  let trimmedThrough = 0;

  // --- the per-tick write queue ---
  let pending: Batch | null = null;
  let immediate: ReturnType<typeof setImmediate> | null = null;
  const inFlight = new Set<{ batch: Batch; done: Promise<void> }>();
  let failure: Error | null = null;
  let failureReported = false;
  let closing: Promise<void> | null = null;

  const assertOpen = (): void => {
    if (closing) throw new Error(`store at ${options.path} is closed`);
  };

  const queue = (): Batch => {
    if (!pending) {
      pending = emptyBatch();
      immediate = setImmediate(commitPending);
    }
    return pending;
  };

  const apply = (batch: Batch): void => {
    // After a failed batch nothing more is written: a later batch may name a snapshot base the
    // failed one was to write.
    if (failure) throw failure;
    try {
      applyWrites(batch);
    } catch (error) {
      failure ??= error instanceof Error ? error : new Error(String(error));
      throw error;
    }
  };

  const applyWrites = (batch: Batch): void => {
    for (const [key, op] of batch.snapshots) {
      const dbKey = snapshotKey(op.kind, op.id);
      if (op.record) {
        const split = bases.split(key, op.record);
        snapshots.put(dbKey, split.record);
        if (split.base) snapshotBases.put(dbKey, split.base);
      } else {
        snapshots.remove(dbKey);
        snapshotBases.remove(dbKey);
        bases.deleted(key);
      }
    }
    for (const entry of batch.journal) {
      if (entry.seq <= batch.trimThrough) continue;
      journal.put(journalKey(entry.seq), entry);
      journalIndex.put(journalIndexKey(entry.instance_id, entry.seq), null);
    }
    const last = batch.journal.at(-1);
    if (last) meta.put(JOURNAL_SEQ_KEY, last.seq);
    for (const [tenant, value] of batch.secrets) secretsDb.put(tenant, value);
    for (const [key, value] of batch.meta) {
      if (value === DELETED) meta.remove(metaKey(key));
      else meta.put(metaKey(key), value);
    }
    if (batch.trimThrough > 0) {
      // Collect first: removing under an open cursor is not safe.
      const seqs = [...journal.getKeys({ start: 0, end: batch.trimThrough + 1 })];
      batch.trimRemoved = seqs.length;
      for (const seq of seqs) {
        const stored = safeGet(journal, DB.journal, seq);
        journal.remove(seq);
        const instanceId = stored.ok ? (stored.value as { instance_id?: unknown } | undefined)?.instance_id : undefined;
        if (typeof instanceId === 'string' && typeof seq === 'number') journalIndex.remove(journalIndexKey(instanceId, seq));
      }
    }
  };

  const counts = (batch: Batch) => {
    let puts = 0;
    for (const op of batch.snapshots.values()) if (op.record) puts++;
    const journalWritten = batch.journal.filter((e) => e.seq > batch.trimThrough).length;
    return { puts, deletes: batch.snapshots.size - puts, journalWritten, journalSkipped: batch.journal.length - journalWritten };
  };

  function commitPending(): void {
    if (immediate) {
      clearImmediate(immediate);
      immediate = null;
    }
    const batch = pending;
    if (!batch) return;
    pending = null;
    const started = clock.now();
    // Serialise what was only marked dirty, once per actor, now that the tick is over.
    for (const [key, op] of batch.snapshots) {
      if (!op.produce) continue;
      const parsed = parsePersistedActorEnvelope(op.produce());
      if (parsed.ok) batch.snapshots.set(key, { kind: op.kind, id: op.id, record: parsed.value });
      else {
        batch.snapshots.delete(key);
        options.onInvalidRecord?.({ kind: op.kind, id: op.id }, parsed.issues);
      }
    }
    const flight = { batch, done: Promise.resolve() };
    flight.done = root
      // childTransaction makes the batch all-or-nothing: a throw in an async transaction
      // callback would otherwise still commit the puts made before it.
      .transaction(() => {
        void root.childTransaction(() => apply(batch));
      })
      .then(
        () => {
          const latency = clock.now() - started;
          const c = counts(batch);
          stats.snapshotPutsWritten += c.puts;
          stats.snapshotDeletesWritten += c.deletes;
          stats.journalEntriesWritten += c.journalWritten;
          stats.journalEntriesTrimmed += c.journalSkipped + batch.trimRemoved;
          stats.metaPutsWritten += batch.meta.size;
          stats.batchesCommitted++;
          totalLatency += latency;
          stats.commitLatencyMs = {
            last: latency,
            avg: totalLatency / stats.batchesCommitted,
            max: Math.max(stats.commitLatencyMs.max, latency),
          };
        },
        (error: unknown) => {
          const err = error instanceof Error ? error : new Error(String(error));
          failure ??= err;
          stats.batchesFailed++;
          // Reported once: the batches refused after it fail with the same error.
          if (!failureReported) options.onCommitError?.(err);
          failureReported = true;
        },
      )
      .finally(() => {
        inFlight.delete(flight);
      });
    inFlight.add(flight);
  }

  const unsettledJournal = (): JournalEntry[][] => {
    const lists = [...inFlight].map((f) => f.batch.journal);
    if (pending) lists.push(pending.journal);
    return lists;
  };

  const store: Store = {
    putSnapshot(record) {
      assertOpen();
      const parsed = parsePersistedActor(record);
      if (!parsed.ok) throw new StoreInputError(`invalid snapshot record for ${String(record?.kind)}/${String(record?.id)}`, parsed.issues);
      stats.snapshotPutsRequested++;
      const { kind, id } = parsed.value;
      queue().snapshots.set(`${kind}\u0000${id}`, { kind, id, record: parsed.value });
    },

    putSnapshotLater(kind, id, produce) {
      assertOpen();
      stats.snapshotPutsRequested++;
      queue().snapshots.set(`${kind}\u0000${id}`, { kind, id, record: null, produce });
    },

    deleteSnapshot(kind, id) {
      assertOpen();
      stats.snapshotDeletesRequested++;
      queue().snapshots.set(`${kind}\u0000${id}`, { kind, id, record: null });
    },

    getSnapshot(kind, id) {
      const key = snapshotKey(kind, id);
      const stored = safeGet(snapshots, DB.snapshots, key);
      if (!stored.ok || stored.value === undefined) return undefined;
      return validSnapshot(key, stored.value, kind, id);
    },

    listSnapshots(kind) {
      const out: PersistedActor[] = [];
      for (const entry of safeEntries(snapshots, snapshotRange(kind))) {
        if (entry.undecodable !== undefined) {
          reportCorrupt(DB.snapshots, entry.key, undecodable(entry.undecodable));
          continue;
        }
        const id = Array.isArray(entry.key) ? entry.key[1] : undefined;
        const record = validSnapshot(entry.key, entry.value, kind, typeof id === 'string' ? id : undefined);
        if (record) out.push(record);
      }
      return out;
    },

    appendJournal(entry) {
      assertOpen();
      const parsed = parseNewJournalEntry(entry);
      if (!parsed.ok) throw new StoreInputError(`invalid journal entry for ${String(entry?.instance_id)}`, parsed.issues);
      const seq = nextSeq++;
      queue().journal.push({ seq, ...parsed.value });
      return seq;
    },

    readJournal(opts = {}) {
      const after = opts.sinceSeq ?? 0;
      const limit = opts.limit ?? Infinity;
      if (!Number.isInteger(after) || after < 0) throw new RangeError('sinceSeq must be a non-negative integer');
      if (limit !== Infinity && (!Number.isInteger(limit) || limit < 1)) throw new RangeError('limit must be a positive integer');
      const out: JournalEntry[] = [];
      if (opts.instanceId === undefined) {
        for (const entry of safeEntries(journal, journalRange(after))) {
          if (out.length >= limit) break;
          if (entry.undecodable !== undefined) {
            reportCorrupt(DB.journal, entry.key, undecodable(entry.undecodable));
            continue;
          }
          const valid = validJournalEntry(entry.key, entry.value, undefined);
          if (valid) out.push(valid);
        }
        return out;
      }
      const range = journalIndexRange(opts.instanceId, after);
      for (const key of journalIndex.getKeys({ start: range.start, end: range.end })) {
        if (out.length >= limit) break;
        const seq = Array.isArray(key) ? key[1] : undefined;
        if (typeof seq !== 'number') continue;
        const stored = safeGet(journal, DB.journal, journalKey(seq));
        // A missing entry is one trimmed under a reader, not damage.
        if (!stored.ok || stored.value === undefined) continue;
        const valid = validJournalEntry(seq, stored.value, opts.instanceId);
        if (valid) out.push(valid);
      }
      return out;
    },

    trimJournal({ keepLast }) {
      assertOpen();
      if (!Number.isInteger(keepLast) || keepLast < 0) throw new RangeError('keepLast must be a non-negative integer');
      const cutoff = nextSeq - 1 - keepLast;
      if (cutoff <= trimmedThrough) return 0;
      const unsettled = unsettledJournal();
      // Entries not yet committed are counted from memory; committed ones (all below the
      // oldest unsettled seq, since batches commit in order) from the database.
      let lowestUnsettled = Infinity;
      let removing = 0;
      for (const list of unsettled) {
        for (const e of list) {
          lowestUnsettled = Math.min(lowestUnsettled, e.seq);
          if (e.seq > trimmedThrough && e.seq <= cutoff) removing++;
        }
      }
      const committedEnd = Math.min(cutoff, lowestUnsettled - 1);
      if (committedEnd > trimmedThrough) removing += journal.getKeysCount({ start: trimmedThrough + 1, end: committedEnd + 1 });
      trimmedThrough = cutoff;
      queue().trimThrough = cutoff;
      return removing;
    },

    putMeta(key, value) {
      assertOpen();
      if (typeof key !== 'string' || key.length === 0) throw new RangeError('meta key must be a non-empty string');
      const checked = JsonValue.safeParse(value);
      if (!checked.success) throw new StoreInputError(`invalid meta value for ${key}`, fromZodError(checked.error));
      queue().meta.set(key, value);
    },

    getMeta(key) {
      const stored = safeGet(meta, DB.meta, metaKey(key));
      return stored.ok ? stored.value : undefined;
    },

    putSecrets(tenant, value) {
      assertOpen();
      queue().secrets.set(tenant, value);
    },

    getSecrets(tenant) {
      const stored = safeGet(secretsDb, DB.secrets, tenant);
      return stored.ok ? stored.value : undefined;
    },

    deleteMeta(key) {
      assertOpen();
      queue().meta.set(key, DELETED);
    },

    metaKeys(prefix) {
      const keys: string[] = [];
      for (const key of meta.getKeys({ start: metaKey(prefix), end: metaKey(`${prefix}\uffff`) })) {
        const name = Array.isArray(key) ? key[1] : undefined;
        if (typeof name === 'string' && name.startsWith(prefix)) keys.push(name);
      }
      return keys;
    },

    async flush() {
      commitPending();
      await Promise.all([...inFlight].map((f) => f.done));
      if (failure) throw failure;
      await root.flushed;
    },

    close() {
      closing ??= (async () => {
        try {
          await store.flush();
        } finally {
          await root.close();
        }
      })();
      return closing;
    },

    stats() {
      return { ...stats, commitLatencyMs: { ...stats.commitLatencyMs } };
    },
  };

  /** The PersistedActor a stored snapshot stands for: a version 1 record as is, a version 2 one merged with its base. */
  function readStored(key: Key, value: unknown): ParseResult<PersistedActor> {
    const unsupported = unsupportedVersion(value);
    if (unsupported) return { ok: false, issues: unsupported };
    if ((value as { schema_version: number }).schema_version === 1) return parsePersistedActor(value);
    const record = parseStoredSnapshot(value);
    if (!record.ok) return record;
    const stored = safeGet(snapshotBases, DB.snapshotBases, key);
    let base: SnapshotBase | undefined;
    if (stored.ok && stored.value !== undefined) {
      const parsedBase = parseSnapshotBase(stored.value);
      if (!parsedBase.ok) {
        reportCorrupt(DB.snapshotBases, key, parsedBase.issues);
        return { ok: false, issues: [issue(['base'], 'base_invalid', `the base of ${record.value.kind}/${record.value.id} is damaged (reported for ${DB.snapshotBases})`)] };
      }
      base = parsedBase.value;
    }
    const merged = mergeWithBase(value as StoredSnapshot, base);
    // Remembered for the actor's next record, if it is stored where it belongs (else validSnapshot reports it).
    if (merged.ok && base && Array.isArray(key) && key[0] === base.kind && key[1] === base.id) bases.read(SnapshotBases.key(base.kind, base.id), base);
    return merged;
  }

  function validSnapshot(key: Key, value: unknown, kind: ActorKind, id: string | undefined): PersistedActor | undefined {
    const parsed = readStored(key, value);
    if (!parsed.ok) {
      reportCorrupt(DB.snapshots, key, parsed.issues);
      return undefined;
    }
    if (parsed.value.kind !== kind || parsed.value.id !== id) {
      reportCorrupt(DB.snapshots, key, [
        issue([], 'key_mismatch', `record is ${parsed.value.kind}/${parsed.value.id} but is stored under ${kind}/${String(id)}`),
      ]);
      return undefined;
    }
    return parsed.value;
  }

  function validJournalEntry(key: Key, value: unknown, instanceId: string | undefined): JournalEntry | undefined {
    const parsed = parseJournalEntry(value);
    if (!parsed.ok) {
      reportCorrupt(DB.journal, key, parsed.issues);
      return undefined;
    }
    if (parsed.value.seq !== key || (instanceId !== undefined && parsed.value.instance_id !== instanceId)) {
      reportCorrupt(DB.journal, key, [
        issue([], 'key_mismatch', `entry ${parsed.value.seq} of ${parsed.value.instance_id} is stored under seq ${String(key)}${instanceId === undefined ? '' : ` for ${instanceId}`}`),
      ]);
      return undefined;
    }
    return parsed.value;
  }

  return store;
}
