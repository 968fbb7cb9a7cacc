import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import type { SnapshotRef } from '../vmm-driver.ts';

/**
 * What one sleeping microVM's snapshot is tied to. Written after Firecracker created the files
 * and before the process is stopped: its presence is what makes the VM "sleeping". A wake whose
 * bundle (by name and by content hash) or manifest hash differs is refused.
 */
export const SnapshotRecord = z
  .object({
    snapshot_id: z.string().min(1),
    /** The pool revision's `artifacts` (bundle id or sha256:<hex>) the VM was booted from. */
    artifacts: z.string().min(1),
    /** The content hash the bundle name resolved to: a name re-pointed at other bytes is a mismatch too. */
    bundle_hash: z.string().regex(/^sha256:[0-9a-f]{64}$/),
    manifest_hash: z.string().min(1),
    created_at: z.number(),
    snapshot_type: z.enum(['Full', 'Diff']),
  })
  .strict();
export type SnapshotRecord = z.infer<typeof SnapshotRecord>;

export function refOf(record: SnapshotRecord): SnapshotRef {
  return { snapshot_id: record.snapshot_id, artifacts: record.artifacts, manifest_hash: record.manifest_hash, created_at: record.created_at };
}

/** The record, or null when there is none or it cannot be read (a half-written sleep). */
export async function readSnapshotRecord(file: string): Promise<SnapshotRecord | null> {
  const text = await readFile(file, 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    const parsed = SnapshotRecord.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

export async function writeSnapshotRecord(file: string, record: SnapshotRecord): Promise<void> {
  await writeFile(`${file}.tmp`, `${JSON.stringify(SnapshotRecord.parse(record), null, 2)}\n`, { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

/** Why a snapshot may not be used for this wake, or null when it may. */
export function snapshotMismatch(ref: { artifacts: string; manifest_hash: string }, artifacts: string, manifestHash: string): string | null {
  if (ref.artifacts !== artifacts) return `was taken with bundle ${ref.artifacts}, not ${artifacts}`;
  if (ref.manifest_hash !== manifestHash) return `was taken with manifest ${ref.manifest_hash}, not ${manifestHash}`;
  return null;
}
