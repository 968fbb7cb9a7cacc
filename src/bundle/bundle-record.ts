import { z } from 'zod';

/** A bundle id, as a pool revision's `artifacts` names it (same rule as src/schemas/revision.ts). */
export const BundleId = z
  .string()
  .min(1, { error: 'a bundle id must not be empty' })
  .max(128, { error: 'a bundle id has at most 128 characters' })
  .regex(/^[a-z0-9][a-z0-9._-]*$/, { error: 'a bundle id is lower-case letters, digits, ".", "_" and "-", starting with a letter or digit' });

export const ContentHash = z.string().regex(/^sha256:[0-9a-f]{64}$/, { error: 'a content hash is "sha256:" and 64 lower-case hex digits' });

/**
 * What the artifact store writes next to a bundle's files (`.mvm-bundle.json`) at import: the
 * content hash, each file with its size and sha256 (so `verify` can name the file that changed)
 * and the bundle paths taken from its Firecracker config, relative to the bundle directory.
 */
export const BundleRecord = z
  .object({
    schema_version: z.literal(1),
    hash: ContentHash,
    files: z.array(z.object({ name: z.string().min(1), size: z.number().int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict()),
    kernel: z.string().min(1),
    initrd: z.string().min(1).nullable(),
    rootfs: z.string().min(1),
    role: z.string().min(1),
    manifest_hash: ContentHash,
  })
  .strict();
export type BundleRecord = z.infer<typeof BundleRecord>;

/** One entry of the names index (`names/<id>.json`): the id and the content it means, forever. */
export const BundleNameRecord = z.object({ name: BundleId, hash: ContentHash }).strict();
export type BundleNameRecord = z.infer<typeof BundleNameRecord>;
