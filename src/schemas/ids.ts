import { z } from 'zod';

/**
 * Identifiers that become file names, directory names and parts of interface names.
 * Lower-case letters, digits and inner hyphens only: nothing that can climb out of a
 * directory (`../x`), nest (`a/b`) or collide by case on a case-insensitive filesystem.
 */
export const ID_PATTERN = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
export const ID_MAX_LENGTH = 32;
/** Instance ids are `<tenant>-<pool>-<n>`, so they get room for both ids and an index. */
export const INSTANCE_ID_MAX_LENGTH = 72;

const idHint = 'use lower-case letters, digits and inner hyphens, for example "acme-prod"';

function idSchema(what: string, max: number) {
  // One message per bad id, the most useful one, rather than one per failed check.
  return z
    .string({ error: (iss) => (iss.input === undefined ? `${what} is required` : `${what} must be a string`) })
    .superRefine((value, ctx) => {
      const message =
        value.length === 0
          ? `${what} must not be empty`
          : value.length > max
            ? `${what} must be at most ${max} characters (got ${value.length})`
            : ID_PATTERN.test(value)
              ? undefined
              : `${what} "${value}" has characters that are not allowed; ${idHint}`;
      if (message) ctx.addIssue({ code: 'custom', message });
    })
    .meta({ pattern: ID_PATTERN.source, minLength: 1, maxLength: max });
}

export const TenantId = idSchema('tenant_id', ID_MAX_LENGTH).describe('Tenant identifier; becomes directory and interface name parts.');
export const PoolId = idSchema('pool_id', ID_MAX_LENGTH).describe('Pool identifier, unique within its tenant.');
export const NodeId = idSchema('node_id', ID_MAX_LENGTH).describe('The host this desired state is for.');
export const InstanceId = idSchema('instance_id', INSTANCE_ID_MAX_LENGTH).describe('MicroVM instance identifier.');
export const RoleName = idSchema('role name', ID_MAX_LENGTH).describe('A role declared in nix/roles/<name>.nix.');
export const ProfileName = idSchema('profile name', ID_MAX_LENGTH).describe('A profile declared in nix/profiles/<name>.nix.');
/** Names inside a manifest: services, ports, drives, connectors. */
export const LocalName = idSchema('name', ID_MAX_LENGTH);
/** Secret names are file names on the secrets drive. */
export const SecretName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9._-]*$/, { error: 'secret names use lower-case letters, digits, ".", "_" and "-", and start with a letter or digit' });

export const ManifestHash = z
  .string()
  .regex(/^sha256:[0-9a-f]{64}$/, { error: 'expected "sha256:" followed by 64 lower-case hex digits' });
