import { z } from 'zod';
import { ProfileName } from './ids.ts';

/** Resource figures shared by profiles and pools. */
export const Resources = z
  .object({
    vcpus: z.number().int().min(1).max(32),
    mem_mib: z.number().int().min(128).max(262_144),
    data_disk_mib: z.number().int().min(0).max(4_194_304),
  })
  .strict();
export type Resources = z.infer<typeof Resources>;

/**
 * A profile: the runtime layers and base packages baked into a role's image, with the
 * resources it expects. Exported from `nix/profiles/<name>.nix`.
 */
export const ProfileManifest = z
  .object({
    schema_version: z.literal(1),
    name: ProfileName,
    description: z.string().min(1),
    layers: z.array(z.string().regex(/^[a-z0-9-]+$/)).describe('Runtime layers, lowest first (for example base, python).'),
    packages: z.array(z.string().min(1)).describe('Base package attribute names installed in the guest.'),
    resources: z.object({ defaults: Resources, minimums: Resources }).strict(),
  })
  .strict()
  .superRefine((profile, ctx) => {
    for (const key of ['vcpus', 'mem_mib', 'data_disk_mib'] as const) {
      if (profile.resources.defaults[key] < profile.resources.minimums[key]) {
        ctx.addIssue({
          code: 'custom',
          path: ['resources', 'defaults', key],
          message: `default ${key} (${profile.resources.defaults[key]}) is below the minimum (${profile.resources.minimums[key]})`,
        });
      }
    }
  })
  .meta({ id: 'ProfileManifest', title: 'mvm-actors profile manifest' });

export type ProfileManifest = z.infer<typeof ProfileManifest>;
