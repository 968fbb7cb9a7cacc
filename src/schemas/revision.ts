import { z } from 'zod';

/**
 * Which artifact bundle to boot and which config and secrets to mount. The bundle is named by an
 * id or its content hash, never by a path: bundles are imported into the runtime's artifact
 * store, and the runtime never points into /nix/store.
 */
export const Revision = z
  .object({
    artifacts: z
      .string({ error: 'revision.artifacts is required: a bundle id or "sha256:<hex>" content hash' })
      .min(1, { error: 'revision.artifacts must not be empty' })
      .max(128)
      .superRefine((value, ctx) => {
        if (value.includes('/')) {
          ctx.addIssue({
            code: 'custom',
            message: 'revision.artifacts must be a bundle id or "sha256:<hex>", not a path (the runtime never boots from /nix/store; import the bundle first)',
          });
        } else if (!/^(sha256:[0-9a-f]{64}|[a-z0-9][a-z0-9._-]*)$/.test(value)) {
          ctx.addIssue({
            code: 'custom',
            message: 'revision.artifacts must be a bundle id (lower-case letters, digits, ".", "_", "-") or "sha256:" and 64 hex digits',
          });
        }
      })
      .describe('Artifact bundle id or content hash (sha256:<hex>).'),
    config_version: z.number().int().min(0).describe('Version of the config drive to mount (vdd -> /etc/mvm-config).'),
    secrets_epoch: z.number().int().min(0).describe('Epoch of the secrets to write to the secrets drive (vdc -> /run/secrets).'),
  })
  .strict();
export type Revision = z.infer<typeof Revision>;
