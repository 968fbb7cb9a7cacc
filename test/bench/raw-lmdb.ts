import { open, type Key } from 'lmdb';
import { systemClock } from '../../src/common/clock.ts';
import { DB, DB_OPTIONS, MAX_DBS, journalRange, snapshotRange } from '../../src/store/keys.ts';
import { openStore } from '../../src/store/lmdb-store.ts';

/**
 * LMDB measured directly: the size of what the host really persisted, and the raw batched put
 * rate of whole instance snapshot records (the yardstick for the store's persisted-transition
 * rate: what putting each changed actor's whole snapshot would cost, with no host, actor or
 * store code around it).
 */

export interface PersistedSizes {
  instanceSnapshots: number;
  /** Encoded (msgpack, as stored) bytes of one instance snapshot record: since schema 2, the part that changes. */
  snapshotBytes: { avg: number; min: number; max: number };
  /** Encoded bytes of one instance's snapshot base (the context fields its records leave out). */
  baseBytes: { avg: number; min: number; max: number };
  journalEntries: number;
  journalEntryBytes: { avg: number; min: number; max: number };
  /**
   * A whole instance snapshot record (the PersistedActor the store returns: record and base merged,
   * what a store writing whole snapshots would put per transition), of the instance whose stored
   * record is closest to the average size; the raw test replays it.
   */
  sample: Record<string, unknown>;
}

function summarise(sizes: number[]): { avg: number; min: number; max: number } {
  if (sizes.length === 0) return { avg: 0, min: 0, max: 0 };
  let sum = 0;
  let min = Infinity;
  let max = 0;
  for (const s of sizes) {
    sum += s;
    if (s < min) min = s;
    if (s > max) max = s;
  }
  return { avg: sum / sizes.length, min, max };
}

/** Reads a closed host's store (`<dataDir>/state.lmdb`): sizes directly from LMDB, the sample through the Store. */
export async function readPersistedSizes(storePath: string): Promise<PersistedSizes> {
  const root = open<unknown, Key>({ path: storePath, maxDbs: MAX_DBS });
  let sampleId: string;
  let measured: Omit<PersistedSizes, 'sample'>;
  try {
    const snapshots = root.openDB<unknown, Key>({ name: DB.snapshots, encoding: 'binary' });
    const bases = root.openDB<unknown, Key>({ name: DB.snapshotBases, encoding: 'binary' });
    const journal = root.openDB<unknown, Key>({ name: DB.journal, encoding: 'binary' });
    const range = snapshotRange('instance');
    const sizes: number[] = [];
    const baseSizes: number[] = [];
    const ids: string[] = [];
    for (const key of snapshots.getKeys({ start: range.start, end: range.end })) {
      const bytes = snapshots.getBinary(key);
      if (!bytes || !Array.isArray(key)) continue;
      sizes.push(bytes.length);
      ids.push(String(key[1]));
      const base = bases.getBinary(key);
      if (base) baseSizes.push(base.length);
    }
    if (ids.length === 0) throw new Error(`no instance snapshots in ${storePath}`);
    const snapshotBytes = summarise(sizes);
    // The record closest to the average size.
    let best = 0;
    for (let i = 1; i < sizes.length; i++) if (Math.abs(sizes[i]! - snapshotBytes.avg) < Math.abs(sizes[best]! - snapshotBytes.avg)) best = i;
    sampleId = ids[best]!;

    const jr = journalRange(0);
    const journalSizes: number[] = [];
    let journalEntries = 0;
    for (const key of journal.getKeys({ start: jr.start, end: jr.end })) {
      journalEntries++;
      // Every 10th entry is enough for the size figure.
      if (journalEntries % 10 !== 1) continue;
      const bytes = journal.getBinary(key);
      if (bytes) journalSizes.push(bytes.length);
    }
    measured = { instanceSnapshots: ids.length, snapshotBytes, baseBytes: summarise(baseSizes), journalEntries, journalEntryBytes: summarise(journalSizes) };
  } finally {
    await root.close();
  }
  const store = openStore({ path: storePath, clock: systemClock });
  try {
    const sample = store.getSnapshot('instance', sampleId);
    if (!sample) throw new Error(`instance snapshot ${sampleId} in ${storePath} cannot be read back through the store`);
    return { ...measured, sample: sample as unknown as Record<string, unknown> };
  } finally {
    await store.close();
  }
}

export interface RawPutResult {
  values: number;
  valueBytes: number;
  rounds: number;
  /** Puts per second, each round: N put() calls in one event turn, then await all (committed, not fsynced). */
  putsPerSecond: number[];
  /** Median over rounds. */
  median: number;
}

/**
 * Raw LMDB batched puts: `n` copies of `sample` (ids changed) put in one event turn into a
 * named DB of a fresh environment opened with the store's settings (DB_OPTIONS: msgpack maps), then
 * awaited; repeated `rounds` times with fresh keys.
 */
export async function rawBatchedPuts(storePath: string, sample: Record<string, unknown>, n: number, rounds: number): Promise<RawPutResult> {
  const root = open<unknown, Key>({ path: storePath, maxDbs: MAX_DBS });
  try {
    const db = root.openDB<unknown, Key>({ name: DB.snapshots, ...DB_OPTIONS.snapshots });
    let valueBytes = 0;
    const rates: number[] = [];
    // One untimed warm-up round (JIT, page allocation), then the measured ones.
    for (let round = -1; round < rounds; round++) {
      const values = Array.from({ length: n }, (_, i) => ({ ...sample, id: `raw-${round + 1}-${i}` }));
      const started = performance.now();
      const writes: Promise<boolean>[] = new Array<Promise<boolean>>(n);
      for (let i = 0; i < n; i++) writes[i] = db.put(['instance', `raw-${round + 1}-${i}`], values[i]);
      await Promise.all(writes);
      const seconds = (performance.now() - started) / 1000;
      if (round >= 0) rates.push(n / seconds);
      else valueBytes = db.getBinary(['instance', 'raw-0-0'])?.length ?? 0;
    }
    const sorted = [...rates].sort((a, b) => a - b);
    return { values: n, valueBytes, rounds, putsPerSecond: rates, median: sorted[Math.floor(sorted.length / 2)]! };
  } finally {
    await root.close();
  }
}
